"""The expression matrix's width, column labels and colour legend, and the batch view (key B), driven headless."""

from __future__ import annotations

import asyncio
import json

import pytest
from rich.cells import cell_len

from lister_tui.core.sessions.store import SessionStore
from lister_tui.core.sweep.tables import GENERATION_COLUMNS, build_tables
from lister_tui.tui.screens.generate import GenerateRequest

from .conftest import settle


def run(coro):
    return asyncio.run(coro)


def _lines(widget) -> list[str]:
    return widget.render().plain.split("\n")


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_matrix_fills_the_width_and_labels_its_columns_and_colours(make_app, size):
    async def go():
        from lister_tui.tui.screens.matrix import MatrixScreen
        from lister_tui.tui.widgets.heatmap import Heatmap

        app = make_app()
        async with app.run_test(size=size) as pilot:
            await settle(app, pilot)
            await pilot.press("x")
            await settle(app, pilot)
            screen = app.screen
            assert isinstance(screen, MatrixScreen)
            heatmap = screen.query_one(Heatmap)
            n_cols = screen.matrix.values.shape[1]
            lines = _lines(heatmap)
            width = heatmap.content_region.width
            # every header and grid line spans the widget: the cells share the whole width
            grid = lines[:-1]
            assert grid and all(cell_len(line) == width for line in grid)
            assert len(heatmap.cell_widths) == n_cols and heatmap.label_width + sum(heatmap.cell_widths) == width
            assert min(heatmap.cell_widths) >= (width - heatmap.label_width) // n_cols >= 2  # at 80x24 too
            # the column labels: template and topic of each column's sample
            keys = [screen.batch.keys[int(i)] for i in screen.matrix.samples]
            specs = [app.workspace.state(k).sample.spec for k in keys]
            assert lines[0].startswith("template") and lines[1].startswith("topic")
            assert "short" in lines[0]  # one template: one label spans every column
            assert all(spec.topic in lines[1] for spec in specs)  # wide enough for the topics in full
            legend = str(screen.query_one("#matrix-legend").render())
            assert "s short" in legend and "A Fruits" in legend and "B Countries" in legend
            # the colour legend: the scale and the value its top colour stands for
            assert lines[-1].startswith("max activation: 0 ")
            assert f"{screen.matrix.values.max():.3g}" in lines[-1]

    run(go())


def test_matrix_labels_are_text_even_when_a_topic_is_hostile(make_app):
    # control characters are refused at generation; markup and a bidi override are not (a session file
    # may hold anything: the same rule shows both)
    hostile = "[b]Fru\u202eits[/]"
    request = GenerateRequest(("short",), (hostile, "Countries"), 1, 0, "code")

    async def go():
        from lister_tui.tui.widgets.heatmap import Heatmap

        app = make_app(request)
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(app, pilot)
            await pilot.press("x")
            await settle(app, pilot)
            header = _lines(app.screen.query_one(Heatmap))[1]
            legend = str(app.screen.query_one("#matrix-legend").render())
            for shown in (header, legend):
                assert "\u202e" not in shown
                assert "[b]Fru⟨U+202E⟩its[/]" in shown  # markup shown as it is, the override as a marker

    run(go())


def _shown(screen, selector: str) -> str:
    return str(screen.query_one(selector).render())


def test_batch_view_counts_base_then_ablated(make_app):
    async def go():
        from textual_plotext import PlotextPlot

        from lister_tui.tui.screens.batch import BatchScreen

        app = make_app()
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(app, pilot)
            await pilot.press("B")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, BatchScreen)
            counts = [st.sample.metrics.n_items for st in app.workspace.samples.values()]
            summary = _shown(screen, "#batch-summary")
            assert f"base lists n={len(counts)} mean {sum(counts) / len(counts):.2f}" in summary
            assert "no ablation runs yet" in summary and "ablated n=" not in summary
            assert len(screen.query(PlotextPlot)) == 1  # one template, one histogram
            assert "not opened from a sweep" in _shown(screen, "#sweep-title")
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is app.main

            await pilot.press("a")
            await settle(app, pilot)
            await pilot.press("K", "r")  # the study's top-5 pairs, regenerated
            await settle(app, pilot)
            run_ = app.workspace.latest_run(app.main.state.current)
            await pilot.press("B")
            await pilot.pause()
            screen = app.screen
            summary = _shown(screen, "#batch-summary")
            ablated, base = run_.ablated.metrics.n_items, run_.base.metrics.n_items
            assert f"ablated n=1 mean {ablated:.2f}" in summary
            assert f"runs' own base mean {base:.2f}, paired Δ {ablated - base:+.2f}" in summary
            assert "no ablation runs yet" not in summary
            assert screen.summary.n_runs == 1
            await pilot.press("B")  # B closes it again
            await pilot.pause()
            assert app.screen is app.main

    run(go())


def _sweep_folder(tmp_path):
    """A sweep folder whose by_condition comes from the sweep's own table code: Δitems 1.5 ± √0.5 over 4 lists."""
    base = [("Fruits", 0, 3), ("Fruits", 1, 4), ("Colors", 0, 5), ("Colors", 1, 5)]
    rows = []
    for condition, sae, items in (("base", None, [3, 4, 5, 5]), ("ablate res_0", "res_0", [5, 7, 5, 6])):
        for (topic, sample, _), n in zip(base, items):
            row = {c: None for c in GENERATION_COLUMNS}
            row.update(
                condition=condition, method="none" if sae is None else "sae ablation", sae=sae, template="short", template_length="short",
                topic=topic, sample=sample, seed=sample, regenerated_from_position=9, ablated_pairs="" if sae is None else "1@2",
                n_items=n, n_tokens=3 * n, repeated_items=0, diversity=1.0, filler_count=0, reached_end=True,
                metric_at_attribution=0.0, items=json.dumps(["x"] * n), continuation="",
            )
            rows.append(row)
    folder = tmp_path / "sweep"
    folder.mkdir()
    build_tables(rows)["by_condition"].to_parquet(folder / "by_condition.parquet")
    return folder


