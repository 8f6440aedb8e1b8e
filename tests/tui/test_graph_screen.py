"""The graph screen, pushed on its own: compute, navigate, thresholds, cards, interventions, cancel, refusals."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace

import pytest
from textual.app import App
from textual.widgets import Tree

from lister_tui.core.engine.generation import sample_lists
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.workspace import Workspace
from lister_tui.core.study.graphs.attribute import ATTN, TC
from lister_tui.core.study.graphs.pipeline import compute_graph, graph_saes, graph_targets
from lister_tui.core.study.graphs.prune import scores
from lister_tui.core.study.settings import SAMPLING_PRESETS
from lister_tui.tui.screens.graph import CachedGraph, GraphCache, GraphScreen, graph_screen
from lister_tui.tui.widgets.circuit_grid import CircuitGrid

from .conftest import settle


@pytest.fixture(scope="module")
def short_sample(tiny):
    return sample_lists(tiny, build_prompts(["short"], ["Fruits"], samples_per_topic=1), SAMPLING_PRESETS["code"])[0]


def _computed(tiny, sample, attention: bool) -> CachedGraph:
    """The sample's graph as the screen caches it."""
    tcs, attn = graph_saes(tiny, attention)
    targets = tuple(graph_targets(sample))
    graph = compute_graph(tiny, sample.tokens, tcs, attn, list(targets), batch=64)
    return CachedGraph(("", targets, attention), graph, scores(graph), tcs, attn)


@pytest.fixture(scope="module")
def computed(tiny, short_sample):
    """With attention features (about 5300 nodes), computed once for the module."""
    return _computed(tiny, short_sample, True)


@pytest.fixture(scope="module")
def computed_frozen(tiny, short_sample):
    """Attention frozen without features (about 1400 nodes: pruning again is quick)."""
    return _computed(tiny, short_sample, False)


class Host(App):
    def __init__(self, screen: GraphScreen) -> None:
        super().__init__()
        self.graph_screen = screen

    def on_mount(self) -> None:
        self.push_screen(self.graph_screen)


def _screen(tiny, sample, computed=None, attention: bool = True) -> tuple[Workspace, str, GraphScreen]:
    """A session holding ``sample`` and its graph screen (its cache holding ``computed`` if given)."""
    ws = Workspace(tiny.entry.name)
    (key,) = ws.add_samples([sample], "code")
    cache = GraphCache()
    screen = GraphScreen(tiny, sample, key=key, workspace=ws, cache=cache, attention=attention if computed is None else computed.key[2])
    if computed is not None:
        cache[screen.cache_key] = replace(computed, key=screen.cache_key, heads={}, checks={}, groups=[], view=None)
    return ws, key, screen


def _select_kind(screen: GraphScreen, kind: int, before: int | None = None) -> str:
    """Select the most influential kept node of ``kind`` (at a position before ``before``) in the grid; its id."""
    view = screen.view
    graph = view.graph
    ids = sorted((n for n in view.nodes if int(graph.nodes.kind[view.index[n.id]]) == kind and (before is None or n.pos < before)),
                 key=lambda n: -n.effect)
    assert ids, f"no kept node of kind {kind}"
    screen.query_one(CircuitGrid).select(ids[0].id)
    screen._refresh_text()
    return ids[0].id


def test_graph_screen_computes_navigates_and_caches(tiny, short_sample):
    asyncio.run(_computes(tiny, short_sample))


