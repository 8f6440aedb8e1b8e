"""How many items the batch's lists have, per template: the session's lists, and under ablation.

The study's question is whether a list ends sooner or later, so the first thing to look at
across a batch is the distribution of its item counts (``ListMetrics.n_items``: lines that
start with ``-``) per prompt template. Three groups are counted per template:

- ``lists``: the session's sampled lists (removed samples left out);
- ``run base``: every recorded ablation run's unablated regeneration (same prefix and seed);
- ``ablated``: the same runs' ablated regenerations.

``ablated`` minus ``run base`` is paired (one run, one seed), which is the study's change
(condition − base); ``lists`` vs ``ablated`` is not paired when a run regenerated from the
attribution position. A sample with several runs counts once per run.

When the session was opened from a sweep, :func:`sweep_by_condition` reads the sweep's
``by_condition`` table (its columns: ``condition``, ``method``, ``sae``, ``template``,
``n_topics``, ``n_generations``, ``n_items_change_mean``, ``n_items_change_variance``, …; see
:mod:`lister_tui.core.sweep.tables`), and :func:`condition_bars` turns it into Δitems ± sd rows.

Everything here is UI-free: a script gets the numbers the explorer's batch view shows.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.workspace import Workspace

LISTS, RUN_BASE, ABLATED = "lists", "run base", "ablated"
GROUPS: tuple[str, ...] = (LISTS, RUN_BASE, ABLATED)


def histogram(counts: Sequence[int]) -> dict[int, int]:
    """How many lists have each item count, for every count from the smallest to the largest
    (absent counts get 0, so that a bar chart of it is a histogram with one bin per count)."""
    if not counts:
        return {}
    seen = Counter(int(c) for c in counts)
    return {n: seen.get(n, 0) for n in range(min(seen), max(seen) + 1)}


def _mean(values: Sequence[int]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class TemplateCounts:
    """One template's item counts, per group (see the module's docstring)."""

    template: str
    lists: tuple[int, ...] = ()
    run_base: tuple[int, ...] = ()
    ablated: tuple[int, ...] = ()

    def group(self, name: str) -> tuple[int, ...]:
        return {LISTS: self.lists, RUN_BASE: self.run_base, ABLATED: self.ablated}[name]

    def mean(self, name: str) -> float | None:
        return _mean(self.group(name))

    @property
    def paired_change(self) -> float | None:
        """Mean of ablated − base over this template's runs (each run's own pair)."""
        if not self.ablated:
            return None
        return sum(a - b for a, b in zip(self.ablated, self.run_base)) / len(self.ablated)


@dataclass(frozen=True)
class BatchSummary:
    """Per template (in the order first seen among the session's samples), its item counts."""

    per_template: tuple[TemplateCounts, ...]
    n_runs: int = 0
    runs_per_sample: Mapping[str, int] = field(default_factory=dict)

    @property
    def templates(self) -> list[str]:
        return [t.template for t in self.per_template]

    def of(self, template: str) -> TemplateCounts:
        for t in self.per_template:
            if t.template == template:
                return t
        raise ListerError(f"no template {template!r} in this batch; it has {', '.join(self.templates) or 'none'}")

    def table(self) -> pd.DataFrame:
        """One row per template and group: n lists, mean, min, max items (a script's view of the plot)."""
        rows = []
        for t in self.per_template:
            for name in GROUPS:
                values = t.group(name)
                rows.append(
                    {
                        "template": t.template,
                        "group": name,
                        "n": len(values),
                        "items_mean": _mean(values),
                        "items_min": min(values) if values else None,
                        "items_max": max(values) if values else None,
                    }
                )
        return pd.DataFrame(rows, columns=["template", "group", "n", "items_mean", "items_min", "items_max"])


def batch_summary(ws: Workspace) -> BatchSummary:
    """The item counts of ``ws``'s lists and of its recorded ablation runs, per template."""
    lists: dict[str, list[int]] = {}
    base: dict[str, list[int]] = {}
    ablated: dict[str, list[int]] = {}
    runs_per_sample = {}
    for key, st in ws.samples.items():
        template = st.sample.spec.template
        lists.setdefault(template, []).append(st.sample.metrics.n_items)
        for run in st.runs:
            # a run regenerates its own sample, so its lists carry the sample's template
            base.setdefault(template, []).append(run.base.metrics.n_items)
            ablated.setdefault(template, []).append(run.ablated.metrics.n_items)
        if st.runs:
            runs_per_sample[key] = len(st.runs)
    per_template = tuple(
        TemplateCounts(t, tuple(lists[t]), tuple(base.get(t, ())), tuple(ablated.get(t, ()))) for t in lists
    )
    return BatchSummary(per_template, sum(runs_per_sample.values()), runs_per_sample)


# --- the sweep a session was opened from ----------------------------------------------------


def sweep_folder(manifest_fields: Mapping | None) -> Path | None:
    """The folder of the sweep a session was opened from (its manifest's ``source``), else None."""
    source = (manifest_fields or {}).get("source") or {}
    if not isinstance(source, Mapping) or source.get("kind") != "sweep" or not source.get("path"):
        return None
    return Path(str(source["path"]))


def sweep_by_condition(folder: Path) -> pd.DataFrame:
    """The sweep's ``by_condition`` table, or a ListerError saying why it cannot be read."""
    path = Path(folder) / "by_condition.parquet"
    if not path.is_file():
        raise ListerError(f"the sweep's table {path} is not there (the sweep folder was moved or deleted)")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # a damaged or foreign file: say which, never a traceback
        raise ListerError(f"cannot read the sweep's table {path} ({exc})") from exc
    missing = [c for c in ("condition", "template", "n_items_change_mean", "n_items_change_variance") if c not in frame.columns]
    if missing:
        raise ListerError(f"the sweep's table {path} has no column {', '.join(missing)}; is it a lister-tui sweep's by_condition?")
    return frame


@dataclass(frozen=True)
class ConditionBar:
    """One row of a sweep's ``by_condition``: the mean change of the item count and its spread."""

    condition: str
    template: str
    change_mean: float  # n_items_change_mean: mean over topics of the topic's mean change (condition − base)
    change_sd: float | None  # √ n_items_change_variance (mean over topics of the per-topic variance); None with one sample
    n_generations: int | None
    ablated_nothing: bool = False  # an SAE ablation that zeroed no pair: its change is not a measured "no effect"


def _number(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def condition_bars(by_condition: pd.DataFrame) -> list[ConditionBar]:
    """Δitems ± sd per condition and template, in the table's order (rows without a mean are left out)."""
    out = []
    for row in by_condition.to_dict("records"):
        mean = _number(row.get("n_items_change_mean"))
        if mean is None:
            continue
        variance = _number(row.get("n_items_change_variance"))
        n = _number(row.get("n_generations"))
        zeroed = _number(row.get("pairs_zeroed_mean"))
        out.append(
            ConditionBar(
                condition=str(row.get("condition")),
                template=str(row.get("template")),
                change_mean=mean,
                change_sd=math.sqrt(variance) if variance is not None and variance >= 0 else None,
                n_generations=int(n) if n is not None else None,
                ablated_nothing=row.get("method") == "sae ablation" and zeroed == 0,
            )
        )
    return out
