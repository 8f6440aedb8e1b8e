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


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_circuit_screen_shows_nodes_parents_and_the_outline(tiny, short_sample, size):
    asyncio.run(_shows_nodes(tiny, short_sample, size))


async def _shows_nodes(tiny, short_sample, size):
    ws = Workspace(tiny.entry.name)
    (key,) = ws.add_samples([short_sample], "code")
    screen = CircuitScreen(tiny, short_sample, key=key, workspace=ws, settings=SETTINGS)
    app = Host(screen)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        circuit = screen.circuit
        assert circuit is not None and ws.circuits == [circuit]  # kept in the session
        grid = screen.query_one(CircuitGrid)
        assert grid.selected is not None and grid.selected.id == "metric"
        text = grid.render().plain
        assert "attn_2" in text and "metric" in text
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
    ws = Workspace(tiny.entry.name)
    (key,) = ws.add_samples([short_sample], "code")
    screen = CircuitScreen(tiny, short_sample, key=key, workspace=ws, settings=SETTINGS)
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

    ws = Workspace(tiny.entry.name)
    (key,) = ws.add_samples([short_sample], "code")
    screen = CircuitScreen(tiny, short_sample, key=key, workspace=ws, settings=SETTINGS)
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
