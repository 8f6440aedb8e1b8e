"""What a graph predicts beside what happens: a node scaled in the replacement and in the real model.

For a feature or error node scaled by ``factor`` (0: zeroed), three numbers for each target:

- **graph**: the change the graph predicts, propagated linearly through every feature
  downstream (an active JumpReLU feature's activation is its pre-activation, so
  Δa_t = Σ_u adjacency[t, u] · Δa_u / a_u for features u, and errors and tokens fixed);
- **replacement**: measured in the local replacement model (attention patterns and
  LayerNorm scales frozen, errors fixed, features downstream recomputed through their
  encoders, so a feature crossing its threshold shows as a difference from the graph);
- **real**: measured in the real model: the node's decoder output (a feature's, at its
  layer and position) or its error is removed in proportion from the site's true output,
  everything else live (the errors kept, as the explorer's SAE ablations keep them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from lister_tui.core.study.graphs import replacement as rep
from lister_tui.core.study.graphs.attribute import (
    ATTN,
    ATTN_ERROR,
    MLP_ERROR,
    TC,
    AttributionGraph,
)

if TYPE_CHECKING:
    from sae_lens import SAE
    from transformer_lens import HookedTransformer


def graph_prediction(graph: AttributionGraph, node: int, factor: float) -> np.ndarray:
    """[n_targets]: the change of each target when ``node`` is scaled by ``factor``, propagated linearly."""
    A = graph.adjacency.double()
    nodes = graph.nodes
    feature = torch.as_tensor(nodes.is_feature())
    act = torch.as_tensor(nodes.activation)
    relative = torch.zeros(len(nodes), dtype=torch.float64)  # Δ(node) / node, the scale change of every node
    relative[node] = factor - 1.0
    seed = relative.clone()
    for _ in range(2 * graph.n_layers + 2):
        delta = A @ relative  # [N] Δ pre-activation of every feature and target
        new = seed.clone()
        new[feature] += delta[feature] / act[feature]
        new[node] = factor - 1.0
        if torch.allclose(new, relative, rtol=0, atol=1e-15):
            break
        relative = new
    return (A @ relative)[torch.as_tensor(graph.targets)].numpy()


def _edit(kind: int, layer: int, pos: int, feature: int, factor: float):
    def edit(at_layer: int, acts: torch.Tensor) -> torch.Tensor:
        if at_layer != layer:
            return acts
        acts = acts.clone()
        acts[:, pos, feature] *= factor
        return acts

    return edit


def measured(
    model: HookedTransformer,
    graph: AttributionGraph,
    transcoders: Mapping[int, SAE],
    attn_saes: Mapping[int, SAE],
    node: int,
    factor: float,
    *,
    frozen: bool,
    blank_id: int,
    newline_id: int,
) -> np.ndarray:
    """[n_targets]: the measured change of each target (replacement model if ``frozen``, else the real model)."""
    state = graph.extra["state"]
    nodes = graph.nodes
    kind, layer, pos, feature = (int(x) for x in (nodes.kind[node], nodes.layer[node], nodes.pos[node], nodes.feature[node]))
    targets = nodes.pos[graph.targets]
    used_attn = attn_saes if graph.attention_features else {}
    kwargs: dict = {}
    if kind == TC:
        kwargs["edit"] = _edit(kind, layer, pos, feature, factor)
    elif kind == ATTN:
        kwargs["attn_edit"] = _edit(kind, layer, pos, feature, factor)
    hooks = []
    if kind in (MLP_ERROR, ATTN_ERROR):
        error = (state.tc_error if kind == MLP_ERROR else state.attn_error)[layer]
        if frozen:
            scaled = error.clone().unsqueeze(0)
            scaled[0, pos] *= factor
            kwargs["tc_error" if kind == MLP_ERROR else "attn_error"] = {layer: scaled}
        else:
            name = rep.TC_OUT.format(layer) if kind == MLP_ERROR else rep.Z_HOOK.format(layer)

            def remove(act, hook, error=error):
                act = act.clone()
                act[:, pos] -= (1.0 - factor) * error[pos]
                return act

            hooks.append((name, remove))
    with torch.no_grad():
        base = rep.run(model, state, transcoders, used_attn, frozen=frozen, live_errors=not frozen)
        with model.hooks(fwd_hooks=hooks):
            changed = rep.run(model, state, transcoders, used_attn, frozen=frozen, live_errors=not frozen, **kwargs)
    before = rep.metric_of(model, base.final, blank_id, newline_id)[0, targets]
    after = rep.metric_of(model, changed.final, blank_id, newline_id)[0, targets]
    return (after - before).double().cpu().numpy()


def check_nodes(
    model: HookedTransformer,
    graph: AttributionGraph,
    transcoders: Mapping[int, SAE],
    attn_saes: Mapping[int, SAE],
    node_indices: Sequence[int],
    *,
    factor: float = 0.0,
    blank_id: int,
    newline_id: int,
) -> list[dict]:
    """Per node: the graph's predicted change of the (first) target beside the replacement's and the real model's."""
    out = []
    for node in node_indices:
        if graph.nodes.kind[node] not in (TC, ATTN, MLP_ERROR, ATTN_ERROR):
            continue
        args = dict(blank_id=blank_id, newline_id=newline_id)
        out.append({
            "node": int(node),
            "factor": factor,
            "graph": float(graph_prediction(graph, int(node), factor)[0]),
            "replacement": float(measured(model, graph, transcoders, attn_saes, int(node), factor, frozen=True, **args)[0]),
            "real": float(measured(model, graph, transcoders, attn_saes, int(node), factor, frozen=False, **args)[0]),
        })
    return out

