"""A pruned attribution graph as files: our JSON, and circuit-tracer's / Neuronpedia's graph JSON.

Neuronpedia ids (circuit-tracer's ``frontend/graph_models.py``): feature ``{layer}_{index}_{pos}``
with ``feature`` the Cantor pairing of (layer, index) (``schema_version`` 1), error
``0_{layer}_{pos}``, token ``E_{vocab}_{pos}``, target ``{top}_{vocab}_{pos}``. Without attention
features a viewer layer is a model layer, as circuit-tracer writes it. With attention features,
each model layer L takes two viewer layers, 2L for attention (``feature_type`` "lorsa", the
viewer's attention-feature type; errors "attention reconstruction error") and 2L + 1 for the
transcoder, so ids never collide; ``metadata.transcoder_list`` names every viewer layer.
The metric is the target "logit" node at the blank token's id, labelled with what it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from lister_tui.core.study.graphs.attribute import (
    ATTN,
    ATTN_ERROR,
    KIND_NAMES,
    MLP_ERROR,
    TARGET,
    TC,
    TOKEN,
    AttributionGraph,
)
from lister_tui.core.study.graphs.heads import head_label
from lister_tui.core.study.graphs.prune import Pruned
from lister_tui.core.study.graphs.supernodes import (
    Supernode,
    auto_supernodes,
    supernode_influence,
)

FORMATS = ("json", "neuronpedia")
METRIC_LABEL = "logit(blank) − logit(newline)"


def _cantor(x: int, y: int) -> int:
    return (x + y) * (x + y + 1) // 2 + y


def site_of(graph: AttributionGraph, node: int) -> str:
    """The feature site of a node: ``tc_L`` (transcoder), ``attn_L``; errors and tokens named by kind."""
    kind, layer = int(graph.nodes.kind[node]), int(graph.nodes.layer[node])
    return {TC: f"tc_{layer}", ATTN: f"attn_{layer}", MLP_ERROR: f"mlp_error_{layer}", ATTN_ERROR: f"attn_error_{layer}"}.get(kind, KIND_NAMES[kind])


def node_name(graph: AttributionGraph, node: int) -> str:
    """Our id: ``tc_2/17@40``, ``attn_2/283@42``, ``mlp_error_1@40``, ``token@8``, ``metric@42``."""
    kind, pos, feature = int(graph.nodes.kind[node]), int(graph.nodes.pos[node]), int(graph.nodes.feature[node])
    if kind in (TC, ATTN):
        return f"{site_of(graph, node)}/{feature}@{pos}"
    if kind == TARGET:
        return f"metric@{pos}"
    return f"{site_of(graph, node)}@{pos}"


def graph_json(
    graph: AttributionGraph,
    pruned: Pruned,
    token_strings: Sequence[str],
    *,
    scores: tuple[float, float],
    heads: Mapping[tuple[int, int], np.ndarray] | None = None,
    checks: Sequence[dict] = (),
    labels: Callable[[str, int], str | None] | None = None,
    extra: dict | None = None,
    groups: Sequence[Supernode] = (),
) -> dict:
    """Our JSON: kept nodes and edges (weights, head shares), scores, checks per node, supernodes.

    ``supernodes`` lists the user's ``groups`` then the automatic ones (one feature at several
    positions, features sharing a label), each with its members' summed influence.
    """
    kept = np.flatnonzero(pruned.node_mask)
    nodes = graph.nodes
    checks_by_node = {c["node"]: c for c in checks}
    out_nodes = []
    for i in kept:
        kind = int(nodes.kind[i])
        entry = {
            "id": node_name(graph, int(i)),
            "kind": KIND_NAMES[kind],
            "site": site_of(graph, int(i)),
            "layer": int(nodes.layer[i]),
            "pos": int(nodes.pos[i]),
            "token": token_strings[int(nodes.pos[i])],
            "feature": int(nodes.feature[i]),
            "activation": float(nodes.activation[i]),
            "influence": float(pruned.node_influence[i]),
        }
        if labels is not None and kind in (TC, ATTN):
            entry["label"] = labels(site_of(graph, int(i)), int(nodes.feature[i]))
        if int(i) in checks_by_node:
            c = checks_by_node[int(i)]
            entry["check"] = {"factor": c["factor"], "graph": c["graph"], "replacement": c["replacement"], "real": c["real"]}
        out_nodes.append(entry)
    edges = []
    rows, cols = np.nonzero(pruned.edge_mask.numpy())
    for t, s in zip(rows.tolist(), cols.tolist()):
        edge = {"source": node_name(graph, s), "target": node_name(graph, t), "weight": float(graph.adjacency[t, s])}
        if heads is not None and (t, s) in heads:
            shares = heads[(t, s)]
            edge["heads"] = {head_label(h, graph.n_heads): float(shares[h]) for h in np.flatnonzero(np.abs(shares) > 1e-9 * max(1.0, abs(edge["weight"])))}
        edges.append(edge)
    replacement, completeness = scores
    out = {
        "format": "lister-tui attribution graph",
        "version": 1,
        "metric": METRIC_LABEL,
        "targets": [{"pos": int(nodes.pos[t]), "value": float(nodes.activation[t])} for t in graph.targets],
        "attention_features": graph.attention_features,
        "n_nodes_total": len(nodes),
        "replacement_score": replacement,
        "completeness_score": completeness,
        "node_threshold": pruned.node_threshold,
        "edge_threshold": pruned.edge_threshold,
        "kept_node_influence": pruned.kept_node_influence,
        "kept_edge_influence": pruned.kept_edge_influence,
        "seconds": graph.seconds,
        "tokens": list(token_strings),
        "nodes": out_nodes,
        "edges": edges,
        "supernodes": supernodes_json(graph, pruned, [*groups, *auto_supernodes(graph, [int(i) for i in kept], labels)]),
    }
    if extra:
        out.update(extra)
    return out


def _viewer_layer(graph: AttributionGraph, kind: int, layer: int) -> int:
    if not graph.attention_features:
        return layer
    return 2 * layer if kind in (ATTN, ATTN_ERROR) else 2 * layer + 1


def supernodes(
    graph: AttributionGraph,
    kept: Sequence[int],
    ids: Mapping[int, str],
    labels: Callable[[str, int], str | None] | None,
    extra: Sequence[Supernode] = (),
) -> list[list[str]]:
    """Neuronpedia's ``qParams.supernodes``: ``[name, node_id, …]`` for the user's groups, then the automatic ones.

    A group with fewer than two members among ``ids`` (the nodes written) is left out.
    """
    out = []
    for sn in [*extra, *auto_supernodes(graph, kept, labels)]:
        members = [ids[m] for m in sn.members if m in ids]
        if len(members) >= 2:
            out.append([sn.name, *members])
    return out


def saved_supernodes(graph: AttributionGraph, groups: Sequence[Supernode]) -> list[tuple[str, list[str]]]:
    """The user's groups as a saved graph keeps them (``record.GraphRecord``): (name, member node ids)."""
    return [(sn.name, [node_name(graph, m) for m in sn.members]) for sn in groups]


