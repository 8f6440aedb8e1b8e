"""A circuit as files: our JSON, Graphviz DOT, and the graph JSON of circuit-tracer / Neuronpedia.

The Neuronpedia form follows circuit-tracer's frontend models (``metadata``, ``qParams``,
``nodes`` with ``node_id``/``feature``/``layer``/``ctx_idx``/``feature_type``, ``links``):
its viewer lays nodes out by ``layer`` and ``ctx_idx``, so each site becomes one layer in
model order, the embeddings layer ``E`` and the metric a target "logit" node above them.
Its feature types are those the viewer styles (it knows transcoders, not SAEs on
attention or the residual stream); the site is named in each node's ``clerp``.
"""

from __future__ import annotations

import json

from lister_tui.core.errors import ListerError
from lister_tui.core.study.circuits.graph import EMBED, METRIC, Circuit, Node

FORMATS = ("json", "neuronpedia")


def visible(text: str | None) -> str:
    """Token text with control characters made visible (a newline shows as ⏎)."""
    if text is None:
        return ""
    return "".join(
        "⏎" if c == "\n" else "→" if c == "\t" else "↵" if c == "\r" else f"\\x{ord(c):02x}" if ord(c) < 32 or ord(c) == 127 else c
        for c in text
    )


def label(node: Node) -> str:
    """A short label: the feature id, "err", "emb" or "metric"."""
    return {"feature": str(node.feature), "error": "err", "embed": "emb", "metric": "metric"}[node.kind]


def circuit_json(circuit: Circuit, extra: dict | None = None) -> dict:
    """Our JSON: nodes, edges, faithfulness, completeness, settings, and what ``extra`` adds."""
    out = circuit.to_dict()
    if extra:
        out.update(extra)
    return out


def circuit_dot(circuit: Circuit) -> str:
    """Graphviz DOT, one cluster per site in model order, edges labelled with their weights."""
    lines = ["digraph circuit {", "  rankdir=BT;", '  node [shape=box, fontname="monospace"];']
    sites: dict[str, list[Node]] = {}
    for n in circuit.nodes:
        sites.setdefault(n.site, []).append(n)
    for i, (site, nodes) in enumerate(sites.items()):
        lines.append(f"  subgraph cluster_{i} {{ label={json.dumps(site)};")
        for n in nodes:
            text = f"{site} {label(n)}" + (f" @{n.pos} {visible(n.token)}" if n.pos is not None else "")
            lines.append(f"    {json.dumps(n.id)} [label={json.dumps(text + f' ({n.effect:+.3f})')}];")
        lines.append("  }")
    for e in circuit.edges:
        color = "blue" if e.weight > 0 else "red"
        lines.append(f"  {json.dumps(e.source)} -> {json.dumps(e.target)} [label={json.dumps(f'{e.weight:+.3f}')}, color={color}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def neuronpedia_json(circuit: Circuit, prompt_tokens: list[str], slug: str, model_name: str) -> dict:
    """The circuit in circuit-tracer's graph JSON (position-level circuits only)."""
    if circuit.settings.level != "position":
        raise ListerError("the Neuronpedia graph format needs token positions; use a one-sample (position-level) circuit")
    layer_of = {site: i for i, site in enumerate(s for s in dict.fromkeys(n.site for n in circuit.nodes) if s not in (EMBED, METRIC))}
    top = len(layer_of)
    target = max((n.pos for n in circuit.nodes if n.pos is not None), default=0)
    nodes, ids = [], {}
    for n in circuit.nodes:
        if n.kind == "metric":
            nid = f"{top + 1}_0_{target}"
            entry = dict(node_id=nid, feature=0, layer=str(top + 1), ctx_idx=target, feature_type="logit",
                         is_target_logit=True, jsNodeId=f"L_0-{target}", clerp="metric: logit(blank) − logit(newline)")
        elif n.kind == "embed":
            nid = f"E_{n.pos}_{n.pos}"
            entry = dict(node_id=nid, feature=n.pos, layer="E", ctx_idx=n.pos, feature_type="embedding",
                         jsNodeId=f"E_{n.pos}-{n.pos}", clerp=f"embedding {visible(n.token)}")
        elif n.kind == "error":
            layer = layer_of[n.site]
            nid = f"0_{layer}_{n.pos}"
            entry = dict(node_id=nid, feature=-1, layer=str(layer), ctx_idx=n.pos, feature_type="mlp reconstruction error",
                         jsNodeId=f"{layer}_{n.pos}-0", clerp=f"{n.site} SAE error")
        else:
            layer = layer_of[n.site]
            nid = f"{layer}_{n.feature}_{n.pos}"
            entry = dict(node_id=nid, feature=n.feature, layer=str(layer), ctx_idx=n.pos, feature_type="cross layer transcoder",
                         jsNodeId=f"{layer}_{n.feature}-0", clerp=f"{n.site} feature {n.feature}", activation=n.activation)
        entry.update(token_prob=0.0, run_idx=0, reverse_ctx_idx=0, influence=n.effect)
        entry.setdefault("is_target_logit", False)
        entry.setdefault("activation", None)
        ids[n.id] = nid
        nodes.append(entry)
    links = [{"source": ids[e.source], "target": ids[e.target], "weight": e.weight} for e in circuit.edges if e.source in ids and e.target in ids]
    return {
        "metadata": {
            "slug": slug,
            "scan": model_name,
            "transcoder_list": [s for s in layer_of],
            "prompt_tokens": [visible(t) for t in prompt_tokens],
            "prompt": "".join(prompt_tokens),
            "node_threshold": circuit.settings.node_threshold,
            "schema_version": 1,
        },
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": nodes,
        "links": links,
    }
