"""Building a circuit: node effects, the top nodes per site, and the edges between them.

A position-level circuit has one node per (site, position, feature); a feature-level
circuit sums node effects and edge weights over positions and samples, as Marks et al.
(2024, arXiv 2403.19647) do for inputs of different lengths, so its nodes are
(site, feature), one error node per site, and one embedding node per token.
Nodes are kept by |effect|: the top ``nodes_per_site`` of each site (features and its
error nodes together; the embeddings count as one site) with |effect| at least
``node_threshold``. Edges are computed into the kept nodes only and kept between kept
nodes with |weight| above ``edge_threshold``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from lister_tui.core.engine.generation import ListSample
from lister_tui.core.engine.lazy import torch  # imported on first use
from lister_tui.core.engine.registry import SAESite
from lister_tui.core.errors import ListerError
from lister_tui.core.study.circuits.effects import (
    ERROR,
    SampleState,
    edge_weights,
    sample_state,
)
from lister_tui.core.study.circuits.graph import (
    EMBED,
    METRIC,
    Circuit,
    CircuitSettings,
    Edge,
    Node,
    node_id,
    ordered_sites,
    upstream_sites,
)

if TYPE_CHECKING:
    from lister_tui.core.engine.loading import LoadedModel

Key = tuple[str, int, int]  # (site or "embed", position, feature / ERROR / token id)


def node_key_id(key: Key, level: str) -> str:
    """The circuit id a position-level key counts towards at ``level``."""
    site, pos, index = key
    if site == EMBED:
        return node_id(EMBED, pos, None, "embed") if level == "position" else f"{EMBED}/t{index}"
    kind = "error" if index == ERROR else "feature"
    return node_id(site, pos if level == "position" else None, None if index == ERROR else index, kind)


def candidate_effects(state: SampleState) -> dict[Key, float]:
    """Every node with a non-zero effect on one sample: active features, error nodes, embeddings."""
    effects: dict[Key, float] = {}
    for site_id, site in state.sites.items():
        active = torch.nonzero(site.acts != 0)
        values = site.effect[active[:, 0], active[:, 1]].tolist() if len(active) else []
        for (pos, feature), value in zip(active.tolist(), values):
            effects[(site_id, pos, feature)] = value
        for pos, value in enumerate(site.error_effect.tolist()):
            effects[(site_id, pos, ERROR)] = value
    for pos, (token, value) in enumerate(zip(state.tokens.tolist(), state.embed_effect.tolist())):
        effects[(EMBED, pos, token)] = value
    return effects


def select_nodes(effects: dict[str, float], site_of: dict[str, str], settings: CircuitSettings) -> list[str]:
    """Per site, the ids with the largest |effect| (top N, at least the threshold)."""
    by_site: dict[str, list[str]] = defaultdict(list)
    for nid, value in effects.items():
        if abs(value) >= settings.node_threshold and value != 0:
            by_site[site_of[nid]].append(nid)
    chosen = []
    for ids in by_site.values():
        ids.sort(key=lambda i: -abs(effects[i]))
        chosen += ids if settings.nodes_per_site is None else ids[: settings.nodes_per_site]
    return chosen


def build_circuit(
    loaded: LoadedModel,
    samples: Sequence[ListSample],
    settings: CircuitSettings,
    *,
    on_progress: Callable[[str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> "Built":
    """The circuit of the metric at each sample's attribution position (no faithfulness yet:
    :func:`lister_tui.core.study.circuits.ablate.add_faithfulness`)."""
    settings.check([s.id for s in loaded.entry.sites])
    if settings.level == "position" and len(samples) != 1:
        raise ListerError(f"a position-level circuit is of one sample; got {len(samples)} (use the feature level for a batch)")
    if not samples:
        raise ListerError("no samples given; give at least one list with a complete item")
    for s in samples:
        if s.structure.attribution_pos is None:
            raise ListerError(f"sample {s.spec.key} has no complete item, so no attribution position")
    sites = ordered_sites([loaded.entry.site(i) for i in settings.sites])
    saes = {s.id: loaded.load_sae(s.id, cache=True) for s in sites}
    ids = {"blank_id": loaded.ids.blank, "newline_id": loaded.ids.newline}

    states: list[SampleState] = []
    per_sample: list[dict[Key, float]] = []
    totals: dict[str, float] = defaultdict(float)
    site_of: dict[str, str] = {}
    tokens_of: dict[str, str] = {}
    activation_of: dict[str, float] = defaultdict(float)
    for i, sample in enumerate(samples):
        _progress(on_progress, cancelled, f"node effects, sample {i + 1}/{len(samples)}")
        state = sample_state(
            loaded.model, sample.tokens, sample.structure.attribution_pos, sites, saes,
            method=settings.method, ig_steps=settings.ig_steps, **ids,
        )
        states.append(state)
        effects = candidate_effects(state)
        per_sample.append(effects)
        for key, value in effects.items():
            nid = node_key_id(key, settings.level)
            totals[nid] += value
            site_of[nid] = key[0]
            if settings.level == "position" or key[0] == EMBED:
                tokens_of[nid] = loaded.tokenizer.decode([int(state.tokens[key[1]])])
            if key[0] != EMBED and key[2] != ERROR:
                activation_of[nid] += float(state.sites[key[0]].acts[key[1], key[2]])
    chosen = set(select_nodes(totals, site_of, settings))

    upstream = upstream_sites(sites)
    edge_sum: dict[tuple[str, str], float] = defaultdict(float)
    for i, (state, effects) in enumerate(zip(states, per_sample)):
        keys_by_site: dict[str, list[Key]] = defaultdict(list)
        for key in effects:
            if node_key_id(key, settings.level) in chosen:
                keys_by_site[key[0]].append(key)
        for target in [*(s.id for s in sites), METRIC]:
            _progress(on_progress, cancelled, f"edges into {target}, sample {i + 1}/{len(samples)}")
            rows = [(p, f) for _, p, f in keys_by_site.get(target, [])] if target != METRIC else [(state.target, 0)]
            if not rows:
                continue
            up_keys = {u: keys_by_site.get(u, []) for u in upstream[target]}
            weights = edge_weights(
                loaded.model, state, target, rows,
                {u: [(p, 0 if u == EMBED else f) for _, p, f in keys] for u, keys in up_keys.items()},
                edge_batch=settings.edge_batch, **ids,
            )
            targets = [METRIC] if target == METRIC else [node_key_id((target, p, f), settings.level) for p, f in rows]
            for u, keys in up_keys.items():
                sources = [node_key_id(k, settings.level) for k in keys]
                matrix = weights[u].tolist()
                for r, tgt in enumerate(targets):
                    for c, src in enumerate(sources):
                        if matrix[r][c] != 0:
                            edge_sum[(src, tgt)] += matrix[r][c]

    n = len(samples)
    metric = sum(s.metric for s in states) / n
    # the sink's "effect" is the metric, summed over samples like every effect of a feature-level circuit
    nodes = [Node(METRIC, "metric", METRIC, None, None, None, metric if settings.level == "position" else metric * n)]
    for nid in sorted(chosen, key=lambda i: -abs(totals[i])):
        site = site_of[nid]
        kind = "embed" if site == EMBED else ("error" if nid.endswith("/error") else "feature")
        pos = int(nid.split("/")[1]) if settings.level == "position" else None
        feature = int(nid.rsplit("/", 1)[1]) if kind == "feature" else None
        nodes.append(Node(nid, kind, site, feature, pos, tokens_of.get(nid), totals[nid], activation_of.get(nid)))
    edges = [
        Edge(src, tgt, w)
        for (src, tgt), w in edge_sum.items()
        if abs(w) > settings.edge_threshold and src in chosen and (tgt in chosen or tgt == METRIC)
    ]
    edges.sort(key=lambda e: -abs(e.weight))
    site_totals = {
        s.id: {
            "features": sum(abs(v) for k, v in totals.items() if site_of[k] == s.id and not k.endswith("/error")),
            "error": sum(abs(v) for k, v in totals.items() if site_of[k] == s.id and k.endswith("/error")),
        }
        for s in sites
    }
    circuit = Circuit(
        settings=settings,
        samples=[s.spec.key for s in samples],
        nodes=nodes,
        edges=edges,
        metric=metric,
        site_totals=site_totals,
        n_candidates=sum(1 for k in totals if site_of[k] != EMBED),
    )
    ranking = sorted((k for k in totals if site_of[k] != EMBED), key=lambda k: -abs(totals[k]))
    return Built(circuit, states, ranking, sites, saes)


@dataclass
class Built:
    """A circuit with what checking it needs: each sample's state, every candidate node's id
    by |effect| (embeddings left out: the input is given), the sites and their SAEs."""

    circuit: Circuit
    states: list[SampleState]
    ranking: list[str]
    sites: list[SAESite]
    saes: dict


def _progress(on_progress, cancelled, message: str) -> None:
    if cancelled is not None and cancelled():
        raise CircuitCancelled(message)
    if on_progress is not None:
        on_progress(message)


class CircuitCancelled(Exception):
    """The caller asked to stop (a newer request, or the user left the screen)."""
