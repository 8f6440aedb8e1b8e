"""Commands and files work as printed: the reopen hint, empty export tables, the screenshot's folder."""

from __future__ import annotations

import asyncio

import pandas as pd

from lister_tui.cli.explore import reopen_command
from lister_tui.core.sessions.export import EMPTY_COLUMNS, export_tables, write_exports
from lister_tui.core.sessions.workspace import Workspace


def test_reopen_hint_names_a_sessions_dir_that_is_not_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTER_TUI_SESSIONS", str(tmp_path / "default"))
    assert reopen_command("s1", tmp_path / "default") == "lister-tui open s1"
    other = tmp_path / "my sessions"
    assert reopen_command("s1", other) == f"lister-tui open s1 --sessions-dir '{other}'"


def test_empty_tables_are_written_with_their_header(tmp_path):
    tables = export_tables(Workspace("lister-tiny"))
    files = write_exports(tables, tmp_path, "csv")
    for path in files:
        frame = pd.read_csv(path)  # a header-less file raises EmptyDataError
        assert len(frame) == 0 and len(frame.columns) >= 3
    assert list(pd.read_csv(tmp_path / "ablations.csv").columns) == EMPTY_COLUMNS["ablations"]


def test_screenshot_goes_to_the_session_folder(tiny, tmp_path, monkeypatch):
    from lister_tui.core.sessions.store import SessionStore
    from lister_tui.tui.app import ListerApp

    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/Downloads

    async def go():
        app = ListerApp(tiny, initial=None, session=SessionStore(tmp_path / "sessions" / "s"), sessions_dir=tmp_path / "sessions")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            app.deliver_screenshot("shot.svg")
            for _ in range(20):
                await pilot.pause(0.1)
                if (tmp_path / "sessions" / "s" / "shot.svg").exists():
                    break

    asyncio.run(go())
    assert (tmp_path / "sessions" / "s" / "shot.svg").read_text().startswith("<svg")


def test_sessions_listing_fits_80_columns(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    from typer.testing import CliRunner

    from lister_tui.cli import app
    from lister_tui.cli import common
    from lister_tui.core.sessions.store import SessionStore

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from session_fixtures import MODEL, VOCAB, small_workspace

    folder = tmp_path / "a-sessions-folder-with-a-long-name"
    for name in ("lister-tiny-2026-12-02-151530", "an exploration of the filler blank"):
        SessionStore(folder / name).save(small_workspace(), MODEL, token_string=lambda i: VOCAB[i])
    monkeypatch.setattr(common.console, "_width", 80)
    result = CliRunner().invoke(app, ["sessions", "--sessions-dir", str(folder)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(len(line) <= 80 for line in lines[1:]), "\n".join(lines)  # the first: the folder, never wrapped
    header = next(line for line in lines if "name" in line and "samples" in line)
    assert "runs" in header and "updated" in header
    assert "lister-tiny-2026-12-02-151530" in result.output  # the name whole, on one line


def test_the_reopen_hint_names_the_session_saved_as(tiny, tmp_path, monkeypatch):
    """After ctrl+s (save as), quitting prints the command that reopens the new session, not the first."""
    import shlex

    from typer.testing import CliRunner

    from lister_tui.cli import app
    from lister_tui.core.engine import loading
    from lister_tui.core.sessions.store import SessionStore
    from lister_tui.core.sessions.workspace import Workspace
    from lister_tui.tui.app import ListerApp

    sessions = tmp_path / "sessions"

    def run_and_save_as(self):  # what the explorer does on ctrl+s "my-loop", then q
        store = SessionStore(sessions / "my-loop")
        store.save(Workspace("lister-tiny"), self.model_info())
        self.autosaver.store = store  # where autosave goes on, as after save as

    monkeypatch.setattr(ListerApp, "run", run_and_save_as)
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: tiny)
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    result = CliRunner().invoke(app, ["--sessions-dir", str(sessions), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert f"lister-tui open my-loop --sessions-dir {shlex.quote(str(sessions))}" in result.output.replace("\n", "")
