"""The study, headless: every SAE's top-k ablation, the baselines and the faithfulness check.

One sweep samples a list per (template, topic, sample) with its own seed, keeps the
lists that have an attribution position, and regenerates each of them from that
position under every *condition*: the *base* (the unablated regeneration), each SAE's
top-k ablation (the pairs the metric is attributed to most are zeroed, as
:func:`experiment.ablate_and_regenerate` does) and the baselines (restricted sampling,
steering). Every condition uses the sample's own seed and prefix, so each is compared
with the same base.

The work is split into *shards* planned from the settings alone, never from the number
of workers: per template, one shard samples the original lists of every topic, and one
shard per batched condition (the base and the baselines) regenerates them all; per
template, topic and SAE, one shard attributes that topic's lists to the SAE, zeroes
each one's top-k pairs, regenerates them and checks the faithfulness. A shard's rows
depend only on the shard and its original lists, and every run executes the same
:class:`ShardRunner` on them: this process (:func:`run_sweep`), one Ray worker or many
(:mod:`lister_tui.core.sweep.ray_cluster`). :class:`SweepState` merges the rows in one canonical
order (condition, then template, topic and sample), so the tables are the same however
the shards were spread. (Batched conditions span every topic because their samples
with equal-length prefixes share a batch: split per topic, the same sweep of
lister-tiny on CPU took 1.5 times as long.)

The result is a list of per-generation rows (one per sample and condition, the base
included) and the faithfulness rows; :mod:`lister_tui.core.sweep.tables` aggregates them.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from typing import Protocol

import torch

from lister_tui.core.study.baselines import (
    BAN_BLANK_AND_END,
    BAN_END,
    Baseline,
    check_layer,
    regenerate,
    restricted_baselines,
    steering_baseline,
    steering_name,
)
from lister_tui.core.engine.attribution import check_ig_steps
from lister_tui.core.files.clock import now
from lister_tui.core.errors import ListerError
from lister_tui.core.study.experiment import (
    ATTRIBUTION_METHODS,
    DEFAULT_IG_STEPS,
    attributable,
    attribute_lists,
    top_k_ablation,
)
from lister_tui.core.study.faithfulness import sample_faithfulness
from lister_tui.core.engine.generation import ListSample, make_sample, sample_lists
from lister_tui.core.engine.listing import items_from_text
from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.engine.prompts import PromptSpec, build_prompts
from lister_tui.core.engine.registry import ModelEntry
from lister_tui.core.engine.prompts import TEMPLATES, TOPICS
from lister_tui.core.engine.sampling import SamplingSettings
from lister_tui.core.study.settings import SAMPLING_PRESETS
from lister_tui.core.sweep.tables import BASE, SAE_ABLATION


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
    attribution: str = "grad"  # how pairs are ranked: "grad" (the study's activation x gradient) or "ig"
    ig_steps: int = DEFAULT_IG_STEPS  # integrated-gradient steps (used with attribution="ig")

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
        if self.attribution not in ATTRIBUTION_METHODS:
            raise ListerError(f"unknown attribution method {self.attribution!r}; valid: {', '.join(ATTRIBUTION_METHODS)}")
        check_ig_steps(self.ig_steps)
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

    @classmethod
    def from_dict(cls, values: Mapping) -> SweepSettings:
        """Settings back from :meth:`to_dict`'s output (a manifest's ``settings``)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ListerError(f"unknown sweep settings {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        out = dict(values)
        if isinstance(out.get("sampling"), Mapping):
            out["sampling"] = SamplingSettings(**out["sampling"])
        for key in ("saes", "templates", "topics"):
            if key in out:
                out[key] = tuple(out[key])
        return cls(**out)

    def conditions(self, entry: ModelEntry) -> list[str]:
        """Every condition's name, in the tables' order: the base, each SAE's ablation, the baselines."""
        names = [BASE] + [ablation_condition(s) for s in self.sae_ids(entry)]
        if self.restricted_sampling:
            names += [BAN_BLANK_AND_END, BAN_END]
        if self.steering:
            names.append(steering_name(self.resolved_steering_layer(entry), self.steering_scale))
        return names

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
        args += ["--attribution", self.attribution, "--ig-steps", str(self.ig_steps)]
        return args


def ablation_condition(sae_id: str) -> str:
    """The condition that zeroes ``sae_id``'s top-k pairs, e.g. "ablate res_0"."""
    return f"ablate {sae_id}"


@dataclass(frozen=True)
class SweepProgress:
    """One progress report: ``done`` of ``total`` units.

    A unit is one sample under one condition in this process, one shard on Ray.
    """

    stage: str  # "sampling", "base", "ablation", "baseline", "shards", "done"
    done: int
    total: int
    detail: str


@dataclass
class SweepResult:
    """What a sweep produced so far; complete once every condition ran on every sample."""

    generations: list[dict] = field(default_factory=list)  # per-generation rows
    faithfulness: list[dict] = field(default_factory=list)  # per checked pair (and per top-k set)
    samples: list[PromptSpec] = field(default_factory=list)  # the attributable original lists
    dropped: list[str] = field(default_factory=list)  # keys of lists without a complete item
    conditions: list[str] = field(default_factory=list)  # every planned condition, in order
    conditions_done: list[str] = field(default_factory=list)
    baselines: dict = field(default_factory=dict)  # condition -> its description and details
    units_done: int = 0
    units_total: int = 0  # known once every topic's lists are sampled
    complete: bool = False
    shards: dict[str, dict] = field(default_factory=dict)  # shard id -> what it is, done, where it ran
    executed: list[str] = field(default_factory=list)  # shards this run computed (not read back)


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


# --- shards ---------------------------------------------------------------------------------

ORIGINALS = "originals"  # the shard kind that samples a topic's original lists


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9+-]+", "_", text).strip("_")


