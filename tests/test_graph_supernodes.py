"""Supernodes of a lister-tiny graph: automatic groups (one feature across positions, a shared label),
a user's group checked, its influence and summed edges, and Neuronpedia's qParams form."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

from lister_tui.core.engine.generation import sample_lists
from lister_tui.core.engine.loading import load_model
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.engine.transcoders import load_transcoders
from lister_tui.core.errors import ListerError
from lister_tui.core.limits import MAX_SUPERNODE_NAME
from lister_tui.core.study.graphs.attribute import TC, TOKEN, attribute_graph
from lister_tui.core.study.graphs.export import graph_json, neuronpedia_json, node_name
from lister_tui.core.study.graphs.prune import prune, scores
from lister_tui.core.study.graphs.supernodes import (
    Supernode,
    auto_supernodes,
    group,
    supernode_edges,
    supernode_influence,
)
from lister_tui.core.study.settings import SAMPLING_PRESETS

SCHEMA = json.loads((Path(__file__).parent / "data" / "neuronpedia-graph-schema.json").read_text())

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def graph_and_pruned():
    """lister-tiny's shipped transcoders, attention features off, at a short-template list's attribution position."""
    loaded = load_model("lister-tiny", device="cpu")
    tcs = load_transcoders(loaded)
    sample = sample_lists(loaded, build_prompts(["short"], ["Animals"], samples_per_topic=1, base_seed=0), SAMPLING_PRESETS["code"])[0]
    graph = attribute_graph(loaded.model, sample.tokens, tcs, {}, [sample.structure.attribution_pos],
                            blank_id=loaded.ids.blank, newline_id=loaded.ids.newline, batch=256)
    return loaded, graph, prune(graph)


def _kept_features(graph, pruned) -> list[int]:
    return [int(i) for i in np.flatnonzero(pruned.node_mask) if graph.nodes.kind[i] == TC]


def test_one_feature_at_several_positions_is_one_automatic_supernode(graph_and_pruned):
    _, graph, pruned = graph_and_pruned
    kept = [int(i) for i in np.flatnonzero(pruned.node_mask)]
    groups = auto_supernodes(graph, kept, None)
    nodes = graph.nodes
    # every (layer, feature) kept at two or more positions, counted here from the nodes
    positions: dict[tuple[int, int], list[int]] = {}
    for i in _kept_features(graph, pruned):
        positions.setdefault((int(nodes.layer[i]), int(nodes.feature[i])), []).append(i)
    repeated = {f"tc_{layer}/{f}": sorted(members) for (layer, f), members in positions.items() if len(members) >= 2}
    assert repeated, "this graph keeps some feature at two positions"
    assert {g.name: list(g.members) for g in groups} == repeated
    for g in groups:
        assert len({int(nodes.pos[m]) for m in g.members}) == len(g.members)  # one member per position


def test_features_sharing_a_label_are_grouped_under_it(graph_and_pruned):
    _, graph, pruned = graph_and_pruned
    features = _kept_features(graph, pruned)
    nodes = graph.nodes
    a, b = features[0], next(i for i in features if (nodes.layer[i], nodes.feature[i]) != (nodes.layer[features[0]], nodes.feature[features[0]]))
    named = {(f"tc_{int(nodes.layer[i])}", int(nodes.feature[i])) for i in (a, b)}
    groups = auto_supernodes(graph, features, lambda site, f: "list\nend" if (site, f) in named else None)
    by_label = [g for g in groups if g.name.startswith("label:")]
    assert [g.name for g in by_label] == ["label: list end"]  # the label made one line
    expected = sorted(i for i in features if (f"tc_{int(nodes.layer[i])}", int(nodes.feature[i])) in named)
    assert list(by_label[0].members) == expected
    # a label on one feature groups nothing more: at one position nothing, at two only the feature's group
    def count(i):
        return sum(1 for j in features if (nodes.layer[j], nodes.feature[j]) == (nodes.layer[i], nodes.feature[i]))

    for n_positions in (1, 2):
        i = next(i for i in features if count(i) == n_positions)
        only = (f"tc_{int(nodes.layer[i])}", int(nodes.feature[i]))
        assert not [g for g in auto_supernodes(graph, features, lambda s, f, only=only: "x" if (s, f) == only else None) if g.name.startswith("label:")]


def test_a_users_group_is_checked(graph_and_pruned):
    _, graph, pruned = graph_and_pruned
    features = _kept_features(graph, pruned)
    sn = group(graph, [features[2], features[1], features[2]], "  my group ", kept=pruned.node_mask)
    assert sn == Supernode("my group", tuple(sorted(features[1:3])))
    token = int(np.flatnonzero(graph.nodes.kind == TOKEN)[0])
    pruned_away = int(np.flatnonzero(~pruned.node_mask & (graph.nodes.kind == TC))[0])
    cases = [
        ([features[0]], "g", "at least 2"),
        ([features[0], features[0]], "g", "at least 2"),
        ([features[0], token], "g", "only feature nodes"),
        ([features[0], len(graph.nodes)], "g", "not in the graph"),
        ([features[0], pruned_away], "g", "pruned"),
        (features[:2], "   ", "needs a name"),
        (features[:2], "x" * (MAX_SUPERNODE_NAME + 1), f"at most {MAX_SUPERNODE_NAME}"),
        (features[:2], "two\nlines", "one line"),
    ]
    for members, name, message in cases:
        with pytest.raises(ListerError, match=message):
            group(graph, members, name, kept=pruned.node_mask)
    # the same check with kept given as indices
    with pytest.raises(ListerError, match="pruned"):
        group(graph, [features[0], pruned_away], "g", kept=[int(i) for i in np.flatnonzero(pruned.node_mask)])


def test_influence_and_edges_are_the_members_summed_without_inner_edges(graph_and_pruned):
    _, graph, pruned = graph_and_pruned
    A = graph.adjacency.double()
    # a kept feature and one of its kept parent features: the edge between them is inside the group
    features = set(_kept_features(graph, pruned))
    child, parent = next((t, s) for t, s in torch.nonzero(pruned.edge_mask).tolist() if t in features and s in features)
    sn = group(graph, [child, parent], "pair", kept=pruned.node_mask)
    assert supernode_influence(pruned, sn) == pytest.approx(pruned.node_influence[child] + pruned.node_influence[parent])
    edges = supernode_edges(graph, sn)
    incoming, outgoing = dict(edges.incoming), dict(edges.outgoing)
    assert parent not in incoming and child not in outgoing and child not in incoming and parent not in outgoing
    for source, weight in incoming.items():
        assert weight == pytest.approx(float(A[child, source] + A[parent, source]), abs=1e-9)
    expected_out = {t: float(A[t, child] + A[t, parent]) for t in range(len(graph.nodes)) if t not in (child, parent) and float(A[t, child] + A[t, parent]) != 0}
    assert outgoing.keys() == expected_out.keys()
    assert all(outgoing[t] == pytest.approx(w, abs=1e-9) for t, w in expected_out.items())
    assert [abs(w) for _, w in edges.incoming] == sorted((abs(w) for _, w in edges.incoming), reverse=True)
    # only kept edges when the pruned graph is given
    kept_in = supernode_edges(graph, sn, pruned).incoming
    assert {s for s, _ in kept_in} <= {s for t in (child, parent) for s in np.flatnonzero(pruned.edge_mask[t].numpy())}
    assert len(kept_in) < len(edges.incoming)


def test_neuronpedia_supernodes_are_name_then_ids_and_validate(graph_and_pruned):
    loaded, graph, pruned = graph_and_pruned
    features = _kept_features(graph, pruned)
    mine = group(graph, features[:3], "three features", kept=pruned.node_mask)
    strings = [str(t) for t in loaded.to_str_tokens(graph.tokens)]
    data = neuronpedia_json(graph, pruned, strings, slug="s", model_name="lister-tiny", blank_id=loaded.ids.blank, groups=[mine])
    jsonschema.validate(data, SCHEMA)
    ids = {n["node_id"] for n in data["nodes"]}
    groups = data["qParams"]["supernodes"]
    assert groups[0][0] == "three features" and len(groups[0]) == 4 and set(groups[0][1:]) <= ids
    automatic = auto_supernodes(graph, [int(i) for i in np.flatnonzero(pruned.node_mask)], None)
    assert [g[0] for g in groups[1:]] == [g.name for g in automatic]
    ours = graph_json(graph, pruned, strings, scores=scores(graph), groups=[mine])
    assert ours["supernodes"][0] == {"name": "three features", "members": [node_name(graph, m) for m in mine.members],
                                     "influence": pytest.approx(supernode_influence(pruned, mine))}


def test_a_users_groups_are_kept_in_a_saved_graph(graph_and_pruned):
    from lister_tui.core.study.graphs.export import saved_supernodes
    from lister_tui.core.study.graphs.record import GraphRecord

    loaded, graph, pruned = graph_and_pruned
    features = _kept_features(graph, pruned)
    mine = group(graph, features[:2], "pair", kept=pruned.node_mask)
    strings = [str(t) for t in loaded.to_str_tokens(graph.tokens)]
    data = graph_json(graph, pruned, strings, scores=scores(graph), groups=[mine])
    record = GraphRecord.from_graph_json("short/Animals/0@1", json.loads(json.dumps(data)), saved_supernodes(graph, [mine]))
    assert [(s.name, list(s.members)) for s in record.supernodes] == [("pair", [node_name(graph, m) for m in mine.members])]
    assert (record.n_kept, record.n_edges, record.n_nodes) == (int(pruned.node_mask.sum()), int(pruned.edge_mask.sum()), len(graph.nodes))
