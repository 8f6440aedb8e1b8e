"""The head view of an edge between positions: which heads carry it, and where they look.

An edge from a node at position p_s to one at a later position p_t passes through
attention (the residual stream, MLPs and transcoders stay at their position). For the heads
that carry most of it (their share of the edge, :func:`heads.head_shares`), the view holds
each head's frozen attention pattern row of position p_t over the source positions
0..p_t, from the prompt state the graph froze (``graph.extra["state"].patterns``), with
p_s marked. A head that carries the edge directly puts weight on p_s; one that carries it
through an intermediate position shows where it reads instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lister_tui.core.errors import ListerError
from lister_tui.core.limits import MAX_HEAD_VIEW_HEADS
from lister_tui.core.study.graphs.attribute import AttributionGraph
from lister_tui.core.study.graphs.heads import head_label


@dataclass
class HeadView:
    """The heads carrying edge source → target, strongest |share| first, with their frozen pattern rows."""

    target: int  # node index
    source: int  # node index
    target_pos: int
    source_pos: int  # the marked position of each pattern row
    edge: float  # the edge's weight (adjacency[target, source])
    heads: list[int]  # flat head indices L · n_heads + H
    shares: list[float]  # each head's share of the edge (same units as the edge)
    labels: list[str]  # "L.H"
    patterns: np.ndarray  # [len(heads), target_pos + 1]: the frozen pattern row of target_pos over positions 0..target_pos

    def fraction(self, i: int) -> float:
        """Head ``i``'s share as a fraction of the edge."""
        return self.shares[i] / self.edge if self.edge else 0.0

    def weight_on_source(self, i: int) -> float:
        """How much of head ``i``'s attention at the target position goes to the source position."""
        return float(self.patterns[i, self.source_pos])


def head_view(
    graph: AttributionGraph,
    target_node: int,
    source_node: int,
    shares: np.ndarray | Mapping[tuple[int, int], np.ndarray],
    top: int = 3,
) -> HeadView:
    """The ``top`` heads carrying edge ``source_node → target_node`` and their pattern rows.

    ``shares``: the edge's per-head shares ``[n_layers · n_heads]``, or the mapping
    :func:`heads.head_shares` returns (looked up by ``(target, source)``). Refused: a node
    outside the graph, a pair with no edge, an edge within one position (no head carries it).
    """
    n = len(graph.nodes)
    for what, node in (("target", target_node), ("source", source_node)):
        if isinstance(node, bool) or not isinstance(node, (int, np.integer)) or not 0 <= int(node) < n:
            raise ListerError(f"the {what} node {node!r} is not in the graph (valid: 0..{n - 1})")
    t, s = int(target_node), int(source_node)
    from lister_tui.core.study.graphs.export import node_name

    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= MAX_HEAD_VIEW_HEADS:
        raise ListerError(f"top must be a number of heads in 1..{MAX_HEAD_VIEW_HEADS}, got {top!r}")
    t_pos, s_pos = int(graph.nodes.pos[t]), int(graph.nodes.pos[s])
    if t_pos == s_pos:
        raise ListerError(f"{node_name(graph, s)} → {node_name(graph, t)} stays at position {t_pos}: no attention head carries it; "
                          "pick an edge between two positions")
    edge = float(graph.adjacency[t, s])
    if edge == 0.0:
        raise ListerError(f"there is no edge from {node_name(graph, s)} to {node_name(graph, t)}; pick a parent or a child of the node")
    if isinstance(shares, Mapping):
        if (t, s) not in shares:
            raise ListerError(f"the head shares of {node_name(graph, s)} → {node_name(graph, t)} were not computed; compute them first (heads.head_shares)")
        shares = shares[(t, s)]
    values = np.asarray(shares, dtype=np.float64)
    n_heads_all = graph.n_layers * graph.n_heads
    if values.shape != (n_heads_all,):
        raise ListerError(f"head shares must hold one value per head ({n_heads_all}), got shape {values.shape}")
    patterns = graph.extra.get("state").patterns if graph.extra.get("state") is not None else None
    if patterns is None:
        raise ListerError("this graph kept no prompt state (its frozen attention patterns); compute the graph again")
    order = [int(h) for h in np.argsort(-np.abs(values), kind="stable")[: int(top)]]
    rows = np.stack([
        patterns[h // graph.n_heads][h % graph.n_heads, t_pos, : t_pos + 1].detach().double().cpu().numpy() for h in order
    ])
    return HeadView(
        target=t, source=s, target_pos=t_pos, source_pos=s_pos, edge=edge, heads=order,
        shares=[float(values[h]) for h in order], labels=[head_label(h, graph.n_heads) for h in order], patterns=rows,
    )
