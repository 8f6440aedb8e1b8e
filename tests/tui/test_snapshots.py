"""Snapshots at 80x24 and 160x48: the main screen in the compare view after the study's loop on
one sample, the ablation tab, the expression matrix, and the batch view after that loop.

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


async def _ablation_tab(pilot) -> None:
    await _loop(pilot)
    await pilot.press("2")  # the active pairs and the deltas: labels never wrap
    await pilot.pause()


async def _matrix(pilot) -> None:
    app = pilot.app
    await settle(app, pilot)
    await pilot.press("x")  # attributes the batch first, then opens the matrix
    await settle(app, pilot)
    app.clear_notifications()
    await pilot.pause()


def test_ablation_tab_80x24(snap_compare, make_app):
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=_ablation_tab)


def test_ablation_tab_160x48(snap_compare, make_app):
    assert snap_compare(make_app(), terminal_size=(160, 48), run_before=_ablation_tab)


def test_matrix_80x24(snap_compare, make_app):
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=_matrix)


def test_matrix_160x48(snap_compare, make_app):
    assert snap_compare(make_app(), terminal_size=(160, 48), run_before=_matrix)


async def _batch(pilot) -> None:
    await _loop(pilot)
    await pilot.press("B")  # items per list: the four lists (base) and the one ablated regeneration
    await pilot.pause()


def test_batch_view_80x24(snap_compare, make_app):
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=_batch)


def test_batch_view_160x48(snap_compare, make_app):
    assert snap_compare(make_app(), terminal_size=(160, 48), run_before=_batch)


async def _graph(pilot) -> None:
    """The explorer's first sample's attribution graph (G), computed, one step down from the target."""
    app = pilot.app
    await settle(app, pilot)
    await pilot.press("G")
    await settle(app, pilot)
    await pilot.press("down", "down")  # the strongest attention feature at the target: its parents with head shares
    await settle(app, pilot)
    app.clear_notifications()
    await pilot.pause()


def test_graph_view_80x24(snap_compare, make_app):
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=_graph)