def test_batch_view_shows_the_sweeps_by_condition(make_app, tmp_path):
    folder = _sweep_folder(tmp_path)
    store = SessionStore(tmp_path / "sessions" / "from-sweep", extra={"source": {"kind": "sweep", "path": str(folder)}})

    async def go():
        app = make_app(session=store)
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            await pilot.press("B")
            await pilot.pause()
            bars = _shown(app.screen, "#sweep-bars")
            assert "ablate res_0 · short" in bars and "+1.50 ± 0.71 (n 4)" in bars
            assert "█" in bars and "Δitems" in bars
            assert "by_condition" in _shown(app.screen, "#sweep-title")
            await pilot.resize_terminal(80, 24)
            await pilot.pause(0.2)
            narrow = _shown(app.screen, "#sweep-title")  # the long folder goes whole; the table's meaning stays
            assert narrow.startswith("by_condition: Δitems (condition − base) ± sd") and "…" not in narrow

    run(go())


def test_batch_view_says_when_the_sweep_folder_is_gone(make_app, tmp_path):
    store = SessionStore(tmp_path / "sessions" / "s", extra={"source": {"kind": "sweep", "path": str(tmp_path / "moved")}})

    async def go():
        app = make_app(request=None, session=store)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press("B")
            await pilot.pause()
            assert "no lists in this session yet" in _shown(app.screen, "#batch-summary")
            assert "is not there" in _shown(app.screen, "#sweep-bars")

    run(go())


def test_matrix_leaves_out_a_sample_removed_after_the_batch_was_attributed(make_app):
    async def go():
        from lister_tui.tui.screens.matrix import MatrixScreen

        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            await pilot.press("x")
            await settle(app, pilot)
            await pilot.press("escape")
            gone = app.main.state.current
            await pilot.press("delete")
            await pilot.pause()
            await pilot.press("y")  # removed (it stays in the session; u brings it back)
            await settle(app, pilot)
            assert gone not in app.workspace.samples and gone in app.workspace.batch.keys
            await pilot.press("x")  # the batch's attribution is kept; its removed sample is not shown
            await settle(app, pilot)
            screen = app.screen
            assert isinstance(screen, MatrixScreen)
            assert screen.matrix.values.shape[1] == len(app.workspace.batch.keys) - 1
            assert gone not in screen.keys
            assert "1 removed sample left out" in str(screen.query_one("#matrix-title").render())

    run(go())


def test_matrix_groups_its_columns_by_template_and_back(make_app):
    request = GenerateRequest(("short", "long"), ("Fruits", "Countries"), 1, 0, "code")

    async def go():
        from lister_tui.tui.widgets.heatmap import Heatmap

        app = make_app(request)
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(app, pilot)
            await pilot.press("x")
            await settle(app, pilot)
            screen = app.screen
            clustered = screen.matrix
            legend = str(screen.query_one("#matrix-legend").render())
            await pilot.press("right", "right")
            sample = int(clustered.samples[2])
            await pilot.press("g")
            await pilot.pause()
            grouped = screen.matrix
            templates = [app.workspace.state(screen.keys[int(c)]).sample.spec.template for c in grouped.samples]
            assert templates == sorted(templates, key=templates.index)  # each template's columns together
            assert sorted(grouped.samples) == sorted(clustered.samples)  # the same samples, the same values
            for j, c in enumerate(grouped.samples):
                i = list(clustered.samples).index(c)
                assert (grouped.values[:, j] == clustered.values[:, i]).all()
            header = _lines(screen.query_one(Heatmap))[0]
            assert header.count("short") == 1 and header.count("long") == 1  # one label per group
            assert "grouped by template" in str(screen.query_one("#matrix-title").render())
            assert str(screen.query_one("#matrix-legend").render()) == legend  # the codes do not change
            assert int(grouped.samples[screen.query_one(Heatmap).col]) == sample  # the cursor stays on its sample
            await pilot.press("g")
            await pilot.pause()
            assert list(screen.matrix.samples) == list(clustered.samples)

    run(go())


def test_group_by_template_keeps_the_clustered_order_within_each_template():
    import numpy as np
    from session_fixtures import make_sample

    from lister_tui.core.study.features import ExpressionMatrix
    from lister_tui.tui.screens.matrix import group_by_template

    samples = [make_sample(t, "Fruits", i, i, [[6]], [False]) for i, t in enumerate(["short", "long", "short", "long"])]
    m = ExpressionMatrix("res_0", np.array([7, 9]), np.array([3, 0, 1, 2]), np.arange(8.0).reshape(2, 4), ["Fruits"] * 4)
    g = group_by_template(m, samples)
    # clustered columns: samples 3 (long), 0 (short), 1 (long), 2 (short) -> long 3, 1 then short 0, 2
    assert list(g.samples) == [3, 1, 0, 2]
    assert g.values.tolist() == [[0.0, 2.0, 1.0, 3.0], [4.0, 6.0, 5.0, 7.0]]
    assert list(g.features) == [7, 9]