async def _computes(tiny, short_sample):
    ws, key, screen = _screen(tiny, short_sample, attention=False)  # frozen attention: the quick graph
    app = Host(screen)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert screen.entry is not None and screen.view is not None
        assert screen.cache[screen.cache_key] is screen.entry  # kept for the session
        grid = screen.query_one(CircuitGrid)
        assert grid.selected is not None and grid.selected.id == screen.view.root  # the cursor starts at the target
        text = grid.render().plain
        assert "metric" in text and "tc_3" in text and "tc_0" in text and "emb" in text and "attn_" not in text
        title = str(screen.query_one("#graph-title").render())
        rep, comp = screen.entry.scores
        assert f"repl {rep:.2f} compl {comp:.2f}" in title and "node 0.8 edge 0.98" in title, title
        await pilot.press("down")  # the last transcoder row at the target position: a parent of the metric
        await settle(app, pilot)
        node = grid.selected
        assert node is not None and node.id != screen.view.root
        details = str(screen.query_one("#graph-details").render())
        assert node.id in details and "parents" in details and "influence" in details
        # left goes to this row's previous node, over the columns where the row has none
        by_row = {r: sorted(p for (site, p) in grid.cells if site == r) for r in grid.rows}
        gaps = [(r, ps[i - 1], ps[i]) for r, ps in by_row.items() for i in range(1, len(ps))
                if grid.columns.index(ps[i]) - grid.columns.index(ps[i - 1]) > 1]
        assert gaps, by_row  # a row with empty columns between two of its nodes
        row, before, after = gaps[0]
        grid.row, grid.col = grid.rows.index(row), grid.columns.index(after)
        await pilot.press("left")
        assert (grid.rows[grid.row], grid.columns[grid.col]) == (row, before) and grid.selected is not None
        await pilot.press("right")
        assert grid.columns[grid.col] == after
        grid.select(node.id)
        # the outline: the target's strongest parents, one level deeper
        await pilot.press("v")
        tree = screen.query_one(Tree)
        assert [c.data for c in tree.root.children] == [e.source for e in screen.view.parents(screen.view.root)[:5]]
        await pilot.press("v")
        assert screen.query_one("#graph-views").current == "grid"
    # reopening the same sample takes the cached graph: nothing is computed again
    again = GraphScreen(tiny, short_sample, key=key, workspace=ws, cache=screen.cache, attention=False)
    app = Host(again)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert again.entry is screen.entry and again.passes == 0
        assert again.view is screen.view  # not even pruned again


def test_threshold_keys_change_the_kept_nodes_and_edges(tiny, short_sample, computed_frozen):
    asyncio.run(_thresholds(tiny, short_sample, computed_frozen))


async def _thresholds(tiny, short_sample, computed):
    ws, key, screen = _screen(tiny, short_sample, computed)
    app = Host(screen)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        kept = len(screen.view.nodes)
        await pilot.press("left_square_bracket")
        await settle(app, pilot)
        assert screen.node_threshold == pytest.approx(0.7)
        fewer = len(screen.view.nodes)
        assert fewer < kept
        await pilot.press("right_square_bracket", "right_square_bracket")
        await settle(app, pilot)
        assert screen.node_threshold == pytest.approx(0.85) and len(screen.view.nodes) > kept
        edges = len(screen.view.edges)
        await pilot.press("left_curly_bracket", "left_curly_bracket")
        await settle(app, pilot)
        assert screen.edge_threshold == pytest.approx(0.9) and len(screen.view.edges) < edges
        title = str(screen.query_one("#graph-title").render())
        assert "node 0.85 edge 0.9" in title
        assert screen.entry.thresholds == (0.85, 0.9)  # reopening shows the graph as the user left it


def test_details_show_head_shares_and_checks(tiny, short_sample, computed):
    asyncio.run(_heads_and_checks(tiny, short_sample, computed))


