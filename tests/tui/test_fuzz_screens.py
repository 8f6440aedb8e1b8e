"""Every key of the explorer's keymap (APP_KEYS and MAIN_KEYS, so a new key and the screen it opens are
covered by themselves) pressed on a session whose every string is hostile, its model loaded: after
each key, what the screen draws holds no escape, C1, bidi or control character, and the app runs.
Then every screen that key opened is closed, back to the main screen."""

from __future__ import annotations

import asyncio
import os

import pytest
from fuzz_inputs import ESCAPES, MARKUP, raw_unsafe
from hostile import hostile_session

from lister_tui.core.sessions.opening import view_session
from lister_tui.core.sessions.store import read_session
from lister_tui.tui.keymap import APP_KEYS, MAIN_KEYS

from .conftest import settle

# keys that end the run or wait on the terminal rather than open something to look at
SKIP = {"lister.quit"}
EVIL = {"escapes and C1": ESCAPES + "\u202e", "markup": MARKUP}


def screen_text(app) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


@pytest.mark.parametrize("evil", list(EVIL) if os.environ.get("LISTER_TUI_FUZZ") == "full" else ["escapes and C1"])
def test_every_key_on_a_hostile_session_draws_only_text(evil, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    folder = tmp_path / "sessions"
    hostile_session(folder / "evil", EVIL[evil], model_name="lister-tiny")
    view = view_session(read_session(folder / "evil"), loaded=tiny)
    pressed: list[str] = []

    async def go():
        from lister_tui.tui.app import ListerApp

        app = ListerApp(view.lab, initial=None, workspace=view.opened.workspace, session=view.store, banner=view.banner, session_name="evil", sessions_dir=folder)
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            main = app.screen
            for spec in APP_KEYS + MAIN_KEYS:
                if spec.id in SKIP:
                    continue
                key = spec.key.split(",")[0]
                await pilot.press(key)
                await settle(app, pilot)
                shown = screen_text(app)
                assert raw_unsafe(shown) == [], (spec.id, shown[:400])
                pressed.append(spec.id)
                for _ in range(4):  # back to the main screen (a dialog, the card, the circuit, the matrix)
                    if app.screen is main:
                        break
                    await pilot.press("escape")
                    await settle(app, pilot)
                    assert raw_unsafe(screen_text(app)) == []
                assert app.is_running, f"the app stopped after {spec.id}"
            assert app.screen is main

    asyncio.run(go())
    assert len(pressed) == len(APP_KEYS) + len(MAIN_KEYS) - len(SKIP)
