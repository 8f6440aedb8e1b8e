"""Supernodes: named groups of a graph's feature nodes, read as one node (as Neuronpedia's viewer does).

Two kinds. Automatic: one feature (same site, same feature id) active at several positions,
named ``tc_2/17``, and features that share a user's label, named ``label: <label>``. Manual:
:func:`group` of nodes a user picked, checked (at least two distinct kept feature nodes, a
one-line name of at most ``MAX_SUPERNODE_NAME`` characters).

A supernode's influence on the targets is the sum of its members' (a path through two
members counts once for each); its incoming and outgoing edges are the members' edges
summed per outside node, edges between members left out. In Neuronpedia's graph JSON a
supernode is ``[name, node_id, node_id, …]`` in ``qParams.supernodes``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lister_tui.core.errors import ListerError
from lister_tui.core.limits import MAX_SUPERNODE_MEMBERS, MAX_SUPERNODE_NAME
from lister_tui.core.study.graphs.attribute import ATTN, TC, AttributionGraph
from lister_tui.core.study.graphs.prune import Pruned

Labels = Callable[[str, int], "str | None"]


@dataclass(frozen=True)
class Supernode:
    """A named group of a graph's node indices (sorted, distinct)."""

    name: str
    members: tuple[int, ...]


@dataclass(frozen=True)
class SupernodeEdges:
    """A supernode's edges summed per outside node, strongest (by |weight|) first."""

    incoming: list[tuple[int, float]]  # (source node, Σ over members of the edge source → member)
    outgoing: list[tuple[int, float]]  # (target node, Σ over members of the edge member → target)


def _site(graph: AttributionGraph, node: int) -> str:
    kind, layer = int(graph.nodes.kind[node]), int(graph.nodes.layer[node])
    return f"tc_{layer}" if kind == TC else f"attn_{layer}"


def _short(name: str) -> str:
    return name if len(name) <= MAX_SUPERNODE_NAME else name[: MAX_SUPERNODE_NAME - 1] + "…"


def auto_supernodes(graph: AttributionGraph, kept: Sequence[int], labels: Labels | None = None) -> list[Supernode]:
    """Among the ``kept`` nodes: each feature active at two or more positions, then each label shared by two or more features.

    Groups come in the order their first member appears in ``kept``; a node may be in one
    feature group and one label group (a label group with the same members as a feature group is left out).
    """
    by_feature: dict[str, list[int]] = {}
    by_label: dict[str, list[int]] = {}
    for i in kept:
        i = int(i)
        if int(graph.nodes.kind[i]) not in (TC, ATTN):
            continue
        site, feature = _site(graph, i), int(graph.nodes.feature[i])
        by_feature.setdefault(f"{site}/{feature}", []).append(i)
        label = labels(site, feature) if labels is not None else None
        if label and label.strip():
            by_label.setdefault(_short(f"label: {' '.join(label.split())}"), []).append(i)
    out = [Supernode(name, tuple(sorted(set(members)))) for name, members in by_feature.items()]
    out = [s for s in out if len(s.members) >= 2]
    seen = {s.members for s in out}
    # a label group that is one feature's group again (a label on one feature) adds nothing
    out += [s for s in (Supernode(name, tuple(sorted(set(members)))) for name, members in by_label.items()) if len(s.members) >= 2 and s.members not in seen]
    return out


def check_name(name: object) -> str:
    """A supernode's name: a non-empty line of at most MAX_SUPERNODE_NAME characters (ends trimmed)."""
    if not isinstance(name, str) or not name.strip():
        raise ListerError(f"a supernode needs a name; type one (at most {MAX_SUPERNODE_NAME} characters)")
    name = name.strip()
    if len(name) > MAX_SUPERNODE_NAME:
        raise ListerError(f"a supernode's name has at most {MAX_SUPERNODE_NAME} characters, this one has {len(name)}; shorten it")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ListerError("a supernode's name is one line without control characters (line breaks, tabs); retype it")
    return name


def group(graph: AttributionGraph, members: Collection[int], name: str, *, kept: Collection[int] | np.ndarray | None = None) -> Supernode:
    """A user's group of nodes under ``name``: at least two distinct feature nodes (transcoder or attention).

    ``kept`` (node indices, or the pruned graph's boolean node mask): every member must be
    among them, as a group is made of the nodes on screen.
    """
    name = check_name(name)
    try:
        distinct = sorted({int(m) for m in members})
    except (TypeError, ValueError):
        raise ListerError("a supernode's members are node indices (integers)") from None
    if len(distinct) < 2:
        raise ListerError(f"a supernode groups at least 2 distinct nodes, got {len(distinct)}; select more nodes")
    if len(distinct) > MAX_SUPERNODE_MEMBERS:
        raise ListerError(f"a supernode groups at most {MAX_SUPERNODE_MEMBERS} nodes, got {len(distinct)}")
    n = len(graph.nodes)
    outside = [m for m in distinct if not 0 <= m < n]
    if outside:
        raise ListerError(f"node {outside[0]} is not in the graph (valid: 0..{n - 1})")
    not_features = [m for m in distinct if int(graph.nodes.kind[m]) not in (TC, ATTN)]
    if not_features:
        from lister_tui.core.study.graphs.export import node_name

        raise ListerError(f"only feature nodes (transcoder or attention) can be grouped; {node_name(graph, not_features[0])} is not one")
    if kept is not None:
        kept_set = set(np.flatnonzero(kept).tolist()) if isinstance(kept, np.ndarray) and kept.dtype == bool else {int(k) for k in kept}
        pruned_away = [m for m in distinct if m not in kept_set]
        if pruned_away:
            from lister_tui.core.study.graphs.export import node_name

            raise ListerError(f"{node_name(graph, pruned_away[0])} was pruned from the graph; group kept nodes only (or lower the thresholds)")
    return Supernode(name, tuple(distinct))


def supernode_influence(pruned: Pruned, sn: Supernode) -> float:
    """The members' influence on the targets, summed (the unpruned graph's influence, as pruning ranks nodes)."""
    return float(np.sum(pruned.node_influence[list(sn.members)]))


def supernode_edges(graph: AttributionGraph, sn: Supernode, pruned: Pruned | None = None) -> SupernodeEdges:
    """Edges into and out of the group, summed over members per outside node (only kept edges with ``pruned``)."""
    members = torch.as_tensor(sn.members, dtype=torch.long)
    A = graph.adjacency.double()
    into = A[members]  # [m, N]: member ← every source
    out_of = A[:, members]  # [N, m]: every target ← member
    if pruned is not None:
        into = into * pruned.edge_mask[members]
        out_of = out_of * pruned.edge_mask[:, members]
    inside = np.zeros(len(graph.nodes), bool)
    inside[list(sn.members)] = True
    incoming, outgoing = into.sum(0).numpy(), out_of.sum(1).numpy()
    incoming[inside] = 0
    outgoing[inside] = 0

    def ranked(weights: np.ndarray) -> list[tuple[int, float]]:
        nz = np.flatnonzero(weights)
        return [(int(i), float(weights[i])) for i in nz[np.argsort(-np.abs(weights[nz]), kind="stable")]]

    return SupernodeEdges(ranked(incoming), ranked(outgoing))
