"""The study's procedure on generated lists: attribute, pick top-k pairs, ablate, regenerate, compare.

Attribution of a batch of lists is kept compact per SAE (the top pairs of each
sample and each feature's max activation per sample) so that many SAEs and many
samples fit in memory; the dense [batch, pos, d_sae] tensors live only inside one
batch of one SAE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from lister_tui.core.engine.ablation import Ablation, FeatureAblation
from lister_tui.core.engine.attribution import attribute, attribute_integrated, check_ig_steps
from lister_tui.core.engine.generation import ListSample, metric_curve, sample_lists, with_metric
from lister_tui.core.engine.lazy import torch  # imported on first use
from lister_tui.core.engine.sampling_settings import SamplingSettings
from lister_tui.core.errors import Cancelled, ListerError

if TYPE_CHECKING:
    from lister_tui.core.engine.loading import LoadedModel


@dataclass(frozen=True)
class Pair:
    """One attributed (position, feature) of one sample."""

    sae_id: str
    sample: int  # index into the attributed samples
    pos: int
    feature: int
    attribution: float
    activation: float


@dataclass
class SAEListAttribution:
    """One SAE's attribution over a batch of lists."""

    sae_id: str
    hook_name: str
    d_sae: int
    top: list[list[Pair]]  # per sample: the strongest pairs in 0 < pos <= attribution position
    max_activation: np.ndarray  # [n_samples, d_sae]: max over positions (BOS excluded)
    feature_total: np.ndarray  # [n_samples]: sum of every feature's attribution
    error_total: np.ndarray  # [n_samples]: sum of the error node's attribution
    metric: np.ndarray  # [n_samples]: the metric at the attribution position
    attribution_pos: list[int] = field(default_factory=list)
    method: str = "grad"  # "grad" (activation x gradient) or "ig" (integrated gradients)
    ig_steps: int = 0  # the integrated-gradient steps (0 for "grad")

    @property
    def method_label(self) -> str:
        return "activation x gradient" if self.method == "grad" else f"integrated gradients, {self.ig_steps} steps"

    def error_share(self, sample: int) -> float:
        """|error| / (|features| + |error|): how much of the SAE's attribution its features miss."""
        e, f = abs(float(self.error_total[sample])), abs(float(self.feature_total[sample]))
        return e / (e + f) if e + f > 0 else 0.0


# How attribute_lists scores a (position, feature): "grad" is the study's activation ×
# gradient (one pass for every SAE); "ig" is integrated gradients (``ig_steps`` passes
# per SAE), which also sees features that the model reads through a saturated switch.
ATTRIBUTION_METHODS = ("grad", "ig")
DEFAULT_IG_STEPS = 10


def attributable(samples: Sequence[ListSample]) -> list[int]:
    """Indices of samples that have an attribution position (at least one complete item)."""
    return [i for i, s in enumerate(samples) if s.structure.attribution_pos is not None]