async def _heads_and_checks(tiny, short_sample, computed):
    ws, key, screen = _screen(tiny, short_sample, computed)
    app = Host(screen)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(app, pilot)
        view, graph = screen.view, screen.entry.graph
        # an attention feature whose strongest parent sits at another position: an edge attention carries
        crossing = [n for n in view.nodes if int(graph.nodes.kind[view.index[n.id]]) == ATTN
                    and view.parents(n.id) and view.node(view.parents(n.id)[0].source).pos != n.pos]
        assert crossing
        screen.query_one(CircuitGrid).select(crossing[0].id)
        screen.action_cycle(0)  # as a key would: the shown edges' head shares are asked for
        await settle(app, pilot)
        edge = view.parents(crossing[0].id)[0]
        pair = (view.index[edge.target], view.index[edge.source])
        assert pair in screen.entry.heads
        details = str(screen.query_one("#graph-details").render())
        assert f"{edge.source} {edge.weight:+.3f} [" in details  # the edge's top heads follow it
        await pilot.press("k")
        await settle(app, pilot)
        row = screen.entry.checks[view.index[crossing[0].id]]
        details = str(screen.query_one("#graph-details").render())
        assert f"graph Δ {row['graph']:+.4f}" in details and f"real Δ {row['real']:+.4f}" in details


def test_space_and_enter_on_feature_nodes(tiny, short_sample, computed):
    asyncio.run(_space_enter(tiny, short_sample, computed))


async def _space_enter(tiny, short_sample, computed):
    from lister_tui.tui.screens.feature_card import FeatureCardScreen

    ws, key, screen = _screen(tiny, short_sample, computed)
    app = Host(screen)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        node_id = _select_kind(screen, ATTN)
        node = screen.view.node(node_id)
        await pilot.press("space")
        assert [c.ident for c in ws.state(key).choices] == [(node.site, node.feature, node.pos)]
        assert "[intervened]" in str(screen.query_one("#graph-details").render())
        # a transcoder feature goes in too (its site tc_L), and out again
        tc_node = screen.view.node(_select_kind(screen, TC))
        await pilot.press("space")
        await pilot.pause()
        assert [c.ident for c in ws.state(key).choices][1:] == [(tc_node.site, tc_node.feature, tc_node.pos)]
        assert tc_node.site.startswith("tc_")
        await pilot.press("space")
        await pilot.pause()
        assert len(ws.state(key).choices) == 1
        # enter opens the transcoder feature's card
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, FeatureCardScreen)
        assert app.screen.sae_id.startswith("tc_")
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen is screen
        # r regenerates under the interventions: one draw, recorded in the session; a node at the
        # attribution position acts on no regeneration (it starts there), so it is refused first
        await pilot.press("r")
        await settle(app, pilot)
        assert not ws.state(key).runs and any("act on nothing" in str(n.message) for n in app._notifications)
        screen.query_one(CircuitGrid).select(node_id)
        await pilot.press("space")  # out again
        early = _select_kind(screen, ATTN, before=short_sample.structure.attribution_pos)
        await pilot.press("space")
        early_tc = _select_kind(screen, TC, before=short_sample.structure.attribution_pos)
        await pilot.press("space", "r")
        await settle(app, pilot)
        (run,) = ws.state(key).runs
        chosen, chosen_tc = screen.view.node(early), screen.view.node(early_tc)
        assert [c.ident for c in run.choices] == [(chosen.site, chosen.feature, chosen.pos), (chosen_tc.site, chosen_tc.feature, chosen_tc.pos)]
        assert "one draw (n = 1" in str(screen.query_one("#graph-details").render())


def test_cancel_stops_the_graph_before_it_finishes(tiny, short_sample):
    asyncio.run(_cancel(tiny, short_sample))


async def _cancel(tiny, short_sample):
    ws, key, screen = _screen(tiny, short_sample)
    app = Host(screen)
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(500):
            await pilot.pause(0.01)
            if screen.passes >= 1:
                break
        assert screen.passes >= 1
        await pilot.press("escape")  # escape cancels a running graph (it closes only when nothing runs)
        await settle(app, pilot)
        assert app.screen is screen and screen.entry is None and not screen.cache
        assert "cancelled after" in screen.status
        # it stopped at a pass, long before the last one (the graph has hundreds of targets in passes of 16)
        assert screen.passes < 20, screen.passes


