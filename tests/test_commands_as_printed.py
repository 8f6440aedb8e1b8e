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


def _explorer_exits_after(monkeypatch, then):
    """The explorer as `lister-tui` starts it, with ``then(app)`` in place of the user's session."""
    from lister_tui.tui.app import ListerApp

    monkeypatch.setattr(ListerApp, "run", lambda self, *a, **kw: then(self))


def test_exit_line_names_the_session_saved_as_not_the_first(tmp_path, monkeypatch):
    import shlex

    from typer.testing import CliRunner

    from lister_tui.cli import app as cli
    from lister_tui.core.sessions.store import SessionStore

    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("LISTER_TUI_SESSIONS", str(tmp_path / "default"))
    folder = tmp_path / "sessions"

    def save_as_renamed(app):  # what ctrl+s "save as" does once a name is chosen
        app.autosaver.reset(SessionStore.new(folder, "renamed"), None)
        app.save_workspace(app.session, app.workspace)

    _explorer_exits_after(monkeypatch, save_as_renamed)
    result = CliRunner().invoke(cli, ["--sessions-dir", str(folder), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    said = result.stderr.replace("\n", "")
    assert f"session saved in {folder / 'renamed'}" in said
    assert "lister-tui open renamed --sessions-dir" in said
    assert "lister-tiny-" not in said  # the session it started as was never written, and is not named

    # `lister-tui open NAME` says the same at exit
    _explorer_exits_after(monkeypatch, lambda app: None)
    result = CliRunner().invoke(cli, ["open", "renamed", "--sessions-dir", str(folder), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert f"(reopen: lister-tui open renamed --sessions-dir {shlex.quote(str(folder))})" in result.stderr.replace("\n", "")


def test_exit_line_of_a_session_outside_the_folder_names_its_path(tmp_path):
    from lister_tui.cli.explore import exit_line
    from lister_tui.core.sessions.store import SessionStore

    outside = tmp_path / "elsewhere" / "s"
    store = SessionStore(outside)
    assert exit_line(store, tmp_path / "sessions") is None  # never saved: nothing to reopen
    assert exit_line(None, tmp_path / "sessions") is None
    (outside).mkdir(parents=True)
    (outside / "manifest.json").write_text("{}")
    assert exit_line(store, tmp_path / "sessions").endswith(f"(reopen: lister-tui open {outside})")
