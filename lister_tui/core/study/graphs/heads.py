"""Which attention heads carry an edge, and the strongest path between two nodes.

An edge between positions can only pass through attention. The part of edge s → t that
head (l, h) carries is the edge minus the same edge with that head's frozen pattern set to
zero (the map is linear, so this is exact): the sum over the paths through the head. When
attention features are nodes, attention output is made of them, so an edge between
positions always ends in an attention feature and its heads are that feature's layer's.
One forward pass of the replacement model serves every head: batch row b blocks head
b mod (n_layers · n_heads) for its target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from lister_tui.core.study.graphs import replacement as rep
from lister_tui.core.study.graphs.attribute import (
    AttributionGraph,
    Replacement,
    _edge_rows,
)

if TYPE_CHECKING:
    from sae_lens import SAE
    from transformer_lens import HookedTransformer


def head_label(index: int, n_heads: int) -> str:
    """``L.H`` of the flat head index ``L·n_heads + H``."""
    return f"{index // n_heads}.{index % n_heads}"


def head_shares(
    model: HookedTransformer,
    graph: AttributionGraph,
    transcoders: Mapping[int, SAE],
    attn_saes: Mapping[int, SAE],
    edges: Sequence[tuple[int, int]],
    *,
    blank_id: int,
    newline_id: int,
    targets_per_pass: int = 8,
) -> dict[tuple[int, int], np.ndarray]:
    """{(target, source): [n_layers · n_heads] the part of the edge each head carries} for ``edges``."""
    if not edges:
        return {}
    state = graph.extra["state"]
    nodes = graph.nodes
    n_heads_all = graph.n_layers * graph.n_heads
    used_attn = attn_saes if graph.attention_features else {}
    direction, _ = rep.metric_direction(model, blank_id, newline_id)
    targets = sorted({t for t, _ in edges})
    k = max(1, min(targets_per_pass, len(targets)))
    batch = k * n_heads_all
    mask = torch.ones(batch, graph.n_layers, graph.n_heads, dtype=state.embed.dtype, device=state.embed.device)
    for b in range(batch):
        head = b % n_heads_all
        mask[b, head // graph.n_heads, head % graph.n_heads] = 0
    blocked: dict[int, torch.Tensor] = {}
    with torch.inference_mode(False), torch.enable_grad():
        replacement = Replacement(model, state, transcoders, used_attn, batch, head_mask=mask)
        for start in range(0, len(targets), k):
            chunk = targets[start : start + k]
            specs = [(int(nodes.kind[t]), int(nodes.layer[t]), int(nodes.pos[t]), int(nodes.feature[t])) for t in chunk for _ in range(n_heads_all)]
            rows = _edge_rows(replacement, replacement.gradients(specs, direction), nodes, len(specs), state)
            for i, t in enumerate(chunk):
                blocked[t] = rows[i * n_heads_all : (i + 1) * n_heads_all]  # [heads, N]
    A = graph.adjacency
    return {(t, s): (float(A[t, s]) - blocked[t][:, s]).numpy() for t, s in edges}


def strongest_path(graph: AttributionGraph, source: int, target: int, edge_mask: torch.Tensor | None = None) -> list[int]:
    """The path source → … → target whose weakest normalised |edge| is largest (a widest path).

    Edges are |adjacency| normalised per target row, as pruning uses them; ``edge_mask``
    restricts to kept edges. Returns the node indices from source to target ([] if none).
    """
    from lister_tui.core.study.graphs.prune import normalize

    weights = normalize(graph.adjacency.double())
    if edge_mask is not None:
        weights = weights * edge_mask
    # widest path on a DAG by repeated relaxation from the target backwards
    n = len(graph.nodes)
    best = torch.zeros(n, dtype=torch.float64)  # best[u]: widest bottleneck from u to target
    best[target] = float("inf")
    nxt = np.full(n, -1)
    for _ in range(4 * graph.n_layers + 4):
        # candidate for u through t: min(weights[t, u], best[t])
        cand = torch.minimum(weights, best[:, None])  # [t, u]
        value, via = cand.max(dim=0)
        improved = value > best
        improved[target] = False
        if not improved.any():
            break
        best[improved] = value[improved]
        nxt[improved.numpy()] = via[improved].numpy()
    if best[source] <= 0:
        return []
    path, node = [source], source
    while node != target and len(path) <= n:
        node = int(nxt[node])
        path.append(node)
    return path
