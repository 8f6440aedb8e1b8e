"""`lister-tui sessions | replay | export | locate`: saved sessions from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from lister_tui.cli.common import (
    SESSIONS_DIR_OPTION,
    app,
    console,
    err_console,
    fail,
    human_size,
    resolve_target,
)
from lister_tui.core.errors import ListerError


@app.command("sessions")
def sessions_command(sessions_dir: Optional[Path] = SESSIONS_DIR_OPTION) -> None:
    """List the saved sessions (and sweep folders) with date, model, samples, runs and size."""
    from rich.table import Table

    from lister_tui.core.files.locations import sessions_dir as resolve_sessions_dir
    from lister_tui.core.sessions.catalog import list_sessions

    folder = resolve_sessions_dir(sessions_dir)
    infos = list_sessions(folder)
    if not infos:
        console.print(f"no sessions in {folder} (run lister-tui to start one)", highlight=False)
        return
    view = Table(title=f"sessions in {folder}")
    view.add_column("name", min_width=min(40, max(len(i.name) for i in infos)), overflow="fold")
    for column in ("updated", "model", "samples", "runs", "size", "kind"):
        view.add_column(column, justify="right" if column in ("samples", "runs", "size") else "left", no_wrap=True)
    for i in infos:
        updated = (i.updated or "")[:16].replace("T", " ")
        kind = i.kind if i.problem is None else f"[red]{escape(i.problem[:60])}[/]"
        view.add_row(escape(i.name), updated, i.model or "?", "" if i.samples is None else str(i.samples), "" if i.runs is None else str(i.runs), human_size(i.size_bytes), kind)
    console.print(view)


@app.command("replay")
def replay_command(
    target: str = typer.Argument(..., help="A session's name or folder."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or auto (the session's lists were sampled on the device it ran on)."),
    dtype: Optional[str] = typer.Option(None, help="float32 or bfloat16 (default: the entry's).", show_default=False),
    sessions_dir: Optional[Path] = SESSIONS_DIR_OPTION,
) -> None:
    """Regenerate every saved list from its seed and report any token that differs (exit 1 on a mismatch)."""
    from lister_tui.core.engine.fingerprint import fingerprint_differences, weights_fingerprint
    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.sessions.replay import replay
    from lister_tui.core.sessions.store import read_session

    try:
        opened = read_session(resolve_target(target, sessions_dir))
        with err_console.status(f"loading {opened.model.name}…"):
            loaded = load_model(opened.model.name, device=device, dtype=dtype)
    except ListerError as exc:
        fail(exc)
    differs = fingerprint_differences(opened.model.fingerprint, weights_fingerprint(loaded.entry))
    if differs:
        err_console.print(f"warning: the weights differ from the session's ({', '.join(differs)}); expect mismatches", highlight=False)
    saved_version = opened.manifest.get("lister_tui_version")
    from lister_tui.core.sessions.store import lister_version

    if saved_version and saved_version != lister_version():
        err_console.print(f"note: saved with lister-tui {saved_version}, replayed with {lister_version()}", highlight=False)
    with err_console.status("replaying…") as status:
        report = replay(loaded, opened.workspace, opened.manifest.get("sampling"), on_progress=lambda d, t, w: status.update(f"replaying {d}/{t}: {w}"))
    to_str = loaded.to_str_tokens
    for m in report.mismatches:
        console.print(f"[red]mismatch[/] {escape(m.describe(to_str))}")
    if report.ok:
        console.print(f"[green]ok[/]: {report.checked} lists replayed, every token identical ({opened.name})")
        return
    console.print(f"[red]{len(report.mismatches)} of {report.checked} lists differ[/] ({opened.name})")
    raise typer.Exit(code=1)


@app.command("export")
def export_command(
    target: str = typer.Argument(..., help="A session's name or folder."),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv, parquet, markdown or latex."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: <session>/exports).", show_default=False),
    sessions_dir: Optional[Path] = SESSIONS_DIR_OPTION,
) -> None:
    """Write a session's tables (generations, attributions, ablations with deltas, per-SAE summary) for pandas or a paper."""
    from lister_tui.core.sessions.export import export_tables, sweep_tables, write_exports
    from lister_tui.core.sessions.store import read_session

    try:
        opened = read_session(resolve_target(target, sessions_dir))
        vocab = opened.vocab
        decode = (lambda ids: "".join(vocab.get(i, "") for i in ids)) if vocab else None
        token_string = (lambda i: vocab.get(i, "")) if vocab else None
        tables = export_tables(opened.workspace, decode, token_string)
        tables.update(sweep_tables(opened.manifest))
        files = write_exports(tables, out or opened.path / "exports", fmt)
    except ListerError as exc:
        fail(exc)
    for f, (name, frame) in zip(files, tables.items()):
        console.print(f"{f}  ({len(frame)} rows)", highlight=False)


@app.command("locate")
def locate_command(what: str = typer.Argument("all", help="sessions, themes, config, cache, registry or all.")) -> None:
    """Print where sessions, themes, the settings file, the activation cache and your model registry files live."""
    from lister_tui.core.files import locations

    places = {
        "sessions": locations.sessions_dir(),
        "themes": locations.user_themes_dir(),
        "bundled-themes": locations.bundled_themes_dir(),
        "config": locations.config_dir(),
        "cache": locations.cache_dir(),
        # TOML model entries: registry.toml, and models/*.toml (`lister-tui models`)
        "registry": locations.config_dir() / "registry.toml",
        "registry-folder": locations.config_dir() / "models",
    }
    if what != "all":
        key = {"themes": "themes", "sessions": "sessions", "config": "config", "cache": "cache", "registry": "registry"}.get(what)
        if key is None:
            fail(ListerError(f"unknown place {what!r}; valid: sessions, themes, config, cache, registry, all"))
        console.print(str(places[key]), highlight=False, soft_wrap=True)
        return
    for name, path in places.items():
        console.print(f"{name}: {path}", highlight=False, soft_wrap=True)