def attribute_lists(
    loaded: LoadedModel,
    samples: Sequence[ListSample],
    sae_ids: Sequence[str],
    *,
    keep: int = 50,
    batch_size: int = 16,
    on_progress: Callable[[str, int, int], bool | None] | None = None,
    method: str = "grad",
    ig_steps: int = DEFAULT_IG_STEPS,
) -> dict[str, SAEListAttribution]:
    """Attribute the metric at each sample's attribution position to every feature of each SAE.

    With ``method="grad"`` (the study's activation × gradient) one forward and one
    backward pass per batch serves every SAE; SAEs are loaded one at a time after that
    pass, so memory holds one SAE at once. With ``method="ig"`` each SAE gets
    ``ig_steps`` passes of integrated gradients
    (:func:`lister_tui.core.engine.attribution.attribute_integrated`).

    ``on_progress(sae_id, samples_done, n)`` is called after each SAE of each batch; returning
    True from it stops the work there with :class:`~lister_tui.core.errors.Cancelled`.
    """
    if not sae_ids:
        raise ListerError(f"no SAE given; valid: {', '.join(s.id for s in loaded.entry.sites)}")
    if method not in ATTRIBUTION_METHODS:
        raise ListerError(f"unknown attribution method {method!r}; valid: {', '.join(ATTRIBUTION_METHODS)}")
    if method == "ig":
        check_ig_steps(ig_steps)
    sites = [loaded.entry.site(i) for i in sae_ids]
    missing = [i for i, s in enumerate(samples) if s.structure.attribution_pos is None]
    if missing:
        raise ListerError(
            f"samples {missing[:5]} have no complete item, so no attribution position; "
            "drop them (see experiment.attributable)"
        )
    n = len(samples)
    results: dict[str, SAEListAttribution] = {}
    for start in range(0, n, batch_size):
        batch = samples[start : start + batch_size]
        lengths = [s.structure.attribution_pos + 1 for s in batch]
        width = max(lengths)
        tokens = torch.full((len(batch), width), loaded.tokenizer.pad_token_id or 0, dtype=torch.long)
        for b, s in enumerate(batch):
            tokens[b, : lengths[b]] = torch.tensor(s.tokens[: lengths[b]])
        target = [l - 1 for l in lengths]
        stream = ((site.id, loaded.load_sae(site.id)) for site in sites)
        ids = {"blank_id": loaded.ids.blank, "newline_id": loaded.ids.newline, "lengths": lengths}
        if method == "grad":
            results_of_batch = attribute(
                loaded.model, tokens.to(loaded.device), target, stream, hook_names=[s.hook_name for s in sites], **ids
            )
        else:
            results_of_batch = (
                attribute_integrated(loaded.model, tokens.to(loaded.device), target, sae_id, sae, steps=ig_steps, **ids)
                for sae_id, sae in stream
            )
        for result in results_of_batch:
            d_sae = result.attribution.shape[-1]
            agg = results.get(result.sae_id)
            if agg is None:
                agg = results[result.sae_id] = SAEListAttribution(
                    result.sae_id,
                    result.hook_name,
                    d_sae,
                    top=[],
                    max_activation=np.zeros((n, d_sae), dtype=np.float32),
                    feature_total=np.zeros(n, dtype=np.float32),
                    error_total=np.zeros(n, dtype=np.float32),
                    metric=np.zeros(n, dtype=np.float32),
                    method=method,
                    ig_steps=ig_steps if method == "ig" else 0,
                )
            pairs = result.top_pairs(keep, min_pos=1, max_pos=[l for l in lengths])
            for b, sample_pairs in enumerate(pairs):
                i = start + b
                agg.top.append([Pair(result.sae_id, i, p, f, a, act) for p, f, a, act in sample_pairs])
                agg.attribution_pos.append(target[b])
                agg.max_activation[i] = result.activation[b, 1 : lengths[b]].amax(dim=0).numpy()
                agg.feature_total[i] = float(result.attribution[b, : lengths[b]].sum())
                agg.error_total[i] = float(result.error_attribution[b, : lengths[b]].sum())
                agg.metric[i] = float(result.metric[b])
            if on_progress is not None and on_progress(result.sae_id, min(start + batch_size, n), n):
                raise Cancelled(f"attribution stopped after {result.sae_id} on samples {start}..{min(start + batch_size, n) - 1}")
    return results


def top_k_ablation(attr: SAEListAttribution, sample: int, k: int) -> Ablation:
    """The study's choice: the ``k`` strongest pairs with 0 < pos < attribution position."""
    if k <= 0:
        raise ListerError(f"k must be >= 1, got {k}")
    limit = attr.attribution_pos[sample]
    chosen = [p for p in attr.top[sample] if 0 < p.pos < limit][:k]
    return Ablation(tuple(FeatureAblation(attr.sae_id, p.feature, (p.pos,)) for p in chosen))


@dataclass(frozen=True)
class AblationOutcome:
    """One sample's base and ablated regenerations from the same prefix and seed."""

    sample: int
    ablation: Ablation
    base: ListSample
    ablated: ListSample

    def delta(self, name: str) -> float:
        a, b = getattr(self.ablated.metrics, name), getattr(self.base.metrics, name)
        return float(a) - float(b)