def supernodes_json(graph: AttributionGraph, pruned: Pruned, groups: Sequence[Supernode]) -> list[dict]:
    """Our JSON of supernodes: name, member ids, summed influence."""
    return [{"name": sn.name, "members": [node_name(graph, m) for m in sn.members], "influence": supernode_influence(pruned, sn)} for sn in groups]


def neuronpedia_json(
    graph: AttributionGraph,
    pruned: Pruned,
    token_strings: Sequence[str],
    *,
    slug: str,
    model_name: str,
    blank_id: int,
    labels: Callable[[str, int], str | None] | None = None,
    groups: Sequence[Supernode] = (),
) -> dict:
    """The pruned graph in circuit-tracer's graph JSON (what Neuronpedia's viewer reads); ``groups``: the user's supernodes."""
    nodes = graph.nodes
    kept = [int(i) for i in np.flatnonzero(pruned.node_mask)]
    n_viewer = 2 * graph.n_layers if graph.attention_features else graph.n_layers
    top = n_viewer + 1
    ids: dict[int, str] = {}
    out_nodes = []
    for i in kept:
        kind, layer, pos, feature = int(nodes.kind[i]), int(nodes.layer[i]), int(nodes.pos[i]), int(nodes.feature[i])
        influence = float(pruned.node_influence[i])
        if kind in (TC, ATTN):
            vl = _viewer_layer(graph, kind, layer)
            label = labels(site_of(graph, i), feature) if labels is not None else None
            entry = dict(node_id=f"{vl}_{feature}_{pos}", feature=_cantor(vl, feature), layer=str(vl), ctx_idx=pos,
                         feature_type="lorsa" if kind == ATTN else "cross layer transcoder", jsNodeId=f"{vl}_{feature}-0",
                         clerp=label or f"{site_of(graph, i)} feature {feature}", activation=float(nodes.activation[i]))
        elif kind in (MLP_ERROR, ATTN_ERROR):
            vl = _viewer_layer(graph, kind, layer)
            entry = dict(node_id=f"0_{vl}_{pos}", feature=-1, layer=str(vl), ctx_idx=pos,
                         feature_type="mlp reconstruction error" if kind == MLP_ERROR else "attention reconstruction error",
                         jsNodeId=f"{vl}_{pos}-0", clerp=f"{site_of(graph, i)} at {pos}")
        elif kind == TOKEN:
            vocab = graph.tokens[pos]
            entry = dict(node_id=f"E_{vocab}_{pos}", feature=pos, layer="E", ctx_idx=pos, feature_type="embedding",
                         jsNodeId=f"E_{vocab}-{pos}", clerp=f"token {token_strings[pos]}")
        else:
            weight = float(graph.target_weights[i])
            entry = dict(node_id=f"{top}_{blank_id}_{pos}", feature=blank_id, layer=str(top), ctx_idx=pos, feature_type="logit",
                         jsNodeId=f"L_{blank_id}-{pos}", is_target_logit=True, token_prob=weight,
                         clerp=f'Output "{METRIC_LABEL}" (p={weight:.3f}; metric {float(nodes.activation[i]):+.3f})')
        entry.setdefault("token_prob", 0.0)
        entry.setdefault("is_target_logit", False)
        entry.update(run_idx=0, reverse_ctx_idx=0, influence=influence)
        entry.setdefault("activation", None)
        ids[i] = entry["node_id"]
        out_nodes.append(entry)
    rows, cols = np.nonzero(pruned.edge_mask.numpy())
    links = [{"source": ids[s], "target": ids[t], "weight": float(graph.adjacency[t, s])} for t, s in zip(rows.tolist(), cols.tolist()) if s in ids and t in ids]
    names = []
    for vl in range(n_viewer):
        if graph.attention_features:
            names.append(f"attn_{vl // 2}" if vl % 2 == 0 else f"tc_{vl // 2}")
        else:
            names.append(f"tc_{vl}")
    return {
        "metadata": {
            "slug": slug,
            "scan": model_name,
            "transcoder_list": names,
            "prompt_tokens": list(token_strings),
            "prompt": "".join(token_strings),
            "node_threshold": pruned.node_threshold,
            "schema_version": 1,
        },
        "qParams": {"pinnedIds": [], "supernodes": supernodes(graph, kept, ids, labels, groups), "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": out_nodes,
        "links": links,
    }
