"""`lister-tui` (the explorer on a model) and `lister-tui open` (the explorer on a saved session or a sweep)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lister_tui.cli.common import (
    REGISTRY_OPTION,
    SESSIONS_DIR_OPTION,
    TEMPLATES_OPTION,
    app,
    entry_with_adhoc_saes,
    err_console,
    fail,
    resolve_target,
    say,
    split_values,
    use_user_files,
)
from lister_tui.core.errors import ListerError
from lister_tui.safe_text import text


@app.callback(invoke_without_command=True)
def main_callback(
    ctx: typer.Context,
    model: str = typer.Option("lister-tiny", "--model", "-m", help="Registry entry to load (`lister-tui models` lists them)."),
    sae: Optional[list[str]] = typer.Option(
        None, "--sae", help="Add an SAE site for this run: RELEASE:SAE_ID or a SAELens folder, optionally ID=… in front (repeatable).", show_default=False
    ),
    registry: Optional[list[Path]] = REGISTRY_OPTION,
    templates: Optional[list[Path]] = TEMPLATES_OPTION,
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto."),
    dtype: Optional[str] = typer.Option(None, help="float32 or bfloat16 (default: the entry's)."),
    sessions_dir: Optional[Path] = typer.Option(
        None, "--sessions-dir", help="Where sessions are saved (default: $LISTER_TUI_SESSIONS, else the checkout's sessions/).", show_default=False
    ),
    autosave: bool = typer.Option(True, "--autosave/--no-autosave", help="Save the exploration as a new session after each change."),
) -> None:
    """Open the explorer on MODEL (default: the shipped lister-tiny); the exploration is saved as a new session."""
    try:
        # Registry and template files apply to every subcommand (`lister-tui --registry F sweep …`).
        use_user_files(registry, templates)
        if ctx.invoked_subcommand is not None:
            return
        from lister_tui.core.engine.loading import load_model

        from lister_tui.core.engine.prompts import register_templates

        entry, _ids = entry_with_adhoc_saes(model, split_values(sae))
        register_templates(entry.templates)  # the generate dialog offers the entry's own templates
        # Loaded before the app starts, so a missing or bad model fails fast with a plain message.
        with err_console.status(text(f"loading {model}…")):
            loaded = load_model(entry, device=device, dtype=dtype)
    except ListerError as exc:
        fail(exc)
    from lister_tui.core.files.locations import sessions_dir as resolve_sessions_dir
    from lister_tui.core.sessions.store import SessionStore, default_name
    from lister_tui.tui.app import ListerApp

    folder = resolve_sessions_dir(sessions_dir)
    store = SessionStore(folder / default_name(loaded.entry.name)) if autosave else None
    explorer = ListerApp(loaded, session=store, sessions_dir=folder, persist=True)
    explorer.run()
    store = explorer.session  # after "save as" or "open", the session the explorer ended on
    if store is not None and (store.path / "manifest.json").exists():
        say(f"session saved in {store.path} (reopen: {reopen_command(store.name, Path(store.path).parent)})", err=True)


def reopen_command(name: str, folder: Path) -> str:
    """The command that reopens session ``name`` of ``folder``, as printed: it works when pasted."""
    import shlex

    from lister_tui.core.files.locations import sessions_dir as resolve_sessions_dir

    command = f"lister-tui open {shlex.quote(name)}"
    if Path(folder).resolve() != resolve_sessions_dir(None).resolve():
        command += f" --sessions-dir {shlex.quote(str(folder))}"
    return command


@app.command("open")
def open_command(
    target: str = typer.Argument(..., help="A session's name (in the sessions folder) or a folder: a session, or a sweep's output."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto."),
    dtype: Optional[str] = typer.Option(None, help="float32 or bfloat16 (default: the entry's).", show_default=False),
    read_only: bool = typer.Option(False, "--read-only", help="Never write to this session (save as still works)."),
    sessions_dir: Optional[Path] = SESSIONS_DIR_OPTION,
) -> None:
    """Open a saved session (or a sweep's output folder) in the explorer.

    The session's model is loaded; without it here, the session opens read-only and
    the explorer says so in a banner. A sweep folder becomes a new session (its lists
    sampled again from their seeds), or reopens the one made from it before."""
    from lister_tui.core.engine.loading import check_device_name
    from lister_tui.core.files.locations import sessions_dir as resolve_sessions_dir
    from lister_tui.core.sessions.opening import is_sweep, open_sweep, view_session
    from lister_tui.core.sessions.store import read_session

    folder = resolve_sessions_dir(sessions_dir)
    try:
        check_device_name(device)  # also when the session's model is not here and it opens read-only
        path = resolve_target(target, sessions_dir)
        if is_sweep(path):
            from lister_tui.core.engine.loading import load_model
            from lister_tui.core.sessions.from_sweep import (
                read_sweep_manifest,
                sweep_model_name,
            )

            from lister_tui.cli.sweep import recorded_entry

            manifest = read_sweep_manifest(path)
            name = sweep_model_name(manifest)
            with err_console.status(text(f"loading {name} and sampling the sweep's lists again…")):
                loaded = load_model(recorded_entry(manifest), device=device, dtype=dtype)
                opened = open_sweep(path, loaded, folder)
            view = view_session(opened, loaded, read_only=read_only)
        else:
            opened = read_session(path)
            with err_console.status(text(f"loading {opened.model.name}…")):
                view = view_session(opened, device=device, dtype=dtype, read_only=read_only)
    except ListerError as exc:
        fail(exc)
    if view.banner:
        say(view.banner, err=True)
    from lister_tui.tui.app import ListerApp

    ListerApp(
        view.lab, initial=None, workspace=view.opened.workspace, session=view.store, sessions_dir=folder, banner=view.banner,
        notice=view.notice, session_name=view.opened.name, persist=True,
    ).run()