def ablate_and_regenerate(
    loaded: LoadedModel,
    samples: Sequence[ListSample],
    ablations: Sequence[Ablation],
    settings: SamplingSettings,
    *,
    from_attribution_pos: bool = True,
) -> list[AblationOutcome]:
    """Regenerate each sample under its ablation, and without it, with the sample's own seed.

    As in the study, regeneration starts from ``tokens[:attribution position]`` (the
    ablation acts on that prefix and on nothing generated); the unablated regeneration
    from the same prefix and seed is the base, so a difference comes from the ablation,
    not from sampling (common random numbers).
    """
    if len(ablations) != len(samples):
        raise ListerError(f"{len(ablations)} ablations for {len(samples)} samples; give one per sample")
    outcomes = []
    for i, (sample, ablation) in enumerate(zip(samples, ablations)):
        if from_attribution_pos:
            if sample.structure.attribution_pos is None:
                raise ListerError(f"sample {i} has no attribution position to regenerate from")
            prefix = [list(sample.tokens[: sample.structure.attribution_pos])]
        else:
            prefix = [list(sample.tokens[: sample.prompt_len])]
        base = sample_lists(loaded, [sample.spec], settings, prefixes=prefix)[0]
        ablated = sample_lists(loaded, [sample.spec], settings, prefixes=prefix, ablation=ablation)[0]
        outcomes.append(AblationOutcome(i, ablation, with_metric(loaded, base), with_metric(loaded, ablated)))
    return outcomes


def metric_under_ablation(loaded: LoadedModel, tokens: Sequence[int], ablation: Ablation, pos: int) -> float:
    """The metric at ``pos`` of ``tokens`` with ``ablation`` applied (a real forward pass, not an estimate)."""
    return float(metric_curve(loaded, tokens[: pos + 1], ablation)[pos])


def regeneration_prefix(sample: ListSample, from_attribution_pos: bool = True) -> list[int]:
    """What a regeneration of ``sample`` starts from: ``tokens[:attribution position]`` (the
    study's choice) or the prompt."""
    if from_attribution_pos:
        if sample.structure.attribution_pos is None:
            raise ListerError(f"sample {sample.spec.key} has no complete item, so no attribution position to regenerate from")
        return list(sample.tokens[: sample.structure.attribution_pos])
    return list(sample.tokens[: sample.prompt_len])


def regenerate(
    loaded: LoadedModel,
    sample: ListSample,
    settings: SamplingSettings,
    ablation: Ablation | None = None,
    *,
    from_attribution_pos: bool = True,
    on_step: Callable[[int, list[list[int]]], bool | None] | None = None,
) -> ListSample:
    """One side of :func:`ablate_and_regenerate` for one sample: regenerate ``sample`` from
    its prefix with its own seed, under ``ablation`` (None: the base), streaming through
    ``on_step`` (return True from it to cancel), with the metric at the attribution position."""
    prefix = regeneration_prefix(sample, from_attribution_pos)
    out = sample_lists(loaded, [sample.spec], settings, prefixes=[prefix], ablation=ablation, on_step=on_step)[0]
    return with_metric(loaded, out)


def select_samples(attr: SAEListAttribution, indices: Sequence[int]) -> SAEListAttribution:
    """The part of a batch attribution that covers ``indices`` (renumbered from 0, in that order)."""
    from dataclasses import replace

    idx = list(indices)
    return SAEListAttribution(
        attr.sae_id,
        attr.hook_name,
        attr.d_sae,
        top=[[replace(p, sample=new) for p in attr.top[old]] for new, old in enumerate(idx)],
        max_activation=attr.max_activation[idx],
        feature_total=attr.feature_total[idx],
        error_total=attr.error_total[idx],
        metric=attr.metric[idx],
        attribution_pos=[attr.attribution_pos[i] for i in idx],
    )
