"""The circuit screen, pushed on its own: grid, outline, curve, ablation toggles, narrow and wide terminals."""

from __future__ import annotations

import asyncio

import pytest
from textual.app import App
from textual.widgets import Tree

from lister_tui.core.engine.generation import sample_lists
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.sessions.workspace import Workspace
from lister_tui.core.study.circuits import CircuitSettings
from lister_tui.core.study.settings import SAMPLING_PRESETS
from lister_tui.tui.screens.circuit import CircuitGrid, CircuitScreen

from hostile import unsafe_chars

from .conftest import settle

SETTINGS = CircuitSettings(sites=("res_1", "attn_2", "res_2"), nodes_per_site=4)


@pytest.fixture(scope="module")
def short_sample(tiny):
    return sample_lists(tiny, build_prompts(["short"], ["Fruits"], samples_per_topic=1), SAMPLING_PRESETS["code"])[0]


class Host(App):
    def __init__(self, screen: CircuitScreen) -> None:
        super().__init__()
        self.circuit_screen = screen

    def on_mount(self) -> None:
        self.push_screen(self.circuit_screen)


def _screen(tiny, sample) -> tuple[Workspace, str, CircuitScreen]:
    """A session holding ``sample`` and its circuit screen (not yet shown)."""
    ws = Workspace(tiny.entry.name)
    (key,) = ws.add_samples([sample], "code")
    return ws, key, CircuitScreen(tiny, sample, key=key, workspace=ws, settings=SETTINGS)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_circuit_screen_shows_nodes_parents_and_the_outline(tiny, short_sample, size):
    asyncio.run(_shows_nodes(tiny, short_sample, size))


async def _shows_nodes(tiny, short_sample, size):
    ws, key, screen = _screen(tiny, short_sample)
    app = Host(screen)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        circuit = screen.circuit
        assert circuit is not None and ws.circuits == [circuit]  # kept in the session
        grid = screen.query_one(CircuitGrid)
        assert grid.selected is not None and grid.selected.id == "metric"
        text = grid.render().plain
        assert "attn_2" in text and "metric" in text
        # the title keeps its key figures whole at every width (dropping whole parts, not cutting one)
        title = str(screen.query_one("#circuit-title").render())
        assert f"circuit {circuit.recovered:.2f}, complete {circuit.completeness:.2f}" in title, title
        assert f"0.8 at N={circuit.n_for(0.8)}" in title and "…" not in title
        assert len(title) <= size[0] - 2
        # one step down from the metric is the last site at the attribution position: a parent of the metric
        await pilot.press("down")
        node = grid.selected
        if node is not None:
            details = str(screen.query_one("#circuit-details").render())
            assert node.id in details and "parents" in details
        # the outline lists the metric's strongest parents
        await pilot.press("v")
        tree = screen.query_one(Tree)
        assert [c.data for c in tree.root.children] == [e.source for e in circuit.parents("metric")[:5]]
        await pilot.press("v")  # the curve
        await pilot.press("v")  # back to the grid
        assert screen.query_one("#circuit-views").current == "grid"


def test_a_feature_node_toggles_into_the_samples_ablation(tiny, short_sample):
    asyncio.run(_toggles(tiny, short_sample))


async def _toggles(tiny, short_sample):
    ws, key, screen = _screen(tiny, short_sample)
    app = Host(screen)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        grid = screen.query_one(CircuitGrid)
        target = next(n for n in screen.circuit.nodes if n.kind == "feature" and n.pos is not None)
        grid.select(target.id)
        await pilot.press("space")
        assert [(c.sae_id, c.feature, c.pos) for c in ws.state(key).choices] == [(target.site, target.feature, target.pos)]
        await pilot.press("space")
        assert ws.state(key).choices == []


def test_a_saved_circuit_opens_without_recomputing(tiny, short_sample):
    asyncio.run(_reopens(tiny, short_sample))


async def _reopens(tiny, short_sample):
    ws = Workspace(tiny.entry.name)
    (key,) = ws.add_samples([short_sample], "code")
    first = CircuitScreen(tiny, short_sample, key=key, workspace=ws, settings=SETTINGS)
    app = Host(first)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
    second = CircuitScreen(tiny, short_sample, key=key, workspace=ws, settings=SETTINGS)
    assert second.circuit is ws.circuits[0]


def test_key_C_opens_the_circuit_of_the_current_sample_and_keeps_it(make_app):
    asyncio.run(_from_main(make_app))


