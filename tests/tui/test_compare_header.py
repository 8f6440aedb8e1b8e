"""The compare view's ablated pane says the run's essential figures within its width."""

from __future__ import annotations

import asyncio

import pytest

from .conftest import settle


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_the_ablated_pane_header_keeps_items_and_tokens_whole(make_app, size):
    asyncio.run(_header(make_app(), size))


async def _header(app, size):
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await pilot.press("a")
        await settle(app, pilot)
        await pilot.press("K", "r")  # the top-5 res_0 pairs, regenerated: the compare view opens
        await settle(app, pilot)
        view = app.main.tokens.ablated
        assert view.display
        run = app.workspace.state(app.main.state.current).runs[-1]
        (bi, ai, di), (bt, at, _) = run.deltas()["n_items"], run.deltas()["n_tokens"]
        head = "\n".join(view.render().plain.splitlines()[:2])
        width = view.content_region.width
        assert all(len(line) <= width for line in head.splitlines()), (width, head)
        assert f"items {bi}→{ai} ({int(di):+d})" in head and f"tokens {bt}→{at}" in head, (width, head)
        assert "abl" in head.splitlines()[0]  # which side this is stays said
        base = app.main.tokens.base
        first = base.render().plain.splitlines()[0]
        assert len(first) <= base.content_region.width and f"from pos {run.base.prefix_len}" in first, first