def test_refusals_say_why(tiny, short_sample):
    # a list without a complete item has no attribution position
    no_item = replace(short_sample, structure=replace(short_sample.structure, attribution_pos=None, items=()))
    with pytest.raises(ListerError, match="no attribution position"):
        GraphScreen(tiny, no_item)
    # an entry without transcoders: the message names the entries that have them
    bare = SimpleNamespace(entry=replace(tiny.entry, transcoders=()))
    with pytest.raises(ListerError, match="has no transcoders.*lister-tiny"):
        GraphScreen(bare, short_sample)
    notes: list[str] = []
    host = SimpleNamespace(app=SimpleNamespace(), notify=lambda text, **kw: notes.append(text))
    graph_screen(host, bare, short_sample, None, None)
    assert notes and "entries with them" in notes[0] and "gemma-2-2b-it" in notes[0]


def test_G_opens_the_graph_from_the_explorer_and_from_the_circuit(make_app, tiny, short_sample):
    asyncio.run(_from_keys(make_app, tiny, short_sample))


async def _from_keys(make_app, tiny, short_sample):
    from lister_tui.tui.screens.circuit import CircuitScreen

    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        main = app.screen
        key = app.main.controller.state.current
        await pilot.press("G")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, GraphScreen) and screen.key == key and screen.cache is app.graph_cache
        await pilot.press("escape")  # the first escape stops the computation, the second closes
        await settle(app, pilot)
        assert app.screen is screen and "cancelled" in screen.status
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen is main
        await pilot.press("C")
        await pilot.pause()
        circuit = app.screen
        assert isinstance(circuit, CircuitScreen)
        await pilot.press("c", "G")  # the circuit's own computation stopped first (quicker test)
        await pilot.pause()
        assert isinstance(app.screen, GraphScreen) and app.screen.sample is circuit.sample
        await pilot.press("c", "escape")
        await settle(app, pilot)
        assert app.screen is circuit


def test_h_opens_the_head_view_of_an_edge_between_positions(tiny, short_sample, computed):
    asyncio.run(_head_view(tiny, short_sample, computed))


async def _head_view(tiny, short_sample, computed):
    from lister_tui.tui.screens.head_view import HeadViewScreen

    ws, key, screen = _screen(tiny, short_sample, computed)
    app = Host(screen)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        view, graph = screen.view, screen.entry.graph
        # the template word " short" is read by an attention feature at a later position: the planted path
        short = next(p for p, t in enumerate(screen.tokens) if t == " short")
        crossing = [n for n in view.nodes if int(graph.nodes.kind[view.index[n.id]]) == ATTN and n.pos != short
                    and view.parents(n.id) and view.node(view.parents(n.id)[0].source).pos == short]
        assert crossing, "no attention feature reads the template word"
        screen.query_one(CircuitGrid).select(crossing[0].id)
        await pilot.press("h")
        await settle(app, pilot)
        assert isinstance(app.screen, HeadViewScreen)
        hv = app.screen.view
        assert hv.source_pos == short and hv.target == view.index[crossing[0].id]
        text = str(app.screen.query_one("#head-view").render())
        assert f"head {hv.labels[0]}" in text and "^ source" in text and "short" in text
        await pilot.press("escape")
        assert app.screen is screen
        # a node whose kept edges all stay at its position: said so, nothing pushed
        token = next(n for n in view.nodes if n.kind == "embed" and not any(view.node(e.target).pos != n.pos for e in view.children(n.id)))
        screen.query_one(CircuitGrid).select(token.id)
        await pilot.press("h")
        await pilot.pause()
        assert app.screen is screen and any("crosses positions" in str(n.message) for n in app._notifications)


def test_supernodes_automatic_and_yours(tiny, short_sample, computed):
    asyncio.run(_supernodes(tiny, short_sample, computed))


