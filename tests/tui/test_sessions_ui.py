"""The explorer saves its session after each change (off the UI thread), reopens it, saves as, and
shows a read-only session of a model that is not here."""

from __future__ import annotations

import asyncio
import time

from lister_tui.core.sessions.store import SessionStore, read_session
from lister_tui.core.sessions.opening import view_session
from lister_tui.tui.app import ListerApp
from lister_tui.tui.widgets import SampleTable, TokenView

from .conftest import SMALL, settle


async def saved(app, pilot, timeout: float = 20) -> None:
    """Wait until the autosave has written the workspace as it is now."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.autosaver.saved_revision == app.workspace.revision and not app.autosaver.saving:
            return
        await pilot.pause(0.1)
    raise AssertionError(f"not saved: {app.autosaver.failed}")


def test_autosave_and_reopen(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    folder = tmp_path / "sessions"

    async def first():
        app = ListerApp(tiny, initial=SMALL, session=SessionStore(folder / "s1"), sessions_dir=folder)
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            await saved(app, pilot)
            assert len(read_session(folder / "s1").workspace.samples) == 4
            screen = app.screen
            key = screen.state.current
            # the study's top-5 of res_0, regenerated; a note
            await pilot.press("a")
            await settle(app, pilot)
            await pilot.press("K", "r")
            await settle(app, pilot)
            await pilot.press("n", *"peach twice", "ctrl+s")
            await saved(app, pilot)
            assert "session s1 ✓" in str(screen.query_one("#status").render())
            return key, app.workspace

    key, ws = asyncio.run(first())
    opened = read_session(folder / "s1")
    st = opened.workspace.state(key)
    assert st.note == "peach twice" and len(st.runs) == 1 and st.attribution is not None
    assert st.runs[0] == ws.state(key).runs[0] and len(st.choices) == 5

    async def reopen():
        view = view_session(opened, tiny)
        app = ListerApp(view.lab, initial=None, workspace=view.opened.workspace, session=view.store, sessions_dir=folder)
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            screen = app.screen
            assert screen.query_one("#samples", SampleTable).row_count == 4
            assert screen.state.current == list(opened.workspace.samples)[0]
            assert screen.query_one("#base-view", TokenView).doc is not None
            # a toggle is a change: saved into the same session, as the next revision
            await pilot.press("S", *["down"] * list(opened.workspace.samples).index(key), "c")
            await settle(app, pilot)
            await saved(app, pilot)
            # save as: a new session, autosave goes on there
            await pilot.press("ctrl+s")
            await pilot.pause()
            name_input = app.screen.query_one("#name")
            name_input.value = "copy"
            await pilot.press("enter")
            await saved(app, pilot)
            assert app.session.name == "copy"

    asyncio.run(reopen())
    assert read_session(folder / "s1").revision > opened.revision
    assert read_session(folder / "s1").workspace.state(key).choices == []
    copy = read_session(folder / "copy").workspace
    assert list(copy.samples) == list(opened.workspace.samples) and copy.state(key).note == "peach twice"


def test_open_screen_lists_sessions_and_opens_one(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    folder = tmp_path / "sessions"

    async def go():
        app = ListerApp(tiny, initial=SMALL, session=SessionStore(folder / "one"), sessions_dir=folder)
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            await saved(app, pilot)
        app = ListerApp(tiny, initial=None, sessions_dir=folder)
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            assert len(app.workspace.samples) == 0
            await pilot.press("ctrl+o")
            await pilot.pause()
            await pilot.press("enter")
            await settle(app, pilot)
            assert app.session is not None and app.session.name == "one"
            assert len(app.workspace.samples) == 4 and app.main.state.current is not None

    asyncio.run(go())


def test_read_only_session_shows_a_banner_and_computes_nothing(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from session_fixtures import MODEL, VOCAB, small_workspace

    SessionStore(tmp_path / "fake").save(small_workspace(), MODEL, token_string=lambda i: VOCAB[i])
    view = view_session(read_session(tmp_path / "fake"))

    async def go():
        app = ListerApp(view.lab, initial=None, workspace=view.opened.workspace, session=view.store, banner=view.banner, session_name="fake")
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            banner = app.screen.query_one("#banner")
            assert banner.display and "READ-ONLY" in str(banner.render())
            assert app.screen.query_one("#base-view", TokenView).doc.strings[:4] == ["<bos>", "w6", "w7", "-"]
            await pilot.press("g", "a", "r")
            await pilot.pause()
            messages = [m.text for m in app.messages]
            assert sum("read-only" in m for m in messages) == 3
            assert "(read-only)" in str(app.screen.query_one("#status").render())

    asyncio.run(go())
