"""The explorer on a session whose every string is hostile: it keeps running, and what it draws holds
no terminal escape, no control character and no markup, only their visible markers."""

from __future__ import annotations

import asyncio

import pytest
from hostile import HOSTILE, hostile_session, unsafe_chars

from lister_tui.core.sessions.opening import view_session
from lister_tui.core.sessions.store import read_session
from lister_tui.safe_text import visible_token
from lister_tui.tui.app import ListerApp


def screen_text(app) -> str:
    """Every character the current screen draws (its toasts included)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


@pytest.mark.parametrize("evil", HOSTILE, ids=range(len(HOSTILE)))
def test_explorer_shows_a_hostile_session_as_text(evil, tmp_path, monkeypatch):
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    folder = tmp_path / "sessions"
    hostile_session(folder / "evil", evil)
    view = view_session(read_session(folder / "evil"))  # its model is not here: read-only, strings from its vocab

    async def go():
        app = ListerApp(view.lab, initial=None, workspace=view.opened.workspace, session=view.store, banner=view.banner, session_name="evil", sessions_dir=folder)
        seen = []
        async with app.run_test(size=(120, 40)) as pilot:

            async def look(*keys: str) -> str:
                await pilot.press(*keys)
                await pilot.pause()
                shown = screen_text(app)
                assert unsafe_chars(shown) == [], (keys, shown[:300])
                seen.append(shown)
                return shown

            first = await look("T")
            if evil:
                # the token view shows the session's vocabulary strings with their markers
                assert visible_token(f"w8{evil}")[:12] in first.replace("\n", "")
            await look("P")  # the prompt tokens too
            await look("S", "down")  # the other sample (its topic is the hostile string)
            await look("g")  # read-only: a notification naming the model
            await look("a")
            await look("ctrl+o")  # the open dialog lists the hostile session
            await look("escape")
            await look("question_mark")
            await look("escape")
            await look("N")  # the session's notes in the note editor
            await look("escape")
            await look("2")  # the ablation tab
            assert app.is_running
        return seen

    seen = asyncio.run(go())
    assert len(seen) == 12


def test_the_export_dialog_shows_a_hostile_folder_as_markers_and_exports_to_it(tmp_path):
    from textual.app import App

    from lister_tui.tui.screens.sessions import ExportScreen

    folder = tmp_path / "s\x1b]52;c;AAAA\x07" / "exports"
    chosen = []

    class Host(App):
        def on_mount(self) -> None:
            self.push_screen(ExportScreen(folder), chosen.append)

    async def go():
        app = Host()
        async with app.run_test(size=(100, 20)) as pilot:
            await pilot.pause()
            assert unsafe_chars(screen_text(app)) == [] and "␛]52" in screen_text(app)
            await pilot.press("tab", "enter")  # from the format select to the folder box; enter exports
            await pilot.pause()

    asyncio.run(go())
    assert len(chosen) == 1 and chosen[0].folder == folder
