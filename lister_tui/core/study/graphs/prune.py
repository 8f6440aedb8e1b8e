"""Pruning and scores of an attribution graph, as circuit-tracer's ``graph.py`` computes them.

A = |adjacency| with each target row normalised to sum 1; the influence of every node on
the targets is w·(A + A² + …) = w·((I − A)⁻¹ − I) for the targets' weights w (computed as
the power series, which ends: the graph is acyclic). Nodes are kept up to ``node_threshold``
of cumulative influence (tokens and targets always), edges up to ``edge_threshold`` of
cumulative edge influence; then features and errors without an outgoing edge, and features
without an incoming one, are dropped until nothing changes.

Replacement score: the share of the tokens' and errors' influence that comes from tokens
(1 when no error node influences the targets). Completeness score: over nodes weighted by
their influence, the share of their normalised input that does not come from error nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lister_tui.core.errors import ListerError
from lister_tui.core.study.graphs.attribute import TARGET, TOKEN, AttributionGraph

DEFAULT_NODE_THRESHOLD = 0.8
DEFAULT_EDGE_THRESHOLD = 0.98


def check_threshold(name: str, value: object) -> float:
    """A threshold must be a number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= 1:
        raise ListerError(f"{name} must be a number in (0, 1] (a share of cumulative influence), got {value!r}; the default is "
                          f"{DEFAULT_NODE_THRESHOLD if 'node' in name else DEFAULT_EDGE_THRESHOLD}")
    return float(value)


def normalize(matrix: Tensor) -> Tensor:
    absolute = matrix.abs()
    return absolute / absolute.sum(dim=1, keepdim=True).clamp(min=1e-10)


def influence(normalized: Tensor, weights: Tensor, max_iter: int = 1000) -> Tensor:
    """w·(A + A² + …) by the power series (A is nilpotent for a graph without cycles)."""
    current = weights @ normalized
    total = current.clone()
    for _ in range(max_iter):
        if not current.any():
            return total
        current = current @ normalized
        total += current
    raise ListerError(f"influence did not converge in {max_iter} steps (is the graph acyclic?)")


def find_threshold(scores: Tensor, share: float) -> Tensor:
    """The smallest score among the largest ones that carry ``share`` of the total (scores are >= 0).

    Only the positive scores are sorted (an edge score matrix is mostly zeros, which add nothing
    to the cumulative share); when the share is reached only with the zeros, the threshold is 0."""
    flat = scores.flatten()
    ordered = torch.sort(flat[flat > 0], descending=True).values
    if len(ordered) == 0:
        return flat.new_zeros(())
    cumulative = torch.cumsum(ordered, dim=0) / ordered.sum().clamp(min=1e-30)
    index = int(torch.searchsorted(cumulative, torch.tensor(share, dtype=cumulative.dtype)).item())
    if index >= len(ordered):
        return flat.new_zeros(()) if len(ordered) < len(flat) else ordered[-1]
    return ordered[index]


@dataclass
class Pruned:
    node_mask: np.ndarray  # [N] bool
    edge_mask: Tensor  # [N, N] bool
    node_influence: np.ndarray  # [N] influence on the targets (unpruned graph)
    node_threshold: float
    edge_threshold: float
    kept_node_influence: float  # share of the non-target nodes' influence carried by kept nodes
    kept_edge_influence: float  # share of the edge influence (in the node-pruned graph) carried by kept edges


def prune(graph: AttributionGraph, node_threshold: float = DEFAULT_NODE_THRESHOLD, edge_threshold: float = DEFAULT_EDGE_THRESHOLD) -> Pruned:
    check_threshold("node threshold", node_threshold)
    check_threshold("edge threshold", edge_threshold)
    A = graph.adjacency.double()
    kinds = graph.nodes.kind
    weights = torch.as_tensor(graph.target_weights, dtype=torch.float64)
    node_inf = influence(normalize(A), weights)
    node_mask = node_inf >= find_threshold(node_inf, node_threshold)
    always = torch.as_tensor(np.isin(kinds, (TOKEN, TARGET)))
    node_mask |= always
    pruned = A.clone()
    pruned[~node_mask] = 0
    pruned[:, ~node_mask] = 0
    normalized = normalize(pruned)
    edge_scores = normalized * (influence(normalized, weights) + weights)[:, None]
    edge_mask = edge_scores >= find_threshold(edge_scores, edge_threshold)
    edge_mask &= pruned != 0
    feature = torch.as_tensor(graph.nodes.is_feature())
    sources = ~always  # features and errors need an outgoing edge
    old = node_mask.clone()
    while True:
        edge_mask[~node_mask] = False
        edge_mask[:, ~node_mask] = False
        node_mask[sources] &= edge_mask[:, sources].any(0)
        node_mask[feature] &= edge_mask[feature].any(1)
        if torch.equal(node_mask, old):
            break
        old = node_mask.clone()
    non_target = ~torch.as_tensor(kinds == TARGET)
    kept_nodes = float(node_inf[node_mask & non_target].sum() / node_inf[non_target].sum().clamp(min=1e-30))
    kept_edges = float(edge_scores[edge_mask].sum() / edge_scores.sum().clamp(min=1e-30))
    return Pruned(node_mask.numpy(), edge_mask, node_inf.numpy(), node_threshold, edge_threshold, kept_nodes, kept_edges)


def scores(graph: AttributionGraph) -> tuple[float, float]:
    """(replacement score, completeness score) of the unpruned graph, as circuit-tracer defines them."""
    A = graph.adjacency.double()
    weights = torch.as_tensor(graph.target_weights, dtype=torch.float64)
    normalized = normalize(A)
    node_inf = influence(normalized, weights)
    errors = torch.as_tensor(graph.nodes.is_error())
    tokens = torch.as_tensor(graph.nodes.kind == TOKEN)
    token_inf, error_inf = node_inf[tokens].sum(), node_inf[errors].sum()
    replacement = float(token_inf / (token_inf + error_inf))
    non_error = 1 - normalized[:, errors].sum(dim=-1)
    output = node_inf + weights
    completeness = float((non_error * output).sum() / output.sum())
    return replacement, completeness
