"""The features table's density option (D): plain, dense features flagged, down-weighted, on lister-tiny."""

from __future__ import annotations

import asyncio

import numpy as np

from lister_tui.core.study.cards import corpus_parts
from lister_tui.core.study.corpus import default_corpus
from lister_tui.core.study.features import DEFAULT_MAX_DENSITY, feature_densities

from .conftest import settle


def test_d_flags_dense_features_and_down_weights_them_in_the_ranking(make_app, tmp_path, monkeypatch):
    monkeypatch.setenv("LISTER_TUI_CACHE", str(tmp_path))

    async def go():
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            await pilot.press("a")
            await settle(app, pilot)
            await pilot.press("s")  # the first SAE only: one corpus pass
            await pilot.pause()
            table = app.main.features.table
            plain = [r.key for r in table.rows_shown]
            sae = table.rows_shown[0].sae_id
            await pilot.press("D")  # flag
            await settle(app, pilot)
            samples = {k: st.sample for k, st in app.workspace.samples.items()}
            density = feature_densities(a for _, a in corpus_parts(app.lab, sae, default_corpus(app.lab, samples)))
            assert [r.key for r in table.rows_shown] == plain  # flagging keeps the order
            dense = {r.key for r in table.rows_shown if density[r.feature] > DEFAULT_MAX_DENSITY}
            assert dense  # lister-tiny's res_0 has dense features among the top pairs (else this test proves nothing)
            marks = {r.key: str(table.get_row_at(i)[0]) for i, r in enumerate(table.rows_shown)}
            assert all(marks[k].startswith("d") for k in dense)
            assert not any(marks[k].startswith("d") for k in marks if k not in dense)
            assert "d = dense" in str(app.main.query_one("#feature-mode").render())
            await pilot.press("D")  # down-weight
            await pilot.pause()
            shown = table.rows_shown
            weight = np.minimum(1.0, DEFAULT_MAX_DENSITY / np.maximum(density[[r.feature for r in shown]], 1e-12))
            adjusted = [r.attribution * w for r, w in zip(shown, weight)]
            assert adjusted == sorted(adjusted, reverse=True)
            assert "attr×density" in str(app.main.query_one("#feature-mode").render())
            assert [r.key for r in shown] != plain  # the order changed
            await pilot.press("D")  # plain again
            await pilot.pause()
            assert [r.key for r in table.rows_shown] == plain

    asyncio.run(go())