async def _supernodes(tiny, short_sample, computed):
    from lister_tui.core.study.graphs.supernodes import supernode_influence

    ws, key, screen = _screen(tiny, short_sample, computed)
    app = Host(screen)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        grid = screen.query_one(CircuitGrid)
        kept = len(screen.view.nodes)
        # automatic: one feature kept at several positions becomes one node
        await pilot.press("A")
        await settle(app, pilot)
        groups = screen.view.groups
        assert groups and all(sid.startswith("∑ ") for sid in groups)
        members = sum(len(g.members) for g in groups.values())
        assert len(screen.view.nodes) == kept - members + len(groups)
        assert any("supernodes (auto on)" in part.text for part in screen.title_parts())  # shown where the width allows
        await pilot.press("A")
        await settle(app, pilot)
        assert not screen.view.groups and len(screen.view.nodes) == kept
        # yours: mark two feature nodes, group them under a name
        features = sorted((n for n in screen.view.nodes if n.kind == "feature"), key=lambda n: -n.effect)[:2]
        for n in features:
            grid.select(n.id)
            await pilot.press("m")
        await pilot.press("g")
        await pilot.pause()
        await pilot.press(*"pair", "enter")
        await settle(app, pilot)
        sn = screen.view.groups["∑ pair"]
        assert sorted(sn.members) == sorted(screen.view.index[n.id] for n in features)
        node = screen.view.node("∑ pair")
        assert node.effect == pytest.approx(supernode_influence(screen.view.pruned, sn))
        assert "∑pair" in grid.render().plain
        grid.select("∑ pair")
        screen._refresh_text()
        details = str(screen.query_one("#graph-details").render())
        assert "members:" in details and features[0].id in details
        # u takes yours apart
        await pilot.press("u")
        await settle(app, pilot)
        assert not screen.entry.groups and "∑ pair" not in screen.view.groups


def test_S_keeps_the_graph_in_the_session(tiny, short_sample, computed_frozen):
    asyncio.run(_save(tiny, short_sample, computed_frozen))


async def _save(tiny, short_sample, computed_frozen):
    ws, key, screen = _screen(tiny, short_sample, computed_frozen)
    app = Host(screen)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("S")
        await settle(app, pilot)
        (record,) = ws.graphs_of(key)
        rep, comp = screen.entry.scores
        assert record.sample == key and record.attention_features is False
        assert record.replacement_score == pytest.approx(rep) and record.completeness_score == pytest.approx(comp)
        assert record.node_threshold == 0.8 and record.n_kept == len(screen.view.nodes) and record.n_edges == len(screen.view.edges)
        await pilot.press("S")  # a session only grows: a second save is a second record
        await settle(app, pilot)
        assert len(ws.graphs_of(key)) == 2


def test_every_graph_key_is_bound_once_to_an_action_of_the_screen():
    from lister_tui.tui.keymap import GRAPH_KEYS

    keys = [k for s in GRAPH_KEYS for k in s.key.split(",")]
    assert len(keys) == len(set(keys)), "a key is bound twice"
    assert len({s.id for s in GRAPH_KEYS}) == len(GRAPH_KEYS)
    for spec in GRAPH_KEYS:
        assert callable(getattr(GraphScreen, "action_" + spec.action.split("(")[0], None)), spec.id


def test_G_and_C_wait_while_the_explorer_runs_the_model(make_app):
    asyncio.run(_busy(make_app))


async def _busy(make_app):
    """A graph or a circuit beside a running regeneration would share the model's hooks: refused, named."""
    import threading

    from lister_tui.tui.screens.circuit import CircuitScreen

    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        main, controller = app.screen, app.main.controller
        release = threading.Event()
        worker = controller.run_worker(lambda: release.wait(30), thread=True, group="regenerate", description="Regenerating")
        try:
            for key in ("G", "C"):
                await pilot.press(key)
                await pilot.pause()
                assert app.screen is main
                assert "regenerating is still running" in app.messages[-1].text
        finally:
            release.set()
            await worker.wait()
        await pilot.press("C")
        await pilot.pause()
        assert isinstance(app.screen, CircuitScreen)
        await pilot.press("c", "escape")
        await settle(app, pilot)
