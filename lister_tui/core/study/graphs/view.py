"""A pruned attribution graph as nodes and edges with ids, the shape the explorer's grid and outline draw.

Each kept node becomes a circuit :class:`~lister_tui.core.study.circuits.graph.Node` (id as
:func:`export.node_name`: ``tc_2/17@40``, ``attn_2/283@42``, ``mlp_error_1@40``, ``token@8``,
``metric@42``), its ``site`` the grid row it sits in: a transcoder feature and its layer's MLP
error in ``tc_L``, an attention feature and its layer's attention error in ``attn_L``, tokens in
``embed``, the targets in ``metric``. Its ``effect`` is its influence on the targets, its
``activation`` the feature's activation (an error's norm, a target's metric value). Each kept
edge becomes an :class:`~lister_tui.core.study.circuits.graph.Edge` with the adjacency's weight.
Rows run as attribution-graph viewers draw them: the metric on top, then each layer from the
last (its MLP above its attention, the order the model computes them in reverse), the
embeddings at the bottom.

Supernodes (:mod:`supernodes`) are drawn as one node each, id ``∑ <name>``, kind
``supernode``, in the row and at the position of its most influential member; its influence
is :func:`supernodes.supernode_influence`, its edges the members' kept edges summed per
outside node (as :func:`supernodes.supernode_edges` sums them), edges between members left
out. A node already in an earlier group stays there (yours come before the automatic ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from lister_tui.core.study.circuits.graph import EMBED, METRIC, Edge, Node
from lister_tui.core.study.graphs.attribute import (
    ATTN,
    ATTN_ERROR,
    MLP_ERROR,
    TARGET,
    TC,
    TOKEN,
    AttributionGraph,
)
from lister_tui.core.study.graphs.export import node_name
from lister_tui.core.study.graphs.prune import Pruned
from lister_tui.core.study.graphs.supernodes import Supernode, supernode_influence

SUPERNODE = "supernode"

_KIND = {TC: "feature", ATTN: "feature", MLP_ERROR: "error", ATTN_ERROR: "error", TOKEN: "embed", TARGET: "metric"}


def graph_rows(graph: AttributionGraph) -> list[str]:
    """Grid rows, top to bottom: ``metric``, ``tc_L`` and ``attn_L`` from the last layer down, ``embed``."""
    rows = [METRIC]
    for layer in range(graph.n_layers - 1, -1, -1):
        rows.append(f"tc_{layer}")
        if graph.attention_features:
            rows.append(f"attn_{layer}")
    return rows + [EMBED]


def row_of(graph: AttributionGraph, node: int) -> str:
    kind, layer = int(graph.nodes.kind[node]), int(graph.nodes.layer[node])
    if kind in (TC, MLP_ERROR):
        return f"tc_{layer}"
    if kind in (ATTN, ATTN_ERROR):
        return f"attn_{layer}"
    return EMBED if kind == TOKEN else METRIC


@dataclass
class GraphView:
    """The kept nodes and edges of a pruned graph, by id; ``index[id]`` is the graph's node index."""

    graph: AttributionGraph
    pruned: Pruned
    nodes: list[Node]
    rows: list[str]
    index: dict[str, int]
    _parents: dict[str, list[Edge]] = field(default_factory=dict, repr=False)
    _children: dict[str, list[Edge]] = field(default_factory=dict, repr=False)
    _by_id: dict[str, Node] = field(default_factory=dict, repr=False)
    groups: dict[str, Supernode] = field(default_factory=dict)  # supernode id -> its group

    @property
    def edges(self) -> list[Edge]:
        return [e for edges in self._parents.values() for e in edges]

    def node(self, node_id: str) -> Node:
        return self._by_id[node_id]

    def parents(self, node_id: str) -> list[Edge]:
        """Kept edges into ``node_id``, strongest |weight| first."""
        return self._parents.get(node_id, [])

    def children(self, node_id: str) -> list[Edge]:
        """Kept edges out of ``node_id``, strongest |weight| first."""
        return self._children.get(node_id, [])

    @property
    def root(self) -> str:
        """The first target's id (the outline starts there)."""
        return node_name(self.graph, int(self.graph.targets[0]))


def supernode_id(sn: Supernode) -> str:
    return f"∑ {sn.name}"


def graph_view(graph: AttributionGraph, pruned: Pruned, token_strings: Sequence[str], supernodes: Sequence[Supernode] = ()) -> GraphView:
    """The view of ``graph`` as pruned by ``pruned`` (``token_strings``: the tokens' texts, by position), ``supernodes`` drawn as one node each."""
    kept = [int(i) for i in np.flatnonzero(pruned.node_mask)]
    names = {i: node_name(graph, i) for i in kept}
    n = graph.nodes

    def token(pos: int) -> str | None:
        return token_strings[pos] if pos < len(token_strings) else None

    owner: dict[int, str] = {}  # member node -> its supernode's id
    groups: dict[str, Supernode] = {}
    nodes = []
    for sn in supernodes:
        members = [m for m in sn.members if m in names and m not in owner]
        if len(members) < 2 or supernode_id(sn) in groups:
            continue
        sid = supernode_id(sn)
        groups[sid] = Supernode(sn.name, tuple(members))
        lead = max(members, key=lambda m: pruned.node_influence[m])
        for m in members:
            owner[m] = sid
        nodes.append(Node(id=sid, kind=SUPERNODE, site=row_of(graph, lead), feature=None, pos=int(n.pos[lead]),  # type: ignore[arg-type]
                          token=token(int(n.pos[lead])), effect=supernode_influence(pruned, groups[sid]), activation=None))
    for i in kept:
        if i in owner:
            continue
        kind = int(n.kind[i])
        pos = int(n.pos[i])
        nodes.append(Node(
            id=names[i], kind=_KIND[kind], site=row_of(graph, i),  # type: ignore[arg-type]
            feature=int(n.feature[i]) if kind in (TC, ATTN) else None, pos=pos,
            token=token(pos), effect=float(pruned.node_influence[i]), activation=float(n.activation[i]),
        ))
    summed: dict[tuple[str, str], float] = {}
    for t, s in torch.nonzero(pruned.edge_mask).tolist():
        if t not in names or s not in names:
            continue
        source, target = owner.get(s, names[s]), owner.get(t, names[t])
        if source != target:
            summed[(source, target)] = summed.get((source, target), 0.0) + float(graph.adjacency[t, s])
    parents: dict[str, list[Edge]] = {}
    children: dict[str, list[Edge]] = {}
    for (source, target), weight in summed.items():
        edge = Edge(source, target, weight)
        parents.setdefault(target, []).append(edge)
        children.setdefault(source, []).append(edge)
    for edges in (*parents.values(), *children.values()):
        edges.sort(key=lambda e: -abs(e.weight))
    index = {v: k for k, v in names.items()}
    return GraphView(graph, pruned, nodes, graph_rows(graph), index, parents, children, {x.id: x for x in nodes}, groups)
