"""How faithful and how complete a circuit is, by ablating nodes in real forward passes.

Marks et al. (2024, arXiv 2403.19647) score a circuit C by the share of the metric it
recovers when every node outside it is ablated:

    faithfulness(C) = (m(C) − m(∅)) / (m(M) − m(∅))

where m(M) is the full model's metric, m(∅) the metric with every node of every chosen
site ablated, and m(C) the metric with only C's nodes kept; completeness is the same
ratio for the complement, (m(M∖C) − m(∅)) / (m(M) − m(∅)), near 0 when C holds all that
matters. A node is ablated by setting a feature to its ablation value (zero, as the
study; or its mean over the batch's positions, BOS excluded, as the paper) and an error
node likewise, at every chosen site in one forward pass, each site re-encoding the
activation that reaches it. The embeddings are never ablated (the input is given).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from lister_tui.core.engine.attribution import metric_at
from lister_tui.core.engine.lazy import torch  # imported on first use
from lister_tui.core.study.circuits.build import Built, _progress
from lister_tui.core.study.circuits.effects import SampleState, _flat
from lister_tui.core.study.circuits.graph import EMBED, METRIC, FaithfulnessPoint

if TYPE_CHECKING:
    from torch import Tensor

    from lister_tui.core.engine.loading import LoadedModel


def log_grid(total: int) -> list[int]:
    """1, 2, 4, … up to ``total``, and ``total`` itself."""
    grid, n = [], 1
    while n < total:
        grid.append(n)
        n *= 2
    return grid + [total] if total > 0 else []


def _parse(nid: str) -> tuple[str, int | None, int | None]:
    """(site, pos or None, feature or None for an error node) of a feature or error node id."""
    parts = nid.split("/")
    last = None if parts[-1] == "error" else int(parts[-1])
    return parts[0], (int(parts[1]) if len(parts) == 3 else None), last


def ablation_values(built: Built, kind: str) -> dict[str, tuple[Tensor, Tensor]]:
    """Per site, what an ablated feature and error node become: zeros, or the batch's means."""
    values = {}
    for site in built.sites:
        per = [s.sites[site.id] for s in built.states]
        if kind == "mean":
            acts = torch.cat([p.acts[1:] for p in per])  # BOS excluded
            errors = torch.cat([p.error[1:] for p in per])
            values[site.id] = (acts.mean(0), errors.mean(0)) if len(acts) else (torch.zeros_like(per[0].acts[0]), torch.zeros_like(per[0].error[0]))
        else:
            values[site.id] = (torch.zeros_like(per[0].acts[0]), torch.zeros_like(per[0].error[0]))
    return values


def metric_keeping(loaded: LoadedModel, built: Built, keep: Iterable[str], values: dict, *, invert: bool = False) -> float:
    """The mean metric over the built samples with only the ``keep`` nodes left intact
    (``invert``: with exactly those nodes ablated)."""
    level = built.circuit.settings.level
    features: dict[str, list[tuple[int | None, int]]] = defaultdict(list)
    errors: dict[str, list[int | None]] = defaultdict(list)
    for nid in keep:
        if nid == METRIC or nid.startswith(EMBED):
            continue
        site, pos, feature = _parse(nid)
        (errors[site].append(pos) if feature is None else features[site].append((pos, feature)))
    total = 0.0
    for state in built.states:
        hooks = [
            (site.hook_name, _ablating_hook(state, site.id, features[site.id], errors[site.id], values[site.id], level, invert))
            for site in built.sites
        ]
        with torch.no_grad(), loaded.model.hooks(fwd_hooks=hooks):
            total += float(metric_at(loaded.model, state.tokens.unsqueeze(0), [state.target], loaded.ids.blank, loaded.ids.newline)[0])
    return total / len(built.states)


def _ablating_hook(state: SampleState, site_id: str, features, errors, values, level: str, invert: bool):
    site = state.sites[site_id]
    n_pos, d_sae = site.acts.shape
    keep = torch.zeros(n_pos, d_sae, dtype=torch.bool)
    keep_error = torch.zeros(n_pos, dtype=torch.bool)
    for pos, feature in features:
        if level == "position":
            keep[pos, feature] = True
        else:
            keep[:, feature] = True
    for pos in errors:
        if level == "position":
            keep_error[pos] = True
        else:
            keep_error[:] = True
    if invert:
        keep, keep_error = ~keep, ~keep_error
    ablated_acts, ablated_error = values

    def hook(activation: Tensor, hook) -> Tensor:
        sae = site.sae
        acts = sae.encode(activation)  # [1, T, d_sae]
        error = _flat(activation, site.site) - _flat(sae.decode(acts), site.site)
        k = keep.to(acts.device).unsqueeze(0)
        acts = torch.where(k, acts, ablated_acts.to(acts.dtype))
        error = torch.where(keep_error.to(acts.device).view(1, -1, 1), error, ablated_error.to(error.dtype))
        return sae.decode(acts) + error.reshape(activation.shape)

    return hook


def _every_node(built: Built) -> int:
    """Every feature and error node of the chosen sites (per position at the position level)."""
    per_sample = [sum(site.acts.numel() + site.acts.shape[0] for site in state.sites.values()) for state in built.states]
    if built.circuit.settings.level == "position":
        return sum(per_sample)
    return sum(site.acts.shape[1] + 1 for site in built.states[0].sites.values())


def add_faithfulness(
    loaded: LoadedModel,
    built: Built,
    *,
    on_progress: Callable[[str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    grid: Sequence[int] | None = None,
) -> None:
    """Fill the circuit's faithfulness curve (top-N nodes by |effect| kept, N on a log scale),
    its own faithfulness and its completeness."""
    circuit = built.circuit
    values = ablation_values(built, circuit.settings.ablation)
    _progress(on_progress, cancelled, "faithfulness: the full model and the empty circuit")
    full = metric_keeping(loaded, built, [], values, invert=True)  # nothing ablated
    empty = metric_keeping(loaded, built, [], values)
    circuit.metric_empty = empty
    span = full - empty

    def ratio(m: float) -> float:
        return (m - empty) / span if span != 0 else math.nan

    points = []
    for n in grid if grid is not None else log_grid(len(built.ranking)):
        _progress(on_progress, cancelled, f"faithfulness: top {n} of {len(built.ranking)} nodes")
        points.append(FaithfulnessPoint(n, ratio(metric_keeping(loaded, built, built.ranking[:n], values))))
    if circuit.settings.ablation == "mean" and grid is None:
        # The ranking holds the active nodes; a mean ablation also moves every inactive
        # feature (activation 0, effect 0) to its mean, so the curve ends where every node,
        # inactive ones included, is kept: the model itself.
        points.append(FaithfulnessPoint(_every_node(built), ratio(full)))
    circuit.faithfulness = points
    kept = [n.id for n in circuit.nodes]
    circuit.recovered = ratio(metric_keeping(loaded, built, kept, values))
    circuit.completeness = ratio(metric_keeping(loaded, built, kept, values, invert=True))