@dataclass(frozen=True)
class Shard:
    """One unit of work: a template's original lists, one batched condition on all of them,
    or one SAE's ablation on one topic's lists."""

    condition: str  # ORIGINALS, BASE, "ablate <sae>" or a baseline's name
    template: str
    topic: str | None = None  # None: every topic of the template
    sae: str | None = None  # the SAE an ablation shard attributes and zeroes

    @cached_property
    def id(self) -> str:
        """A stable name that is also a file name, e.g. "ablate_res_0.short.City_Names"."""
        parts = (self.condition, self.template) if self.topic is None else (self.condition, self.template, self.topic)
        return ".".join(_slug(part) for part in parts)

    @property
    def originals(self) -> Shard:
        """The shard whose lists this one regenerates."""
        return Shard(ORIGINALS, self.template)

    @property
    def label(self) -> str:
        return f"{self.condition}: {self.template}" + ("" if self.topic is None else f"/{self.topic}")


def plan_shards(settings: SweepSettings, entry: ModelEntry) -> list[Shard]:
    """Every shard of a sweep, from its settings alone, in the order one process runs them:
    each template's originals, then condition by condition (an SAE's topic by topic)."""
    saes = {ablation_condition(s): s for s in settings.sae_ids(entry)}
    plan = [Shard(ORIGINALS, t) for t in settings.templates]
    for condition in settings.conditions(entry):
        for t in settings.templates:
            if condition in saes:
                plan += [Shard(condition, t, topic, saes[condition]) for topic in settings.topics]
            else:
                plan.append(Shard(condition, t))
    seen: set[str] = set()
    for shard in plan:
        if shard.id in seen:
            raise ListerError(f"two shards would be named {shard.id!r}; give each template and topic once")
        seen.add(shard.id)
    return plan


def _record(s: ListSample, keep: bool) -> dict:
    """An original list as plain data (JSON-ready): enough to rebuild it exactly without the model."""
    spec = s.spec
    return {
        "template": spec.template,
        "topic": spec.topic,
        "sample": spec.sample,
        "seed": spec.seed,
        "prompt_len": s.prompt_len,
        "tokens": [int(t) for t in s.tokens],
        "stopped": bool(s.stopped),
        "attributable": keep,
    }


def originals_from_records(loaded: LoadedModel, records: Sequence[Mapping]) -> list[ListSample]:
    """The attributable original lists of an originals shard, rebuilt from its records (no model pass)."""
    return [
        make_sample(loaded, PromptSpec(r["template"], r["topic"], r["sample"], r["seed"]), r["prompt_len"], r["tokens"], r["stopped"])
        for r in records
        if r["attributable"]
    ]


def _output(generations: list[dict], faithfulness: list[dict] | None = None, partial: bool = False) -> dict:
    return {"generations": generations, "faithfulness": faithfulness or [], "partial": partial}


