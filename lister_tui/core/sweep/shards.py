"""A sweep's shards: planned from the settings alone, and the one definition of what a shard computes.

Per template, one shard samples the original lists of every topic, and one shard per batched
condition (the base and the baselines) regenerates them all; per template, topic and SAE, one
shard attributes that topic's lists to the SAE, zeroes each one's top-k pairs, regenerates them
and checks the faithfulness. A shard's rows depend only on the shard and its original lists, and
every run executes the same :class:`ShardRunner` on them: this process
(:func:`lister_tui.core.sweep.run.run_sweep`), one Ray worker or many
(:mod:`lister_tui.core.sweep.ray_cluster`). (Batched conditions span every topic because their
samples with equal-length prefixes share a batch: split per topic, the same sweep of lister-tiny
on CPU took 1.5 times as long.)"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from lister_tui.core.engine.generation import ListSample, make_sample, sample_lists, with_metric
from lister_tui.core.engine.listing import items_from_text
from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.engine.prompts import PromptSpec, build_prompts, get_template
from lister_tui.core.engine.registry import ModelEntry
from lister_tui.core.errors import ListerError
from lister_tui.core.files.clock import now
from lister_tui.core.study.baselines import (
    Baseline,
    check_layer,
    regenerate,
    restricted_baselines,
    steering_baseline,
)
from lister_tui.core.study.columns import PLAIN_METRIC
from lister_tui.core.study.experiment import (
    attributable,
    attribute_lists,
    top_k_ablation,
)
from lister_tui.core.study.faithfulness import sample_faithfulness
from lister_tui.core.sweep.settings import SweepSettings, ablation_condition
from lister_tui.core.sweep.tables import BASE, INTERVENTIONS, SAE_ABLATION


def _items(loaded: LoadedModel, s: ListSample) -> list[str]:
    stop = s.structure.end_pos if s.structure.end_pos is not None else len(s.tokens)
    return items_from_text(loaded.tokenizer.decode(list(s.tokens[s.prompt_len : stop])), loaded.ids.style)


def generation_row(loaded: LoadedModel, s: ListSample, condition: str, method: str, sae: str | None, pairs: str) -> dict:
    """One per-generation row: which list, under which condition, and its list metrics."""
    m = s.metrics
    return {
        "condition": condition,
        "method": method,
        "sae": sae,
        "template": s.spec.template,
        "template_length": get_template(s.spec.template, loaded.entry).length,
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
        "empty_items": m.empty_items,
        "reached_end": m.reached_end,
        PLAIN_METRIC: m.metric_at_attribution,
        "items": json.dumps(_items(loaded, s), ensure_ascii=False),
        "continuation": loaded.tokenizer.decode(list(s.continuation)),
    }


def _pairs_text(ablation) -> str:
    """"feature@position" for each zeroed pair, in rank order."""
    return " ".join(f"{f.feature}@{f.positions[0]}" for f in ablation.features)


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
        sets = {iset.name: iset for iset in self.settings.intervention_sets()}
        if shard.condition in sets:
            return self._intervene_all(shard, samples, sets[shard.condition], unit)
        baseline = self.baselines().get(shard.condition)
        if baseline is None:
            raise ListerError(f"unknown condition {shard.condition!r}; planned: {', '.join(self.baselines())}")
        out = self._regenerate_all(shard, samples, baseline.method, unit, baseline.banned_ids, baseline.hooks)
        out["baseline"] = {"method": baseline.method, "description": baseline.description, **baseline.details}
        return out

    def _sample_originals(self, shard: Shard) -> list[dict]:
        s = self.settings
        specs = build_prompts([shard.template], s.topics, s.samples_per_topic, s.seed, entry=self.loaded.entry)
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

    def _intervene_all(self, shard, samples, iset, unit) -> dict:
        """Every sample regenerated from its attribution position under a named intervention set
        (batched; each with its own seed, so the base is its common-random-numbers twin)."""
        rows: list[dict] = []
        sites = ",".join(iset.sae_ids())
        described = iset.describe()
        for start in range(0, len(samples), 32):
            group = samples[start : start + 32]
            prefixes = [list(s.tokens[: s.structure.attribution_pos]) for s in group]
            out = sample_lists(self.loaded, [s.spec for s in group], self.settings.sampling, prefixes=prefixes, interventions=iset)
            stop = False
            for s, r in zip(group, out):
                rows.append(generation_row(self.loaded, with_metric(self.loaded, r), shard.condition, INTERVENTIONS, sites, described))
                stop = unit(f"{shard.condition}: {s.spec.key}") or stop
            if stop:
                return _output(rows, partial=len(rows) < len(samples))
        return _output(rows)

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
