"""The study, headless: every SAE's top-k ablation, the baselines and the faithfulness check.

One sweep samples a list per (template, topic, sample) with its own seed, keeps the
lists that have an attribution position, attributes the metric to every SAE's
features in one pass, then, SAE by SAE and sample by sample, zeroes the top-k pairs
and regenerates from the attribution position, as :func:`experiment.ablate_and_regenerate`
does. The unablated regeneration from the same prefix and seed is the *base*; the
baselines (restricted sampling, steering) regenerate from the same prefix and seed
too, so every condition is compared with the same base.

The result is a list of per-generation rows (one per sample and condition, the base
included) and the faithfulness rows; :mod:`lister_tui.core.tables` aggregates them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Callable

from lister_tui.core.baselines import Baseline, check_layer, regenerate, restricted_baselines, steering_baseline
from lister_tui.core.errors import ListerError
from lister_tui.core.experiment import attributable, attribute_lists, top_k_ablation
from lister_tui.core.faithfulness import sample_faithfulness
from lister_tui.core.generation import ListSample, sample_lists
from lister_tui.core.listing import items_from_text
from lister_tui.core.loading import LoadedModel
from lister_tui.core.prompts import build_prompts
from lister_tui.core.registry import ModelEntry
from lister_tui.core.study import SAMPLING_PRESETS, TEMPLATES, TOPICS, SamplingSettings
from lister_tui.core.tables import BASE, SAE_ABLATION


@dataclass(frozen=True)
class SweepSettings:
    """Everything that determines a sweep's tables (the manifest records all of it)."""

    model: str = "lister-tiny"
    saes: tuple[str, ...] = ()  # empty: the model's preset, every SAE site of its registry entry
    templates: tuple[str, ...] = ("short",)
    topics: tuple[str, ...] = TOPICS
    samples_per_topic: int = 5
    sampling_preset: str | None = "code"  # the preset the sampling values came from (None: explicit)
    sampling: SamplingSettings = SAMPLING_PRESETS["code"]
    k: int = 5  # top-k (position, feature) pairs zeroed per sample
    seed: int = 0
    device: str = "auto"
    dtype: str | None = None  # None: the registry entry's default
    restricted_sampling: bool = True
    steering: bool = True
    steering_layer: int | None = None  # None: the layer of the entry's earliest residual SAE (else 0)
    steering_scale: float = 8.0
    faithfulness: bool = True

    def sae_ids(self, entry: ModelEntry) -> tuple[str, ...]:
        """The SAEs to ablate, in order, duplicates dropped; the preset when none were given."""
        if not self.saes:
            return tuple(s.id for s in entry.sites)
        return tuple(dict.fromkeys(self.saes))

    def resolved_steering_layer(self, entry: ModelEntry) -> int:
        if self.steering_layer is not None:
            return self.steering_layer
        residual = sorted(s.layer for s in entry.sites if s.kind == "res")
        return residual[0] if residual else 0

    def validate(self, entry: ModelEntry) -> None:
        """Raise ListerError naming the first bad value and what would be valid (no weights needed)."""
        if not entry.sites:
            raise ListerError(f"model {entry.name!r} has no SAEs to ablate")
        for sae_id in self.sae_ids(entry):
            entry.site(sae_id)  # "unknown SAE 'x' for model ...; valid: ..."
        if not self.templates:
            raise ListerError(f"no templates given; valid: {', '.join(TEMPLATES)}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ListerError(f"k must be >= 1, got {self.k}")
        if isinstance(self.samples_per_topic, bool) or not isinstance(self.samples_per_topic, int) or self.samples_per_topic < 1:
            raise ListerError(f"samples per topic must be >= 1, got {self.samples_per_topic}")
        build_prompts(self.templates, self.topics, self.samples_per_topic, self.seed)  # unknown template/topic
        if self.steering:
            if self.steering_layer is not None and (isinstance(self.steering_layer, bool) or self.steering_layer < 0):
                raise ListerError(f"steering layer {self.steering_layer!r} is out of range; valid: 0 or more")
            if not math.isfinite(self.steering_scale):
                raise ListerError(f"steering scale {self.steering_scale!r} is not a finite number")

    def to_dict(self, entry: ModelEntry | None = None) -> dict:
        """JSON-ready settings, with the SAE list and steering layer resolved when ``entry`` is given."""
        out = asdict(self)
        out["saes"] = list(self.sae_ids(entry)) if entry is not None else list(self.saes)
        out["templates"], out["topics"] = list(self.templates), list(self.topics)
        if entry is not None:
            out["steering_layer"] = self.resolved_steering_layer(entry)
        return out

    def cli_args(self, entry: ModelEntry) -> list[str]:
        """``lister-tui sweep`` arguments that repeat this sweep exactly (every value explicit)."""
        s = self.sampling
        args = ["--model", self.model]
        for sae_id in self.sae_ids(entry):
            args += ["--sae", sae_id]
        for t in self.templates:
            args += ["--template", t]
        for topic in self.topics:
            args += ["--topic", topic]
        args += ["--samples", str(self.samples_per_topic), "--preset", self.sampling_preset or "code"]
        args += ["--temperature", repr(s.temperature), "--top-p", repr(s.top_p), "--max-new-tokens", str(s.max_new_tokens)]
        if s.top_k is not None:
            args += ["--top-k", str(s.top_k)]
        args += ["--k", str(self.k), "--seed", str(self.seed), "--device", self.device]
        if self.dtype is not None:
            args += ["--dtype", self.dtype]
        args.append("--restricted" if self.restricted_sampling else "--no-restricted")
        if self.steering:
            args += ["--steering", "--steering-layer", str(self.resolved_steering_layer(entry))]
            args += ["--steering-scale", repr(self.steering_scale)]
        else:
            args.append("--no-steering")
        args.append("--faithfulness" if self.faithfulness else "--no-faithfulness")
        return args


@dataclass(frozen=True)
class SweepProgress:
    """One progress report: ``done`` of ``total`` units (a unit is one sample under one condition)."""

    stage: str  # "sampling", "attribution", "ablation", "baseline", "done"
    done: int
    total: int
    detail: str


@dataclass
class SweepResult:
    """What a sweep produced so far; complete once every condition ran on every sample."""

    generations: list[dict] = field(default_factory=list)  # per-generation rows
    faithfulness: list[dict] = field(default_factory=list)  # per checked pair (and per top-k set)
    samples: list[ListSample] = field(default_factory=list)  # the attributable original lists
    dropped: list[str] = field(default_factory=list)  # keys of lists without a complete item
    conditions: list[str] = field(default_factory=list)  # every planned condition, in order
    conditions_done: list[str] = field(default_factory=list)
    baselines: dict = field(default_factory=dict)  # condition -> its description and details
    units_done: int = 0
    units_total: int = 0
    complete: bool = False


def _items(loaded: LoadedModel, s: ListSample) -> list[str]:
    stop = s.structure.end_pos if s.structure.end_pos is not None else len(s.tokens)
    return items_from_text(loaded.tokenizer.decode(list(s.tokens[s.prompt_len : stop])))


def generation_row(loaded: LoadedModel, s: ListSample, condition: str, method: str, sae: str | None, pairs: str) -> dict:
    """One per-generation row: which list, under which condition, and its list metrics."""
    m = s.metrics
    return {
        "condition": condition,
        "method": method,
        "sae": sae,
        "template": s.spec.template,
        "topic": s.spec.topic,
        "sample": s.spec.sample,
        "seed": s.spec.seed,
        "regenerated_from_position": s.prefix_len,
        "ablated_pairs": pairs,
        "n_items": m.n_items,
        "n_tokens": m.n_tokens,
        "repeated_items": m.repeated_items,
        "diversity": m.diversity,
        "filler_count": m.filler_count,
        "reached_end": m.reached_end,
        "metric_at_attribution": m.metric_at_attribution,
        "items": json.dumps(_items(loaded, s), ensure_ascii=False),
        "continuation": loaded.tokenizer.decode(list(s.continuation)),
    }


def _pairs_text(ablation) -> str:
    """"feature@position" for each zeroed pair, in rank order."""
    return " ".join(f"{f.feature}@{f.positions[0]}" for f in ablation.features)


def run_sweep(
    loaded: LoadedModel,
    settings: SweepSettings,
    on_progress: Callable[[SweepProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_checkpoint: Callable[[SweepResult], None] | None = None,
    result: SweepResult | None = None,
) -> SweepResult:
    """Run the sweep on ``loaded``; returns (and fills ``result`` in place, if given) the rows.

    ``on_checkpoint(result)`` is called after the sampling and after each condition,
    so a writer can save valid tables as the sweep goes. ``should_stop()`` is asked
    after every unit; when it says True the sweep returns early with
    ``complete=False``. An exception (KeyboardInterrupt included) leaves ``result``
    holding every finished row.
    """
    entry = loaded.entry
    settings.validate(entry)
    sae_ids = settings.sae_ids(entry)
    if settings.steering:
        check_layer(loaded, settings.resolved_steering_layer(entry))
    result = result if result is not None else SweepResult()
    report = on_progress or (lambda p: None)
    stop = should_stop or (lambda: False)
    checkpoint = on_checkpoint or (lambda r: None)

    # 1. the original lists, one per (template, topic, sample) with its own seed
    specs = build_prompts(settings.templates, settings.topics, settings.samples_per_topic, settings.seed)
    report(SweepProgress("sampling", 0, 0, f"sampling {len(specs)} lists"))
    originals = sample_lists(loaded, specs, settings.sampling)
    keep = attributable(originals)
    result.samples = [originals[i] for i in keep]
    result.dropped = [originals[i].spec.key for i in range(len(originals)) if i not in set(keep)]
    samples = result.samples
    if not samples:
        raise ListerError(
            f"none of the {len(originals)} sampled lists has a complete item, so nothing can be attributed "
            f"(max_new_tokens {settings.sampling.max_new_tokens} may be too small)"
        )

    baselines: list[Baseline] = []
    if settings.restricted_sampling:
        baselines += restricted_baselines(loaded)
    if settings.steering:
        baselines.append(
            steering_baseline(loaded, settings.resolved_steering_layer(entry), settings.steering_scale, settings.topics)
        )
    result.conditions = [BASE] + [f"ablate {s}" for s in sae_ids] + [b.name for b in baselines]
    result.baselines = {b.name: {"method": b.method, "description": b.description, **b.details} for b in baselines}
    result.units_total = len(samples) * len(result.conditions)
    checkpoint(result)

    # 2. attribution: one forward and backward pass per batch serves every SAE
    report(SweepProgress("attribution", 0, result.units_total, f"attributing {len(samples)} lists to {len(sae_ids)} SAEs"))
    attrs = attribute_lists(loaded, samples, sae_ids)

    def unit_done(stage: str, detail: str) -> bool:
        result.units_done += 1
        report(SweepProgress(stage, result.units_done, result.units_total, detail))
        return bool(stop())

    # Conditions without a per-sample ablation run samples with equal-length prefixes
    # as one batch (the sampler makes a sample's tokens independent of its batch).
    groups: dict[int, list[int]] = {}
    for i, sample in enumerate(samples):
        groups.setdefault(sample.structure.attribution_pos, []).append(i)

    def run_batched(condition: str, method: str, stage: str, banned_ids=(), hooks=()) -> bool:
        """Regenerate every sample under one condition; True when asked to stop."""
        for group in groups.values():
            regenerated = regenerate(
                loaded, [samples[i] for i in group], settings.sampling, banned_ids=banned_ids, hooks=hooks
            )
            stop_now = False
            for i, r in zip(group, regenerated):
                result.generations.append(generation_row(loaded, r, condition, method, None, ""))
                stop_now = unit_done(stage, f"{condition}: {samples[i].spec.key}") or stop_now
            if stop_now:
                return True
        result.conditions_done.append(condition)
        checkpoint(result)
        return False

    # 3. the base: the unablated regeneration from tokens[:attribution position] with the
    # sample's seed; the same for every condition, so it runs once (ablate_and_regenerate
    # would redo it per SAE; tests check that both give the same lists)
    if run_batched(BASE, "none", "base"):
        return result

    # 4. each SAE: zero its top-k pairs per sample, regenerate, and check the linear estimate
    for sae_id in sae_ids:
        attr = attrs[sae_id]
        condition = f"ablate {sae_id}"
        for i, sample in enumerate(samples):
            ablation = top_k_ablation(attr, i, settings.k)
            ablated = regenerate(loaded, [sample], settings.sampling, ablation=ablation)[0]
            result.generations.append(
                generation_row(loaded, ablated, condition, SAE_ABLATION, sae_id, _pairs_text(ablation))
            )
            if settings.faithfulness:
                result.faithfulness += sample_faithfulness(loaded, attr, samples, i, settings.k)
            if unit_done("ablation", f"{condition}: {sample.spec.key}"):
                return result
        result.conditions_done.append(condition)
        checkpoint(result)

    # 5. the baselines, from the same prefixes and seeds
    for baseline in baselines:
        if run_batched(baseline.name, baseline.method, "baseline", baseline.banned_ids, baseline.hooks):
            return result

    result.complete = True
    report(SweepProgress("done", result.units_done, result.units_total, "done"))
    checkpoint(result)
    return result