def configure_torch_threads(loaded: LoadedModel, threads: int | None = None) -> int:
    """Torch's CPU threads for a sweep: ``threads``, else 1 for a shipped model on CPU; returns the count.

    A small model's matmuls gain nothing from more threads, and on busy cores torch's
    spinning worker threads make every step many times slower. Every process of one
    sweep uses the same count, so that its floats are computed the same way.
    """
    if loaded.device == "cpu" and (threads is not None or loaded.entry.source == "shipped"):
        torch.set_num_threads(threads or 1)
    return torch.get_num_threads()


class ShardRunner:
    """Runs shards on one loaded model: the local sweep holds one, each Ray worker one.

    ``run`` is the single definition of what a shard computes; its rows depend only on
    the shard and the original lists it is given (which lists share a batch follows from
    them, never from the other shards a worker runs).
    """

    def __init__(self, loaded: LoadedModel, settings: SweepSettings, *, one_sae_at_a_time: bool = False):
        settings.validate(loaded.entry)
        if settings.steering:
            check_layer(loaded, settings.resolved_steering_layer(loaded.entry))
        self.loaded = loaded
        self.settings = settings
        # a Ray worker owns its model and drops the SAEs of earlier shards; a local run
        # leaves the caller's model as it was given (its cached SAEs included)
        self.one_sae_at_a_time = one_sae_at_a_time
        self._baselines: dict[str, Baseline] | None = None

    def baselines(self) -> dict[str, Baseline]:
        """The baselines by condition name, built once (the steering vector from every topic's prompts)."""
        if self._baselines is None:
            s, entry = self.settings, self.loaded.entry
            made = restricted_baselines(self.loaded) if s.restricted_sampling else []
            if s.steering:
                made.append(steering_baseline(self.loaded, s.resolved_steering_layer(entry), s.steering_scale, s.topics))
            self._baselines = {b.name: b for b in made}
        return self._baselines

    def run(
        self, shard: Shard, originals: Sequence[Mapping] | None = None, on_unit: Callable[[str], bool] | None = None
    ) -> dict:
        """The shard's output: ``{"samples": records}`` for an originals shard, else the rows
        ``{"generations", "faithfulness", "partial"}`` (and ``"baseline"``: its description).

        ``on_unit(detail)`` is called after each sample; when it returns True the shard
        stops early and its output says ``"partial": True``.
        """
        if shard.condition == ORIGINALS:
            return {"samples": self._sample_originals(shard)}
        if originals is None:
            raise ListerError(f"shard {shard.id} needs the original lists of template {shard.template!r}")
        samples = originals_from_records(self.loaded, originals)
        unit = on_unit or (lambda detail: False)
        if shard.condition == BASE:
            return self._regenerate_all(shard, samples, "none", unit)
        if shard.sae is not None:
            return self._ablate(shard, samples, unit)
        baseline = self.baselines().get(shard.condition)
        if baseline is None:
            raise ListerError(f"unknown condition {shard.condition!r}; planned: {', '.join(self.baselines())}")
        out = self._regenerate_all(shard, samples, baseline.method, unit, baseline.banned_ids, baseline.hooks)
        out["baseline"] = {"method": baseline.method, "description": baseline.description, **baseline.details}
        return out

    def _sample_originals(self, shard: Shard) -> list[dict]:
        s = self.settings
        specs = build_prompts([shard.template], s.topics, s.samples_per_topic, s.seed)
        originals = sample_lists(self.loaded, specs, s.sampling)
        keep = set(attributable(originals))
        return [_record(sample, i in keep) for i, sample in enumerate(originals)]

    def _regenerate_all(self, shard, samples, method, unit, banned_ids=(), hooks=()) -> dict:
        """Every sample under one condition without a per-sample ablation; samples with
        equal-length prefixes run as one batch (a sample's tokens do not depend on its batch)."""
        groups: dict[int, list[int]] = {}
        for i, sample in enumerate(samples):
            groups.setdefault(sample.structure.attribution_pos, []).append(i)
        rows: dict[int, dict] = {}
        for group in groups.values():
            regenerated = regenerate(
                self.loaded, [samples[i] for i in group], self.settings.sampling, banned_ids=banned_ids, hooks=hooks
            )
            stop = False
            for i, r in zip(group, regenerated):
                rows[i] = generation_row(self.loaded, r, shard.condition, method, None, "")
                stop = unit(f"{shard.condition}: {samples[i].spec.key}") or stop
            if stop:
                return _output([rows[i] for i in sorted(rows)], partial=len(rows) < len(samples))
        return _output([rows[i] for i in sorted(rows)])

    def _ablate(self, shard, samples, unit) -> dict:
        """Attribute the lists to one SAE, zero each one's top-k pairs, regenerate, check the estimate."""
        s, sae_id = self.settings, shard.sae
        if self.one_sae_at_a_time:
            self.loaded.release_saes(keep=(sae_id,))
        rows: list[dict] = []
        faithfulness: list[dict] = []
        if not samples:
            return _output(rows, faithfulness)
        attr = attribute_lists(self.loaded, samples, [sae_id], method=s.attribution, ig_steps=s.ig_steps)[sae_id]
        for i, sample in enumerate(samples):
            ablation = top_k_ablation(attr, i, s.k)
            ablated = regenerate(self.loaded, [sample], s.sampling, ablation=ablation)[0]
            rows.append(generation_row(self.loaded, ablated, shard.condition, SAE_ABLATION, sae_id, _pairs_text(ablation)))
            if s.faithfulness:
                faithfulness += sample_faithfulness(self.loaded, attr, samples, i, s.k)
            if unit(f"{shard.condition}: {sample.spec.key}"):
                return _output(rows, faithfulness, partial=i + 1 < len(samples))
        return _output(rows, faithfulness)


