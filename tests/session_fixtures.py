"""Workspace-like data built without the model, for the session tests (a plain module)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lister_tui.core.study.experiment import Pair, SAEListAttribution
from lister_tui.core.engine.generation import ListSample
from lister_tui.core.engine.listing import ListMetrics, parse_structure
from lister_tui.core.engine.loading import TokenIds
from lister_tui.core.engine.prompts import PromptSpec
from lister_tui.core.sessions.schema import ModelInfo, SiteInfo
from lister_tui.core.sessions.workspace import AblationChoice, AblationRun, Workspace

# a made-up vocabulary: 0 pad, 1 bos, 2 "-", 3 " ", 4 "\n", 5 end, 6.. words
IDS = TokenIds(blank=3, newline=4, item_marker=2, stops=(5,), bos=1)
SITES = (SiteInfo("res_0", "res", 0, "blocks.0.hook_resid_post"), SiteInfo("attn_1", "attn", 1, "blocks.1.attn.hook_z"))
MODEL = ModelInfo("fake-model", "shipped", IDS, SITES, {"sha256": {"model.safetensors": "ab" * 32}})
VOCAB = {0: "<pad>", 1: "<bos>", 2: "-", 3: " ", 4: "\n", 5: "<end>", **{i: f"w{i}" for i in range(6, 20)}}


def make_sample(template: str, topic: str, n: int, seed: int, items: list[list[int]], filler: list[bool], prefix_len: int | None = None, metric: float | None = None) -> ListSample:
    prompt = [1, 6, 7, 2]
    tokens = list(prompt)
    for i, (words, fill) in enumerate(zip(items, filler)):
        if i:
            tokens.append(2)
        tokens += words + ([3] if fill else []) + [4]
    tokens.append(5)
    structure = parse_structure(tokens, IDS, len(prompt) - 1)
    metrics = ListMetrics(len(items), len(tokens) - len(prompt), 0, float(np.log(max(len(items), 1))), sum(filler), structure.filler_items, True, metric)
    return ListSample(PromptSpec(template, topic, n, seed), len(prompt), tuple(tokens), True, structure, metrics, prefix_len)


def make_attribution(sae: str, sample: ListSample, n_pairs: int, seed: int, d_sae: int = 16) -> SAEListAttribution:
    rng = np.random.default_rng(seed)
    pos = sample.structure.attribution_pos
    top = [[Pair(sae, 0, int(rng.integers(1, pos + 1)), int(rng.integers(0, d_sae)), float(rng.normal()), float(abs(rng.normal()))) for _ in range(n_pairs)]]
    acts = np.where(rng.random((1, d_sae)) < 0.3, rng.random((1, d_sae)), 0).astype(np.float32)
    return SAEListAttribution(
        sae, "blocks.0.hook_resid_post", d_sae, top, acts,
        np.array([rng.normal()], dtype=np.float32), np.array([rng.normal()], dtype=np.float32), np.array([rng.normal()], dtype=np.float32), [pos],
    )


def small_workspace(note: str = "") -> Workspace:
    """Two samples, one attributed, with an ablation run and notes."""
    ws = Workspace("fake-model", notes=note)
    a = make_sample("short", "Fruits", 0, 11, [[8, 9], [10]], [False, True], metric=1.5)
    b = make_sample("long", "Colors", 1, 12, [[11], [12], [13, 14]], [False, False, True])
    ka, kb = ws.add_samples([a], "code") + ws.add_samples([b], "greedy")
    ws.set_curve(ka, [0.5 * i for i in range(len(a.tokens))])
    integrated = replace(make_attribution("attn_1", a, 3, 2), method="ig", ig_steps=10)
    ws.set_attribution(ka, {"res_0": make_attribution("res_0", a, 4, 1), "attn_1": integrated})
    ws.toggle(ka, AblationChoice("res_0", 3, 5))
    ws.toggle(ka, AblationChoice("attn_1", 2, 6, "every"))
    ablated = make_sample("short", "Fruits", 0, 11, [[8, 9], [10], [11]], [False, False, True], prefix_len=9, metric=0.25)
    base = make_sample("short", "Fruits", 0, 11, [[8, 9], [10]], [False, True], prefix_len=9, metric=1.5)
    ws.record_ablation(ka, AblationRun(ka, tuple(ws.state(ka).choices), True, "code", base, ablated, (0.1,) * len(base.tokens), (0.2,) * len(ablated.tokens), 1.5, 0.75))
    ws.set_note(kb, note or "a note | with a pipe\nand a line")
    return ws


def decode(ids) -> str:
    return "".join(VOCAB.get(int(i), "?") for i in ids)


def assert_same_workspace(a: Workspace, b: Workspace) -> None:
    assert a.model_name == b.model_name and a.notes == b.notes
    assert list(a.samples) == list(b.samples)
    for key in a.samples:
        x, y = a.samples[key], b.samples[key]
        assert x.sample == y.sample and x.preset == y.preset and x.curve == y.curve and x.note == y.note
        assert x.choices == y.choices and x.runs == y.runs
        assert (x.attribution is None) == (y.attribution is None)
        for sae in x.attribution or {}:
            assert_same_attribution(x.attribution[sae], y.attribution[sae])
    assert (a.batch is None) == (b.batch is None)
    if a.batch is not None:
        assert a.batch.keys == b.batch.keys
        for sae in a.batch.by_sae:
            assert_same_attribution(a.batch.by_sae[sae], b.batch.by_sae[sae])


def assert_same_attribution(x: SAEListAttribution, y: SAEListAttribution) -> None:
    assert (x.sae_id, x.hook_name, x.d_sae, x.top, x.attribution_pos) == (y.sae_id, y.hook_name, y.d_sae, y.top, y.attribution_pos)
    assert (x.method, x.ig_steps) == (y.method, y.ig_steps)
    for name in ("max_activation", "feature_total", "error_total", "metric"):
        np.testing.assert_array_equal(getattr(x, name), getattr(y, name))


def make_graph_json(n_tokens: int, target: int) -> dict:
    """A small pruned graph in export.graph_json's form (two features, a token, the metric), made without the model."""
    node = {"kind": "transcoder", "layer": 0, "token": "w", "activation": 1.0, "influence": 0.25}
    nodes = [
        {**node, "id": f"tc_0/3@{target - 1}", "site": "tc_0", "pos": target - 1, "feature": 3, "label": "the word short"},
        {**node, "id": f"tc_0/3@{target}", "site": "tc_0", "pos": target, "feature": 3, "label": None},
        {**node, "id": "token@1", "kind": "token", "site": "token", "layer": -1, "pos": 1, "feature": -1, "influence": 0.5},
        {**node, "id": f"metric@{target}", "kind": "target", "site": "target", "layer": -1, "pos": target, "feature": -1, "influence": 0.0},
    ]
    edges = [
        {"source": "token@1", "target": f"tc_0/3@{target - 1}", "weight": 0.5},
        {"source": f"tc_0/3@{target - 1}", "target": f"metric@{target}", "weight": -1.25, "heads": {"0.1": -1.0}},
        {"source": f"tc_0/3@{target}", "target": f"metric@{target}", "weight": 0.75},
    ]
    return {
        "format": "lister-tui attribution graph", "version": 1, "metric": "logit(blank) − logit(newline)",
        "targets": [{"pos": target, "value": 1.5}], "attention_features": True, "n_nodes_total": 40,
        "replacement_score": 0.75, "completeness_score": 0.5, "node_threshold": 0.8, "edge_threshold": 0.98,
        "kept_node_influence": 0.9, "kept_edge_influence": 0.95, "seconds": 0.5, "tokens": ["w"] * n_tokens,
        "nodes": nodes, "edges": edges, "supernodes": [{"name": "tc_0/3", "members": [nodes[0]["id"], nodes[1]["id"]], "influence": 0.5}],
    }


def add_graph(ws: Workspace, key: str | None = None) -> int:
    """A saved graph (with one user supernode) of ``key``'s sample (the first sample by default)."""
    from lister_tui.core.study.graphs.record import GraphRecord

    key = key or next(iter(ws.samples))
    sample = ws.state(key).sample
    data = make_graph_json(len(sample.tokens), sample.structure.attribution_pos)
    ids = [n["id"] for n in data["nodes"][:2]]
    return ws.add_graph(GraphRecord.from_graph_json(key, data, [("the pair", ids)], created="2026-12-07T18:00:00Z"))
