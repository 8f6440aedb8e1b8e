"""`lister-tui serve`: the explorer in a web browser through textual-serve.

Every browser tab that opens the page starts its own explorer process (the same command as
`lister-tui` with the options given here, or `lister-tui open SESSION`), drawn in the page by
textual-serve's terminal. The server has no login: anyone who reaches the port drives the
explorer and can write sessions as you. So it listens on 127.0.0.1 unless told otherwise with
`--host` and `--allow-remote`; reach it from your laptop through an SSH tunnel
(`ssh -L 8000:localhost:8000 server`, then http://localhost:8000).
"""

from __future__ import annotations

import ipaddress
import shlex
import socket
import sys
from pathlib import Path
from typing import Optional

import typer

from lister_tui.cli.common import (
    REGISTRY_OPTION,
    SESSIONS_DIR_OPTION,
    TEMPLATES_OPTION,
    app,
    fail,
    resolve_target,
    say,
    split_values,
    use_user_files,
)
from lister_tui.core.errors import ListerError

NO_LOGIN_WARNING = (
    "warning: lister-tui serve has no login. Anyone who can reach {where} drives the explorer, "
    "reads your sessions and writes to them. Prefer the default host (127.0.0.1) and an SSH tunnel."
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_listen(host: str, port: int, allow_remote: bool) -> None:
    """Refuse, before anything loads, a port out of range, a non-loopback host without
    --allow-remote, and an address this machine cannot listen on (taken, or not its own)."""
    if not 1 <= port <= 65535:
        raise ListerError(f"--port {port} is out of range; valid: 1 to 65535 (e.g. --port 8000)")
    if not is_loopback(host) and not allow_remote:
        raise ListerError(
            f"--host {host} would let other machines reach the explorer, which has no login; "
            "add --allow-remote to do that on purpose, or keep the default 127.0.0.1 and use an SSH tunnel "
            "(ssh -L 8000:localhost:8000 SERVER)"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host.strip("[]"), port))
    except OSError as exc:
        raise ListerError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port, "
            "or a --host that is an address of this machine"
        ) from None


def check_public_url(url: str | None) -> None:
    """Refuse a --public-url that is not a plain http(s) address: textual-serve prints it as Rich
    markup and hands it to the browser page."""
    if url is None:
        return
    from urllib.parse import urlsplit

    from lister_tui.safe_text import is_safe, visible

    parts = urlsplit(url) if len(url) <= 2048 else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or not is_safe(url) or any(c in url for c in "[] \"'<>`\n\r\t"):
        raise ListerError(
            f"--public-url {visible(url[:80])!r} is not a plain http(s) address (at most 2048 characters, "
            "no spaces, quotes, brackets or control characters); give e.g. http://localhost:8000"
        )


def explorer_command(
    *, model: str, sae: list[str], registry: list[Path], templates: list[Path], device: str, dtype: str | None,
    sessions_dir: Path, autosave: bool, session: Path | None,
) -> list[str]:
    """The command each browser tab runs: `lister-tui` with these options (or `lister-tui open`)."""
    argv = [sys.executable, "-m", "lister_tui.cli"]
    for path in registry:
        argv += ["--registry", str(Path(path).resolve())]
    for path in templates:
        argv += ["--templates", str(Path(path).resolve())]
    if session is not None:
        argv += ["open", str(session), "--device", device, "--sessions-dir", str(sessions_dir)]
        return argv + (["--dtype", dtype] if dtype else [])
    argv += ["--model", model, "--device", device, "--sessions-dir", str(sessions_dir)]
    for value in sae:
        argv += ["--sae", value]
    if dtype:
        argv += ["--dtype", dtype]
    return argv + ([] if autosave else ["--no-autosave"])


@app.command("serve")
def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Another than loopback needs --allow-remote (no login)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on (valid: 1..65535)."),
    allow_remote: bool = typer.Option(
        False, "--allow-remote", help="Allow a --host that other machines reach: anyone who reaches it drives the explorer."
    ),
    public_url: Optional[str] = typer.Option(
        None, "--public-url", help="The address the browser uses, when it differs (default: http://HOST:PORT).", show_default=False
    ),
    session: Optional[str] = typer.Option(
        None, "--session", help="Open this saved session (a name in the sessions folder, or a folder) instead of a new one.", show_default=False
    ),
    model: str = typer.Option("lister-tiny", "--model", "-m", help="Registry entry to load (`lister-tui models` lists them)."),
    sae: Optional[list[str]] = typer.Option(
        None, "--sae", help="Add an SAE site: RELEASE:SAE_ID or a SAELens folder, optionally ID=… in front (repeatable).", show_default=False
    ),
    registry: Optional[list[Path]] = REGISTRY_OPTION,
    templates: Optional[list[Path]] = TEMPLATES_OPTION,
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto."),
    dtype: Optional[str] = typer.Option(None, help="float32 or bfloat16 (default: the entry's).", show_default=False),
    sessions_dir: Optional[Path] = SESSIONS_DIR_OPTION,
    autosave: bool = typer.Option(True, "--autosave/--no-autosave", help="Save each tab's exploration as a new session after each change."),
) -> None:
    """Serve the explorer to a web browser (textual-serve): each tab runs its own explorer. Listens on
    127.0.0.1 only; from your laptop: `ssh -L 8000:localhost:8000 SERVER`, then open http://localhost:8000."""
    from lister_tui.core.engine.loading import DTYPES, check_device_name
    from lister_tui.safe_text import visible
    from lister_tui.core.engine.registry import get_entry
    from lister_tui.core.files.locations import sessions_dir as resolve_sessions_dir

    folder = resolve_sessions_dir(sessions_dir)
    try:
        check_listen(host, port, allow_remote)
        check_public_url(public_url)
        check_device_name(device)
        if dtype is not None and dtype not in DTYPES:
            raise ListerError(f"--dtype {visible(dtype[:40])!r} is not one of {', '.join(DTYPES)}")
        use_user_files(registry, templates)
        target = resolve_target(session, sessions_dir) if session is not None else None
        if target is None:
            get_entry(model)  # an unknown model fails here, not in every tab
        command = explorer_command(
            model=model, sae=split_values(sae), registry=list(registry or []), templates=list(templates or []), device=device,
            dtype=dtype, sessions_dir=folder, autosave=autosave, session=target,
        )
    except ListerError as exc:
        fail(exc)
    try:
        from textual_serve.server import Server
    except ImportError:
        fail(ListerError("lister-tui serve needs textual-serve: pip install textual-serve"))
    where = f"{host}:{port}"
    if not is_loopback(host):
        say(NO_LOGIN_WARNING.format(where=where), "bold red", err=True)
    url = public_url or f"http://{'localhost' if is_loopback(host) else host}:{port}"
    say(f"serving the explorer on {where} (open {url}; Ctrl+C stops); each tab runs: {shlex.join(command)}", err=True)
    try:
        Server(shlex.join(command), host=host, port=port, title="lister-tui", public_url=url).serve()
    except ListerError as exc:
        fail(exc)