def shard_meta(seconds: float, run_id: str | None, worker: Mapping, attempts: int = 1, failures: Sequence = ()) -> dict:
    """Where and how a shard ran (the manifest's ``shards``)."""
    return {
        "worker": dict(worker),
        "attempts": attempts,
        "failures": list(failures),
        "seconds": round(seconds, 3),
        "finished": now(),
        "run": run_id,
    }


def this_process() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid()}


class ShardStore(Protocol):
    """Where finished shards are kept between runs (:class:`sweep_output.ShardFiles`)."""

    def load(self, plan: Sequence[Shard]) -> dict[str, tuple[dict, dict]]: ...

    def save(self, shard: Shard, output: dict, meta: dict) -> None: ...


class SweepState:
    """A sweep's shards, which are done, and their rows merged into one :class:`SweepResult`.

    Both drivers keep one (:func:`run_sweep` here, :func:`sweep_ray.run_sweep_ray`).
    With a ``store``, each finished shard is saved as soon as it finishes, and shards
    already there are not run again (resume). Rows are merged condition by condition,
    each in plan order (template, topic, then sample), whatever order shards finish in.
    """

    def __init__(
        self,
        settings: SweepSettings,
        entry: ModelEntry,
        store: ShardStore | None = None,
        result: SweepResult | None = None,
        run_id: str | None = None,
    ):
        settings.validate(entry)
        self.plan = plan_shards(settings, entry)
        self.conditions = settings.conditions(entry)
        self.store = store
        self.run_id = run_id
        self.result = result if result is not None else SweepResult()
        self.outputs: dict[str, dict] = {}
        self.meta: dict[str, dict] = {}
        self.partial: dict[str, dict] = {}
        if store is not None:
            for shard_id, (output, meta) in store.load(self.plan).items():
                self.outputs[shard_id], self.meta[shard_id] = output, meta
        self.merge()

    @property
    def pending(self) -> list[Shard]:
        return [s for s in self.plan if s.id not in self.outputs]

    def originals(self, shard: Shard) -> list[dict] | None:
        """The records of the original lists ``shard`` regenerates (its topic's, or its
        template's), once they are sampled."""
        out = self.outputs.get(shard.originals.id)
        if out is None:
            return None
        return [r for r in out["samples"] if shard.topic is None or r["topic"] == shard.topic]

    def finish(self, shard: Shard, output: dict, meta: dict) -> None:
        """Take a shard's output (saved first, so the tables never count rows that could be lost)."""
        if output.get("partial"):
            self.partial[shard.id] = output
        else:
            if self.store is not None:
                self.store.save(shard, output, meta)
            self.outputs[shard.id], self.meta[shard.id] = output, meta
            self.partial.pop(shard.id, None)
            self.result.executed.append(shard.id)
        self.merge()

    def check_samples(self) -> None:
        """Once every topic is sampled: a clear error when no list can be attributed."""
        r = self.result
        if not r.samples and not any(s.condition == ORIGINALS for s in self.pending):
            raise ListerError(
                f"none of the {len(r.dropped)} sampled lists has a complete item, so nothing can be attributed "
                "(max_new_tokens may be too small)"
            )

    def merge(self) -> SweepResult:
        """Fill the result from the finished (and partial) shards, in the canonical order."""
        r = self.result
        origin = [s for s in self.plan if s.condition == ORIGINALS]
        records = [rec for s in origin if s.id in self.outputs for rec in self.outputs[s.id]["samples"]]
        specs = [(PromptSpec(x["template"], x["topic"], x["sample"], x["seed"]), x["attributable"]) for x in records]
        r.samples = [spec for spec, keep in specs if keep]
        r.dropped = [spec.key for spec, keep in specs if not keep]
        r.conditions = list(self.conditions)
        generations: list[dict] = []
        faithfulness: list[dict] = []
        baselines: dict[str, dict] = {}
        done: list[str] = []
        for condition in self.conditions:
            shards = [s for s in self.plan if s.condition == condition]
            for s in shards:
                out = self.outputs.get(s.id) or self.partial.get(s.id)
                if out is None:
                    continue
                generations += out["generations"]
                faithfulness += out["faithfulness"]
                if out.get("baseline") is not None:
                    baselines.setdefault(condition, out["baseline"])
            if all(s.id in self.outputs for s in shards):
                done.append(condition)
        r.generations, r.faithfulness = generations, faithfulness
        r.baselines, r.conditions_done = baselines, done
        r.units_done = len(generations)
        sampled = all(s.id in self.outputs for s in origin)
        r.units_total = len(r.samples) * len(self.conditions) if sampled else 0
        r.complete = len(self.outputs) == len(self.plan)
        r.shards = {s.id: {**asdict(s), "done": s.id in self.outputs, **self.meta.get(s.id, {})} for s in self.plan}
        return r