async def _from_main(make_app):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        main = app.screen
        key = main.state.current
        await pilot.press("C")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, CircuitScreen) and screen.key == key
        assert screen.circuit is not None and app.workspace.circuits == [screen.circuit]
        assert screen.circuit.samples == [app.workspace.state(key).sample.spec.key]
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is main


def test_enter_on_a_feature_node_opens_its_card(tiny, short_sample):
    asyncio.run(_card(tiny, short_sample))


async def _card(tiny, short_sample):
    from lister_tui.tui.screens.feature_card import FeatureCardScreen

    ws, key, screen = _screen(tiny, short_sample)
    app = Host(screen)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        target = next(n for n in screen.circuit.nodes if n.kind == "feature")
        screen.query_one(CircuitGrid).select(target.id)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, FeatureCardScreen)
        assert (app.screen.sae_id, app.screen.feature) == (target.site, target.feature)
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen is screen


def _report_lines(screen) -> dict[str, str]:
    text = str(screen.query_one("#site-report").render())
    return {line.split()[0]: line for line in text.splitlines() if line.split() and line.split()[0] in SETTINGS.sites}


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_the_curve_view_shows_the_site_report_of_the_circuit(tiny, short_sample, size):
    asyncio.run(_site_report(tiny, short_sample, size))


async def _site_report(tiny, short_sample, size):
    ws, key, screen = _screen(tiny, short_sample)
    app = Host(screen)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        c = screen.circuit
        await pilot.press("v", "v")  # the curve, with the site report beside it
        report = screen.query_one("#site-report")
        assert report.region.width > 0 and report.region.right <= size[0]  # on screen, whole
        lines = _report_lines(screen)
        assert list(lines) == list(SETTINGS.sites)  # a row per site, in the circuit's order
        grand = sum(t["features"] + t["error"] for t in c.site_totals.values())
        for site, line in lines.items():
            # figures from the circuit itself: nodes kept at the site, its share of them, its share of Σ|effect|
            kept = sum(1 for n in c.nodes if n.site == site and n.kind in ("feature", "error"))
            counted = sum(1 for n in c.nodes if n.kind in ("feature", "error"))
            own = c.site_totals[site]["features"] + c.site_totals[site]["error"]
            cells = line.split()
            assert cells[1:4] == [str(kept), f"{kept / counted:.0%}", f"{own / grand:.0%}"], line
            assert cells[-1].endswith(("K", "M"))  # the SAE was loaded to find the circuit: its memory is known
    # a circuit reopened from the session shows the same report without recomputing
    again = CircuitScreen(tiny, short_sample, key=key, workspace=ws, settings=SETTINGS)
    async with Host(again).run_test(size=size) as pilot:
        await settle(again.app, pilot)
        assert again.circuit is c and _report_lines(again) == lines


def test_the_users_labels_show_in_the_grid_where_there_is_room_and_in_the_outline(tiny, short_sample):
    asyncio.run(_labels(tiny, short_sample))


async def _labels(tiny, short_sample):
    ws, key, screen = _screen(tiny, short_sample)
    app = Host(screen)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        c = screen.circuit
        parent = next(c.node(e.source) for e in c.parents("metric") if c.node(e.source).kind == "feature")
        ws.set_label(parent.site, parent.feature, "fr[b]\x1b[31mit")  # markup and an escape: shown as text
        screen._relabel()  # what closing the card that set the label does
        grid = screen.query_one(CircuitGrid)
        grid.select("metric")  # the parent is highlighted green: its own node is the one its cell shows
        narrow = grid.render().plain
        assert "fr[" not in narrow  # 5 characters: no room for a label beside the id
        await pilot.press("plus", "plus", "plus")  # wider columns (11 characters)
        await pilot.pause()
        wide = grid.render().plain
        room = 11 - len(str(parent.feature)) - 1 - 1  # the id, a "+" when the cell holds more, a space
        assert f"{parent.feature}" in wide and "fr[b]␛[31mit"[: room - 1] in wide, wide
        assert "\x1b" not in wide
        await pilot.press("v")  # the outline: the metric's parents with their labels
        tree = screen.query_one(Tree)
        row = next(ch for ch in tree.root.children if ch.data == parent.id)
        assert "“fr[b]␛[31mit”" in row.label.plain
        # a token string is untrusted too: a bidi override or an escape in the vocabulary shows as a marker
        grid.show(c, ["\u202e\x1b[2J"] * len(screen.tokens))
        assert unsafe_chars(grid.render().plain) == [] and "⟨U+202E⟩"[:4] in grid.render().plain
