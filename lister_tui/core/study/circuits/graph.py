"""A circuit's data: nodes, edges, settings, and which sites feed which.

Nodes follow Sparse Feature Circuits (Marks et al., 2024, arXiv 2403.19647): with
every chosen SAE spliced in with its error term, an activation at a site is
``x = Σ_f a_f W_dec[f] + b_dec + ε(x)`` (the paper's Eq. 1), and the nodes are the
features ``a_f`` at each (site, position), one error node ``ε`` per (site, position),
the token embeddings, and the metric as the sink.

Sites are ordered as the model computes them: the embeddings, then per layer the
attention output (``attn.hook_z``) before the residual stream (``hook_resid_post``).
A site reads from the nearest residual site before it (the embeddings when there is
none) and from every attention site between that residual site and itself; the
metric reads like a site after the last layer. In lister-tiny that gives
``res_{l−1} → attn_l``, ``res_{l−1} → res_l`` and ``attn_l → res_l`` (the MLP between
them is part of the path).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal, Sequence

from lister_tui.core.engine.registry import SAESite
from lister_tui.core.errors import ListerError

EMBED = "embed"
METRIC = "metric"
NodeKind = Literal["feature", "error", "embed", "metric"]
LEVELS = ("position", "feature")
NODE_METHODS = ("grad", "ig")
ABLATIONS = ("zero", "mean")
EMBED_HOOK = "blocks.0.hook_resid_pre"

MAX_NODES_PER_SITE = 100_000  # more than any site's features × positions here: "all of them"


@dataclass(frozen=True)
class CircuitSettings:
    """How a circuit is found and checked (saved with it)."""

    sites: tuple[str, ...]
    nodes_per_site: int | None = 10  # top-N nodes per site by |effect| (None: threshold only)
    node_threshold: float = 0.0  # and |effect| at least this
    edge_threshold: float = 0.0  # keep edges with |weight| above this
    level: str = "position"  # "position" (one sample) or "feature" (summed over positions and samples)
    method: str = "grad"  # node effects: activation x gradient, or integrated gradients
    ig_steps: int = 10
    ablation: str = "zero"  # how faithfulness removes nodes: zero, or the batch's mean
    edge_batch: int = 64  # downstream nodes per backward pass

    def check(self, valid_sites: Sequence[str]) -> None:
        """Refuse bad settings with what was wrong and the valid range (before any heavy work)."""
        if not self.sites:
            raise ListerError(f"no sites given; valid: {', '.join(valid_sites)}")
        unknown = [s for s in self.sites if s not in valid_sites]
        if unknown:
            raise ListerError(f"unknown site(s) {', '.join(map(repr, unknown))}; valid: {', '.join(valid_sites)}")
        if len(set(self.sites)) != len(self.sites):
            raise ListerError(f"a site is given twice in {', '.join(self.sites)}; give each once")
        if self.nodes_per_site is not None and (isinstance(self.nodes_per_site, bool) or not 1 <= self.nodes_per_site <= MAX_NODES_PER_SITE):
            raise ListerError(f"nodes per site must be an integer in [1, {MAX_NODES_PER_SITE}], got {self.nodes_per_site!r:.40}")
        for name in ("node_threshold", "edge_threshold"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ListerError(f"{name.replace('_', ' ')} must be a finite number >= 0, got {value!r}")
        if self.level not in LEVELS:
            raise ListerError(f"unknown circuit level {self.level!r}; valid: {', '.join(LEVELS)}")
        if self.method not in NODE_METHODS:
            raise ListerError(f"unknown node-effect method {self.method!r}; valid: {', '.join(NODE_METHODS)}")
        from lister_tui.core.engine.attribution import check_ig_steps

        check_ig_steps(self.ig_steps)
        if self.ablation not in ABLATIONS:
            raise ListerError(f"unknown ablation {self.ablation!r}; valid: {', '.join(ABLATIONS)}")
        if isinstance(self.edge_batch, bool) or not isinstance(self.edge_batch, int) or self.edge_batch < 1:
            raise ListerError(f"edge batch must be an integer >= 1, got {self.edge_batch!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sites"] = list(self.sites)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CircuitSettings":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["sites"] = tuple(known.get("sites", ()))
        return cls(**known)


@dataclass(frozen=True)
class Node:
    """One node of a circuit; ``pos`` is None in a feature-level circuit."""

    id: str
    kind: NodeKind
    site: str  # a site id for features and error nodes, "embed", or "metric"
    feature: int | None
    pos: int | None
    token: str | None
    effect: float  # the node's indirect effect on the metric (the metric itself for the sink)
    activation: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    weight: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FaithfulnessPoint:
    n_nodes: int
    recovered: float


@dataclass
class Circuit:
    """A circuit: nodes, edges, and how faithful its top nodes are."""

    settings: CircuitSettings
    samples: list[str]  # sample keys (template/topic/sample)
    nodes: list[Node]
    edges: list[Edge]
    metric: float  # m(M): the full model's metric (mean over samples)
    metric_empty: float | None = None  # m(∅): every node of every site ablated
    faithfulness: list[FaithfulnessPoint] = field(default_factory=list)
    completeness: float | None = None  # (m(M∖C) − m(∅)) / (m(M) − m(∅)); near 0 when C is complete
    recovered: float | None = None  # the circuit's own faithfulness, (m(C) − m(∅)) / (m(M) − m(∅))
    site_totals: dict = field(default_factory=dict)  # site -> {"features": Σ|effect|, "error": Σ|effect|}
    n_candidates: int = 0  # nodes the top-N ranking chose from

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise ListerError(f"no node {node_id!r} in this circuit")

    def parents(self, node_id: str) -> list[Edge]:
        """Edges into ``node_id``, strongest |weight| first."""
        return sorted((e for e in self.edges if e.target == node_id), key=lambda e: -abs(e.weight))

    def children(self, node_id: str) -> list[Edge]:
        return sorted((e for e in self.edges if e.source == node_id), key=lambda e: -abs(e.weight))

    def n_for(self, level: float = 0.8) -> int | None:
        """The fewest nodes whose faithfulness first reaches ``level`` (None if never)."""
        for point in self.faithfulness:
            if point.recovered >= level:
                return point.n_nodes
        return None

    def to_dict(self) -> dict:
        return {
            "settings": self.settings.to_dict(),
            "samples": list(self.samples),
            "metric": self.metric,
            "metric_empty": self.metric_empty,
            "nodes": [n.to_dict() for n in self.nodes],
            "edges": [e.to_dict() for e in self.edges],
            "faithfulness": [{"n_nodes": p.n_nodes, "recovered": p.recovered} for p in self.faithfulness],
            "completeness": self.completeness,
            "recovered": self.recovered,
            "n_for_0_8": self.n_for(0.8),
            "site_totals": self.site_totals,
            "n_candidates": self.n_candidates,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Circuit":
        return cls(
            settings=CircuitSettings.from_dict(d["settings"]),
            samples=list(d.get("samples", [])),
            nodes=[Node(**n) for n in d["nodes"]],
            edges=[Edge(**e) for e in d["edges"]],
            metric=float(d["metric"]),
            metric_empty=d.get("metric_empty"),
            faithfulness=[FaithfulnessPoint(int(p["n_nodes"]), float(p["recovered"])) for p in d.get("faithfulness", [])],
            completeness=d.get("completeness"),
            recovered=d.get("recovered"),
            site_totals=dict(d.get("site_totals", {})),
            n_candidates=int(d.get("n_candidates", 0)),
        )


def node_id(site: str, pos: int | None, feature: int | None, kind: NodeKind = "feature") -> str:
    """``res_0/12/345`` (feature), ``res_0/12/error``, ``embed/12``, ``metric``; without a position
    (feature level): ``res_0/345``, ``res_0/error``."""
    if kind == "metric":
        return METRIC
    if kind == "embed":
        return f"{EMBED}/{pos}" if pos is not None else EMBED
    last = "error" if kind == "error" else str(feature)
    return f"{site}/{pos}/{last}" if pos is not None else f"{site}/{last}"


def order_key(site: SAESite) -> tuple[int, int]:
    """Where a site sits in the forward pass: by layer, attention before the residual stream."""
    return (site.layer, 0 if site.kind == "attn" else 1)


def ordered_sites(sites: Sequence[SAESite]) -> list[SAESite]:
    return sorted(sites, key=order_key)


def upstream_sites(sites: Sequence[SAESite]) -> dict[str, list[str]]:
    """For each chosen site and the metric: the sites (or "embed") it reads from directly.

    A site reads from the nearest residual site before it (else the embeddings) and from
    the attention sites between that one and itself; every other path runs through one
    of these, whose values the edge computation holds fixed.
    """
    ordered = ordered_sites(sites)
    result: dict[str, list[str]] = {}
    for i, target in enumerate([*ordered, None]):
        before = ordered[:i]
        res_before = [s for s in before if s.kind == "res"]
        last_res = res_before[-1] if res_before else None
        start = before.index(last_res) + 1 if last_res is not None else 0
        attn_between = [s.id for s in before[start:] if s.kind == "attn"]
        result[METRIC if target is None else target.id] = [last_res.id if last_res else EMBED, *attn_between]
    return result