def run_sweep(
    loaded: LoadedModel,
    settings: SweepSettings,
    on_progress: Callable[[SweepProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_checkpoint: Callable[[SweepResult], None] | None = None,
    result: SweepResult | None = None,
    store: ShardStore | None = None,
    run_id: str | None = None,
) -> SweepResult:
    """Run the sweep's shards in this process; returns (and fills ``result`` in place, if given) the rows.

    ``on_checkpoint(result)`` is called after the sampling and after each condition,
    so a writer can save valid tables as the sweep goes. ``should_stop()`` is asked
    after every unit; when it says True the sweep returns early with
    ``complete=False``. An exception (KeyboardInterrupt included) leaves ``result``
    holding every finished shard's rows. With ``store``, finished shards are saved
    there and shards already saved are not run again.
    """
    runner = ShardRunner(loaded, settings)
    state = SweepState(settings, loaded.entry, store, result, run_id)
    result = state.result
    report = on_progress or (lambda p: None)
    stop = should_stop or (lambda: False)
    checkpoint = on_checkpoint or (lambda r: None)
    stopping = False

    def run(shard: Shard, stage: str) -> None:
        nonlocal stopping

        def unit(detail: str) -> bool:
            nonlocal stopping
            result.units_done += 1
            report(SweepProgress(stage, result.units_done, result.units_total, detail))
            stopping = bool(stop()) or stopping
            return stopping

        started = time.perf_counter()
        output = runner.run(shard, state.originals(shard), unit)
        state.finish(shard, output, shard_meta(time.perf_counter() - started, run_id, this_process()))

    # 1. each template's original lists, every sample with its own seed
    to_sample = [s for s in state.pending if s.condition == ORIGINALS]
    n_lists = len(to_sample) * len(settings.topics) * settings.samples_per_topic
    report(SweepProgress("sampling", 0, 0, f"sampling {n_lists} lists"))
    for shard in to_sample:
        run(shard, "sampling")
    state.check_samples()
    checkpoint(result)

    # 2. condition by condition: the base, each SAE (attribution, top-k ablation,
    # faithfulness), the baselines; each from the same prefixes and seeds
    stages = {BASE: "base"}
    for shard in state.pending:
        run(shard, stages.get(shard.condition, "ablation" if shard.sae else "baseline"))
        if stopping or shard.id not in state.outputs:
            return result
        if shard.condition in result.conditions_done:
            checkpoint(result)
    report(SweepProgress("done", result.units_done, result.units_total, "done"))
    checkpoint(result)
    return result
