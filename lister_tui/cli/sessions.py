"""`lister-tui sessions | replay | export | locate`: saved sessions from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lister_tui.cli.common import (
    SESSIONS_DIR_OPTION,
    THREADS_OPTION,
    app,
    console,
    err_console,
    fail,
    human_size,
    resolve_target,
    say,
)
from lister_tui.core.errors import ListerError
from lister_tui.safe_text import text


# the columns after the name, in the order they are dropped when the terminal is narrow
_SESSION_COLUMNS = ("updated", "model", "samples", "runs", "size", "kind")
_DROP_ORDER = ("size", "kind", "model", "updated")


def fitting_columns(rows: list[dict], width: int, name_width: int = 32) -> list[str]:
    """The listing's columns that fit ``width`` beside a name column of ``name_width``
    (size, then kind, then model are dropped first): `lister-tui sessions` fits 80 columns."""
    from rich.text import Text

    def need(column: str) -> int:
        cells = [r[column] if isinstance(r[column], Text) else text(r[column]) for r in rows]
        return max([len(column)] + [c.cell_len for c in cells]) + 2  # + the cell padding

    columns = list(_SESSION_COLUMNS)
    for drop in _DROP_ORDER:
        if name_width + sum(need(c) for c in columns) <= width:
            break
        columns.remove(drop)
    return columns


@app.command("sessions")
def sessions_command(sessions_dir: Optional[Path] = SESSIONS_DIR_OPTION) -> None:
    """List the saved sessions (and sweep folders) with date, model, samples, runs and size."""
    from rich import box
    from rich.table import Table

    from lister_tui.core.files.locations import sessions_dir as resolve_sessions_dir
    from lister_tui.core.sessions.catalog import list_sessions

    try:
        folder = resolve_sessions_dir(sessions_dir)
    except ListerError as exc:
        fail(exc)
    infos = list_sessions(folder)
    if not infos:
        say(f"no sessions in {folder} (run lister-tui to start one)")
        return
    rows = []
    for i in infos:
        updated = (i.updated or "")[:16].replace("T", " ")
        # a session's name, model and problem are untrusted text: Text cells, never markup
        kind = text(i.kind) if i.problem is None else text(i.problem[:60], "red")
        rows.append({
            "name": text(i.name), "updated": text(updated), "model": text(i.model or "?"),
            "samples": text("" if i.samples is None else i.samples), "runs": text("" if i.runs is None else i.runs),
            "size": text(human_size(i.size_bytes)), "kind": kind, "problem": i.problem,
        })
    name_width = min(30, max(len(i.name) for i in infos)) + 2
    columns = fitting_columns(rows, console.width - 4, name_width)  # slack: Rich squeezes the name column first
    view = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    view.add_column("name", min_width=name_width - 2, overflow="fold")
    for column in columns:
        view.add_column(text(column), justify="right" if column in ("samples", "runs", "size") else "left", no_wrap=True)
    for row in rows:
        name = row["name"]
        if "kind" not in columns and row["problem"] is not None:
            name = name + text(f" ({row['problem'][:40]})", "red")  # a damaged session says so even when the kind column is dropped
        view.add_row(name, *(row[c] for c in columns))  # safe-text: every cell above is text(...)
    say(f"sessions in {folder}")  # never wrapped: copyable
    console.print(view)


@app.command("replay")
def replay_command(
    target: str = typer.Argument(..., help="A session's name or folder."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or auto (the session's lists were sampled on the device it ran on)."),
    dtype: Optional[str] = typer.Option(None, help="float32 or bfloat16 (default: the entry's).", show_default=False),
    threads: Optional[int] = THREADS_OPTION,
    sessions_dir: Optional[Path] = SESSIONS_DIR_OPTION,
) -> None:
    """Regenerate every saved list from its seed and report any token that differs (exit 1 on a mismatch)."""
    from lister_tui.core.engine.fingerprint import fingerprint_differences, weights_fingerprint
    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.engine.threads import check_threads, configure_torch_threads
    from lister_tui.core.sessions.replay import replay
    from lister_tui.core.sessions.store import read_session

    try:
        check_threads(threads)  # before reading or loading anything
        opened = read_session(resolve_target(target, sessions_dir))
        from lister_tui.core.sessions.opening import session_entry

        with err_console.status(text(f"loading {opened.model.name}…")):
            # as `open` does: the registry's entry, or the one the session recorded (no --registry needed)
            loaded = load_model(session_entry(opened.model), device=device, dtype=dtype)
    except ListerError as exc:
        fail(exc)
    # lister-tiny's small matmuls run fastest on one thread, most of all on busy cores
    configure_torch_threads(loaded, threads)
    differs = fingerprint_differences(opened.model.fingerprint, weights_fingerprint(loaded.entry))
    if differs:
        say(f"warning: the weights differ from the session's ({', '.join(differs)}); expect mismatches", err=True)
    saved_version = opened.manifest.get("lister_tui_version")
    from lister_tui.core.sessions.store import lister_version

    if saved_version and saved_version != lister_version():
        say(f"note: saved with lister-tui {saved_version}, replayed with {lister_version()}", err=True)
    try:
        with err_console.status("replaying…") as status:
            report = replay(loaded, opened.workspace, opened.manifest.get("sampling"), on_progress=lambda d, t, w: status.update(text(f"replaying {d}/{t}: {w}")))
    except ListerError as exc:
        fail(exc)
    to_str = loaded.to_str_tokens
    for m in report.mismatches:
        console.print(text("mismatch ", "red") + text(m.describe(to_str), keep_newlines=True), highlight=False)
    if report.ok:
        console.print(text("ok", "green") + text(f": {report.checked} lists replayed, every token identical ({opened.name})"), highlight=False)
        return
    console.print(text(f"{len(report.mismatches)} of {report.checked} lists differ", "red") + text(f" ({opened.name})"), highlight=False)
    raise typer.Exit(code=1)


@app.command("export")
def export_command(
    target: str = typer.Argument(..., help="A session's name or folder, or a sweep's output folder."),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv, parquet, markdown or latex."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: <session or sweep>/exports).", show_default=False),
    sessions_dir: Optional[Path] = SESSIONS_DIR_OPTION,
) -> None:
    """Write a session's tables (generations, attributions, ablations with deltas, per-SAE summary), or a sweep
    folder's tables (sweep_*, as the explorer's E writes them for a session opened from that sweep)."""
    from lister_tui.core.sessions.catalog import is_sweep_folder
    from lister_tui.core.sessions.export import FORMATS, session_export, sweep_export, write_exports
    from lister_tui.core.sessions.store import read_session

    if fmt not in FORMATS:  # before reading anything
        fail(ListerError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}"))
    try:
        if out is not None:
            from lister_tui.core.files.atomic import check_path_name

            check_path_name(out, "--out")
        folder = resolve_target(target, sessions_dir)
        if is_sweep_folder(folder):
            tables = sweep_export(folder)
        else:
            opened = read_session(folder)
            vocab = opened.vocab
            decode = (lambda ids: "".join(vocab.get(i, "") for i in ids)) if vocab else None
            token_string = (lambda i: vocab.get(i, "")) if vocab else None
            tables = session_export(opened.workspace, opened.manifest, decode, token_string)
        files = write_exports(tables, out or folder / "exports", fmt)
    except ListerError as exc:
        fail(exc)
    for f, (name, frame) in zip(files, tables.items()):
        say(f"{f}  ({len(frame)} rows)")


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
        say(places[key])
        return
    for name, path in places.items():
        say(f"{name}: {path}")
