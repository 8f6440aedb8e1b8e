"""A computed attribution graph as a session keeps it: its settings, scores, sizes, the user's
supernodes and the pruned graph itself (:func:`export.graph_json`'s output).

Torch-free, so that a session opens without torch. :meth:`GraphRecord.from_graph_json` makes a
record from a graph just computed; :meth:`GraphRecord.from_dict` reads one back and checks every
field (a damaged session names the field, never a traceback): types, ranges, the pruned graph's
tokens, nodes and edges (every edge joins two of its nodes, the counts agree) and the supernodes'
members (nodes of the graph). The graph's other fields (head shares, checks) are kept as written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lister_tui.core.errors import ListerError
from lister_tui.core.files.clock import now
from lister_tui.core.files.json_read import MAX_MANIFEST_BYTES, parse_json
from lister_tui.core.limits import (
    MAX_POSITION,
    MAX_SUPERNODE_MEMBERS,
    MAX_SUPERNODE_NAME,
)

RECORD_VERSION = 1
MAX_GRAPH_NODES = 1_000_000  # nodes in a saved graph (all of them, before pruning)
MAX_SAVED_EDGES = 5_000_000  # kept edges in a saved graph
MAX_TARGETS = 10_000  # target positions of one graph
_NODE_FIELDS = {"id": str, "kind": str, "site": str, "token": str, "layer": int, "pos": int, "feature": int, "activation": float, "influence": float}


@dataclass(frozen=True)
class SavedSupernode:
    """A user's group in a saved graph: its name and its members' node ids (``tc_2/17@40``)."""

    name: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class GraphRecord:
    """One saved graph of one sample (only added to a session, never changed)."""

    sample: str  # the workspace's sample key (template/topic/index@seed)
    targets: tuple[int, ...]  # target positions (the metric at each)
    attention_features: bool
    node_threshold: float
    edge_threshold: float
    replacement_score: float  # NaN when undefined (no token or error reaches the targets)
    completeness_score: float
    n_nodes: int  # every node of the graph before pruning
    n_kept: int
    n_edges: int  # kept edges
    supernodes: tuple[SavedSupernode, ...]  # the user's groups (the automatic ones are in graph["supernodes"])
    graph: dict  # the pruned graph as export.graph_json writes it
    created: str  # when it was computed (ISO time)

    @classmethod
    def from_graph_json(cls, sample: str, graph: Mapping, supernodes: Sequence[tuple[str, Sequence[str]]] = (), created: str | None = None) -> GraphRecord:
        """A record of a graph just computed: its figures read from ``graph`` (graph_json's output);
        ``supernodes``: the user's groups as (name, member node ids)."""
        data = {
            "version": RECORD_VERSION,
            "sample": sample,
            "targets": [t.get("pos") if isinstance(t, Mapping) else None for t in graph.get("targets", [])],
            "attention_features": graph.get("attention_features"),
            "node_threshold": graph.get("node_threshold"),
            "edge_threshold": graph.get("edge_threshold"),
            "replacement_score": _finite_or_none(graph.get("replacement_score")),
            "completeness_score": _finite_or_none(graph.get("completeness_score")),
            "n_nodes": graph.get("n_nodes_total"),
            "n_kept": len(graph.get("nodes", [])),
            "n_edges": len(graph.get("edges", [])),
            "supernodes": [{"name": name, "members": list(members)} for name, members in supernodes],
            "graph": dict(graph),
            "created": created or now(),
        }
        record = cls.from_dict(data, "the graph")
        size = len(json.dumps(record.to_dict()))
        if size > MAX_MANIFEST_BYTES:  # what a session could not read back is not saved
            raise ListerError(f"this graph's JSON is {size / 2**20:.0f} MiB, over the {MAX_MANIFEST_BYTES >> 20} MiB a session reads back; "
                              "lower the node and edge thresholds (--node-threshold, --edge-threshold) to keep fewer nodes and edges")
        return record

    def summary(self) -> dict:
        """The record's figures as flat columns (the session's graphs table and the export's)."""
        return {
            "sample": self.sample,
            "targets": list(self.targets),
            "attention_features": self.attention_features,
            "node_threshold": self.node_threshold,
            "edge_threshold": self.edge_threshold,
            "replacement_score": self.replacement_score,
            "completeness_score": self.completeness_score,
            "n_nodes": self.n_nodes,
            "n_kept": self.n_kept,
            "n_edges": self.n_edges,
            "supernodes": [s.name for s in self.supernodes],
            "created": self.created,
        }

    def to_dict(self) -> dict:
        return {
            "version": RECORD_VERSION,
            "sample": self.sample,
            "targets": list(self.targets),
            "attention_features": self.attention_features,
            "node_threshold": self.node_threshold,
            "edge_threshold": self.edge_threshold,
            "replacement_score": _finite_or_none(self.replacement_score),
            "completeness_score": _finite_or_none(self.completeness_score),
            "n_nodes": self.n_nodes,
            "n_kept": self.n_kept,
            "n_edges": self.n_edges,
            "supernodes": [{"name": s.name, "members": list(s.members)} for s in self.supernodes],
            "graph": self.graph,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "graph") -> GraphRecord:
        """A record read back, every field checked (ListerError naming ``where`` and the field)."""
        if not isinstance(d, Mapping):
            raise ListerError(f"{where}: expected a JSON object, got {type(d).__name__}")
        version = d.get("version")
        if version != RECORD_VERSION:
            raise ListerError(f"{where}: field version is {version!r:.40}; this lister-tui reads graph records of version {RECORD_VERSION}")
        sample = _text(where, "sample", d.get("sample"), 500)
        targets = d.get("targets")
        if not isinstance(targets, list) or not 1 <= len(targets) <= MAX_TARGETS:
            raise ListerError(f"{where}: field targets must list 1..{MAX_TARGETS} positions")
        targets_t = tuple(_int(where, "targets", t, 0, MAX_POSITION) for t in targets)
        if not isinstance(d.get("attention_features"), bool):
            raise ListerError(f"{where}: field attention_features is {d.get('attention_features')!r:.40}; expected true or false")
        thresholds = [_number(where, name, d.get(name), 0.0, 1.0, low_open=True) for name in ("node_threshold", "edge_threshold")]
        scores = [_score(where, name, d.get(name)) for name in ("replacement_score", "completeness_score")]
        n_nodes = _int(where, "n_nodes", d.get("n_nodes"), 1, MAX_GRAPH_NODES)
        n_kept = _int(where, "n_kept", d.get("n_kept"), 0, n_nodes)
        n_edges = _int(where, "n_edges", d.get("n_edges"), 0, MAX_SAVED_EDGES)
        graph = d.get("graph")
        ids = _check_graph(where, graph, n_kept, n_edges)
        supernodes = d.get("supernodes")
        if not isinstance(supernodes, list):
            raise ListerError(f"{where}: field supernodes must be a list")
        saved = tuple(_supernode(f"{where}: supernodes[{i}]", s, ids) for i, s in enumerate(supernodes))
        created = _text(where, "created", d.get("created"), 64)
        return cls(sample, targets_t, d["attention_features"], *thresholds, *scores, n_nodes, n_kept, n_edges, saved, dict(graph), created)


def graphs_from_rows(rows: Sequence[Mapping], samples: Container[str]) -> list[GraphRecord]:
    """A session's graphs table (columns index, sample, data) read back in index order: each row's record
    from its JSON (size and depth checked before parsing), of one of ``samples``; a damaged row is named."""
    def order(row: Mapping) -> int:
        index = row.get("index")
        if isinstance(index, bool) or not isinstance(index, int):
            raise ListerError(f"graphs table: column index is {index!r:.40}; expected an integer; the session is damaged")
        return index

    out = []
    for row in sorted(rows, key=order):
        where = f"graphs table, row {row.get('index')}"
        try:
            record = GraphRecord.from_dict(parse_json(str(row.get("data")), where), where)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ListerError(f"{where}: the graph's JSON is damaged ({exc})") from exc
        if row.get("sample") != record.sample:
            raise ListerError(f"{where}: column sample is {row.get('sample')!r:.80}, but the graph's JSON says {record.sample!r:.80}; the session is damaged")
        if record.sample not in samples:
            raise ListerError(f"{where}: sample {record.sample!r:.80} is not in the samples table; the session is damaged")
        out.append(record)
    return out


def _finite(value: object) -> bool:
    """A finite number (an integer too large for a float is not)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) <= 2**53
    return isinstance(value, float) and math.isfinite(value)


def _finite_or_none(value: object) -> float | None:
    return float(value) if _finite(value) else None


def _text(where: str, name: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ListerError(f"{where}: field {name} is {value!r:.60}; expected a text of 1..{limit} characters")
    return value


def _int(where: str, name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ListerError(f"{where}: field {name} holds {value!r:.40}; expected an integer in [{lo}, {hi}]")
    return value


def _number(where: str, name: str, value: object, lo: float, hi: float, *, low_open: bool = False) -> float:
    if not _finite(value) or not (lo < value if low_open else lo <= value) or not value <= hi:
        raise ListerError(f"{where}: field {name} is {value!r:.40}; expected a number in {'(' if low_open else '['}{lo}, {hi}]")
    return float(value)


def _score(where: str, name: str, value: object) -> float:
    """A score in [0, 1] (a little over for rounding), or null when it was undefined."""
    return math.nan if value is None else _number(where, name, value, -1e-6, 1 + 1e-6)


def _check_graph(where: str, graph: object, n_kept: int, n_edges: int) -> set[str]:
    """The pruned graph's nodes and edges are well formed and agree with the counts; returns the node ids."""
    if not isinstance(graph, Mapping):
        raise ListerError(f"{where}: field graph must be the graph's JSON object")
    nodes, edges = graph.get("nodes"), graph.get("edges")
    if not isinstance(nodes, list) or len(nodes) != n_kept:
        raise ListerError(f"{where}: graph.nodes must list the {n_kept} kept nodes")
    if not isinstance(edges, list) or len(edges) != n_edges:
        raise ListerError(f"{where}: graph.edges must list the {n_edges} kept edges")
    tokens = graph.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise ListerError(f"{where}: graph.tokens must list the prompt's tokens as texts")
    ids: set[str] = set()
    for i, node in enumerate(nodes):
        if not isinstance(node, Mapping):
            raise ListerError(f"{where}: graph.nodes[{i}] is not an object")
        for name, kind in _NODE_FIELDS.items():
            value = node.get(name)
            good = (isinstance(value, str) and len(value) <= 1000) if kind is str else (
                isinstance(value, int) and not isinstance(value, bool) and abs(value) <= 2**62 if kind is int else
                _finite(value))
            if not good:
                raise ListerError(f"{where}: graph.nodes[{i}].{name} is {value!r:.40}; expected {kind.__name__}")
        label = node.get("label")
        if label is not None and not isinstance(label, str):
            raise ListerError(f"{where}: graph.nodes[{i}].label is {label!r:.40}; expected a text or null")
        if node["id"] in ids:
            raise ListerError(f"{where}: graph.nodes[{i}].id {node['id']!r:.60} appears twice")
        ids.add(node["id"])
    for i, edge in enumerate(edges):
        ends = (edge.get("source"), edge.get("target")) if isinstance(edge, Mapping) else (None, None)
        if not all(isinstance(e, str) and e in ids for e in ends):
            raise ListerError(f"{where}: graph.edges[{i}] must join two of the graph's nodes (source, target)")
        weight = edge.get("weight")
        if not _finite(weight):
            raise ListerError(f"{where}: graph.edges[{i}].weight is {weight!r:.40}; expected a finite number")
    return ids


def _supernode(where: str, value: object, ids: set[str]) -> SavedSupernode:
    if not isinstance(value, Mapping):
        raise ListerError(f"{where}: expected an object with name and members")
    name = value.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_SUPERNODE_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ListerError(f"{where}: name is {name!r:.60}; expected one line of 1..{MAX_SUPERNODE_NAME} characters")
    members = value.get("members")
    if (not isinstance(members, list) or not 2 <= len(members) <= MAX_SUPERNODE_MEMBERS
            or not all(isinstance(m, str) for m in members) or len(set(members)) != len(members)):
        raise ListerError(f"{where}: members must list 2..{MAX_SUPERNODE_MEMBERS} distinct node ids")
    outside = [m for m in members if m not in ids]
    if outside:
        raise ListerError(f"{where}: member {outside[0]!r:.60} is not a node of the saved graph")
    return SavedSupernode(name, tuple(members))
