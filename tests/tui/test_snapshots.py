"""Snapshots of the main screen at 80x24 and 160x48, after the study's loop on one sample.

The content is deterministic for a given lister-tiny build (fixed seeds); after a
rebuild of the organism, refresh with ``--snapshot-update`` and look at the diffs.
"""

from __future__ import annotations

from .conftest import settle


async def _loop(pilot) -> None:
    app = pilot.app
    await settle(app, pilot)
    await pilot.press("a")
    await settle(app, pilot)
    await pilot.press("K", "r")  # the study's top-5 res_0 pairs, regenerated from the attribution position
    await settle(app, pilot)
    await pilot.press("T", "full_stop")
    app.clear_notifications()
    await pilot.pause()


def test_main_screen_80x24(snap_compare, make_app):
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=_loop)


def test_main_screen_160x48(snap_compare, make_app):
    assert snap_compare(make_app(), terminal_size=(160, 48), run_before=_loop)
