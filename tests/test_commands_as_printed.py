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
        assert len(frame) == 0 and len(frame.columns) > 3
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
