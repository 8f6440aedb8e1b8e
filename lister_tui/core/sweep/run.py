"""The study, headless: every SAE's top-k ablation, the baselines and the faithfulness check.

One sweep samples a list per (template, topic, sample) with its own seed, keeps the
lists that have an attribution position, and regenerates each of them from that
position under every *condition*: the *base* (the unablated regeneration), each SAE's
top-k ablation (the pairs the metric is attributed to most are zeroed, as
:func:`experiment.ablate_and_regenerate` does) and the baselines (restricted sampling,
steering). Every condition uses the sample's own seed and prefix, so each is compared
with the same base.

The work is split into *shards* planned from the settings alone, never from the number
of workers (:mod:`lister_tui.core.sweep.shards`). Here :func:`run_sweep` runs them in this
process; :mod:`lister_tui.core.sweep.ray_cluster` runs them on Ray. Both keep a
:class:`SweepState`, which merges the rows in one canonical order (condition, then template,
topic and sample), so the tables are the same however the shards were spread.

The result is a list of per-generation rows (one per sample and condition, the base
included) and the faithfulness rows; :mod:`lister_tui.core.sweep.tables` aggregates them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.engine.prompts import PromptSpec
from lister_tui.core.engine.registry import ModelEntry
from lister_tui.core.errors import ListerError
from lister_tui.core.sweep.settings import SweepSettings
from lister_tui.core.sweep.shards import ORIGINALS, Shard, ShardRunner, plan_shards, shard_meta, this_process
from lister_tui.core.sweep.tables import BASE


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
