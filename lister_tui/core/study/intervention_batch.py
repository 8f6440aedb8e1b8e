"""The batch experiment: an intervention set over many lists × seeds, against the base and controls.

Each unit is one chosen list (its template and topic) drawn with one seed. Every
condition regenerates every unit with that unit's seed (common random numbers), so a
unit's difference "condition − base" comes from the condition, not from sampling:

- ``intervened``: the user's :class:`InterventionSet`;
- ``random control``: the same kinds, values and positions on as many random features
  of the same SAEs, drawn (seeded) from the features that fire on the chosen lists,
  excluding the chosen features and the lists' top attributions;
- optionally the study's baselines (:mod:`baselines`: banning the end token(s), the
  long − short steering vector).

Per template and condition it reports n and, for Δitems, Δtokens, Δmetric (the
condition's direct effect on logit(blank) − logit("\\n") at the base list's attribution
position, one forward pass each with and without) and Δend (reached the end token,
0/1), the paired mean, 95% interval and sign-flip p-value (:mod:`stats`).

Units run in chunks, each chunk batched across units, so partial results stream out
(``on_partial``); the first chunk is small (a result soon), later ones grow (:func:`chunk_spans`). Everything is seeded: running the same settings again gives the same
tokens and the same figures (:func:`replay` checks it).

Long because the experiment's settings, its saved form, the random control, the run and
its replay belong together: each reads the others' fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from lister_tui.core.engine.generation import ListSample, intervention_saes, metric_curve_under, sample_lists
from lister_tui.core.engine.interventions import Intervention, InterventionSet, check_value
from lister_tui.core.engine.lazy import torch  # imported on first use: a session's experiments are read without it
from lister_tui.core.errors import Cancelled, ListerError
from lister_tui.core.limits import MAX_EXPERIMENT_SEEDS
from lister_tui.core.study.settings import SAMPLING_PRESETS
from lister_tui.core.study.stats import BOOTSTRAP, CI_METHODS, DEFAULT_RESAMPLES, PairedSummary, paired_summary

if TYPE_CHECKING:
    from lister_tui.core.engine.loading import LoadedModel

BASE = "base"
INTERVENED = "intervened"
CONTROL = "random control"
STARTS = ("prompt", "attribution")
MEASURES: tuple[str, ...] = ("n_items_change", "n_tokens_change", "metric_change", "reached_end_change")
MEASURE_LABELS = {
    "n_items_change": "Δitems",
    "n_tokens_change": "Δtokens",
    "metric_change": "Δmetric",
    "reached_end_change": "Δend",
}
MAX_SEEDS = MAX_EXPERIMENT_SEEDS  # (core/limits)
CONTROL_EXCLUDE_TOP = 10  # per list and SAE: its strongest attributed features are never control features
SEED_STRIDE = 7919  # seed of unit j of a list: its own seed + j × this (j = 0 is the list itself)


def unit_seed(seed: int, j: int) -> int:
    return (int(seed) + SEED_STRIDE * j) % (2**31 - 1)


@dataclass(frozen=True)
class ExperimentSettings:
    """Everything that decides an experiment's numbers (saved with it; replayable)."""

    interventions: InterventionSet
    n_seeds: int = 4
    preset: str = "code"
    start: str = "prompt"  # regenerate from the prompt, or from each list's attribution position
    control: bool = True
    control_seed: int = 0
    baselines: bool = False
    ci_method: str = BOOTSTRAP
    resamples: int = DEFAULT_RESAMPLES
    stats_seed: int = 0
    chunk: int = 4  # units in the first streamed chunk (later ones grow: chunk_spans)

    def validate(self) -> None:
        if self.interventions.is_empty():
            raise ListerError("the intervention set is empty; pick at least one feature to intervene on")
        if isinstance(self.n_seeds, bool) or not isinstance(self.n_seeds, int) or not 1 <= self.n_seeds <= MAX_SEEDS:
            raise ListerError(f"seeds per list must be an integer in [1, {MAX_SEEDS}], got {self.n_seeds!r}")
        if self.preset not in SAMPLING_PRESETS:
            raise ListerError(f"unknown sampling preset {self.preset!r}; valid: {', '.join(SAMPLING_PRESETS)}")
        if self.start not in STARTS:
            raise ListerError(f"unknown start {self.start!r}; valid: {', '.join(STARTS)}")
        if self.ci_method not in CI_METHODS:
            raise ListerError(f"unknown interval method {self.ci_method!r}; valid: {', '.join(CI_METHODS)}")
        if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1:
            raise ListerError(f"chunk must be an integer >= 1, got {self.chunk!r}")
        for n, item in enumerate(self.interventions.interventions):
            check_value(item.kind, item.value, f"intervention {n + 1}")

    def to_dict(self) -> dict:
        return {
            "interventions": self.interventions.to_dict(),
            "n_seeds": self.n_seeds,
            "preset": self.preset,
            "start": self.start,
            "control": self.control,
            "control_seed": self.control_seed,
            "baselines": self.baselines,
            "ci_method": self.ci_method,
            "resamples": self.resamples,
            "stats_seed": self.stats_seed,
            "chunk": self.chunk,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> ExperimentSettings:
        iv = d["interventions"]
        items = tuple(
            Intervention(
                str(i["site"]), int(i["feature"]), str(i["kind"]), float(i["value"]),
                i["position"] if isinstance(i["position"], str) else int(i["position"]), bool(i.get("relative", False)),
            )
            for i in iv["interventions"]
        )
        rest = {k: d[k] for k in ("n_seeds", "preset", "start", "control", "control_seed", "baselines", "ci_method", "resamples", "stats_seed", "chunk") if k in d}
        return cls(InterventionSet(items, str(iv.get("name", ""))), **rest)


@dataclass
class BatchExperiment:
    """An experiment's units (one row per unit and condition) and what they add up to."""

    settings: ExperimentSettings
    sample_keys: list[str]
    conditions: dict[str, dict] = field(default_factory=dict)  # name -> {"kind", "interventions" | "details"}
    rows: list[dict] = field(default_factory=list)
    units_total: int = 0
    done: bool = False

    @property
    def units_done(self) -> int:
        return sum(1 for r in self.rows if r["condition"] == BASE)

    def summary(self) -> list[dict]:
        """Per template (and "all") and condition: n and each measure's mean, interval, p and n."""
        return summarise(self.rows, self.settings)

    def to_dict(self) -> dict:
        return {
            "settings": self.settings.to_dict(),
            "sample_keys": list(self.sample_keys),
            "conditions": self.conditions,
            "rows": self.rows,
            "units_total": self.units_total,
            "done": self.done,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> BatchExperiment:
        return cls(
            ExperimentSettings.from_dict(d["settings"]),
            list(d["sample_keys"]),
            dict(d.get("conditions", {})),
            [dict(r) for r in d["rows"]],
            int(d.get("units_total", 0)),
            bool(d.get("done", False)),
        )


def _differences(rows: Sequence[dict], condition: str) -> dict[str, list[float]]:
    base = {(r["sample_key"], r["seed"]): r for r in rows if r["condition"] == BASE}
    out: dict[str, list[float]] = {m: [] for m in MEASURES}
    for r in rows:
        if r["condition"] != condition or (r["sample_key"], r["seed"]) not in base:
            continue
        b = base[(r["sample_key"], r["seed"])]
        out["n_items_change"].append(r["n_items"] - b["n_items"])
        out["n_tokens_change"].append(r["n_tokens"] - b["n_tokens"])
        out["reached_end_change"].append(float(r["reached_end"]) - float(b["reached_end"]))
        under, plain = r.get("metric_under"), b.get("metric_plain")
        out["metric_change"].append(math.nan if under is None or plain is None else under - plain)
    return out


def summarise(rows: Sequence[dict], settings: ExperimentSettings) -> list[dict]:
    """The summary table (also what a script computes from saved rows)."""
    templates = list(dict.fromkeys(r["template"] for r in rows))
    conditions = [c for c in dict.fromkeys(r["condition"] for r in rows) if c != BASE]
    out = []
    for template in templates + (["all"] if len(templates) > 1 else []):
        subset = [r for r in rows if template == "all" or r["template"] == template]
        base_rows = [r for r in subset if r["condition"] == BASE]
        for condition in conditions:
            diffs = _differences(subset, condition)
            row = {"template": template, "condition": condition, "n": len(diffs["n_items_change"])}
            row["n_items_base_mean"] = float(np.mean([r["n_items"] for r in base_rows])) if base_rows else math.nan
            row["reached_end_base_rate"] = float(np.mean([r["reached_end"] for r in base_rows])) if base_rows else math.nan
            for m in MEASURES:
                s = paired_summary(diffs[m], method=settings.ci_method, resamples=settings.resamples, seed=settings.stats_seed)
                row.update({f"{m}_n": s.n, f"{m}_mean": s.mean, f"{m}_ci_low": s.ci_low, f"{m}_ci_high": s.ci_high, f"{m}_p": s.p_value, f"{m}_sd": s.sd})
            row["ci_method"] = settings.ci_method
            out.append(row)
    return out


def measure(row: Mapping, m: str) -> PairedSummary:
    """One measure of a summary row as a :class:`PairedSummary`."""
    return PairedSummary(
        int(row[f"{m}_n"]), row[f"{m}_mean"], row[f"{m}_ci_low"], row[f"{m}_ci_high"], row[f"{m}_p"], row[f"{m}_sd"],
        row.get("ci_method", BOOTSTRAP), int(row[f"{m}_n"]) <= 16,
    )


# --- the random control -------------------------------------------------------------


def _firing_features(loaded: LoadedModel, samples: Sequence[ListSample], sae_id: str) -> np.ndarray:
    """Features of ``sae_id`` that fire (> 0) somewhere on the lists (BOS excluded): sorted ids."""
    sae = loaded.load_sae(sae_id, cache=True)
    hook = sae.cfg.metadata.hook_name
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    with torch.inference_mode():
        for s in samples:
            _, cache = loaded.model.run_with_cache(torch.tensor([list(s.tokens)], device=loaded.device), names_filter=hook)
            acts = sae.encode(cache[hook].to(sae.device, sae.dtype))[0, 1:]
            fired |= (acts > 0).any(dim=0).cpu()
    return torch.nonzero(fired).flatten().numpy()


def top_attributed(loaded: LoadedModel, samples: Sequence[ListSample], sae_ids: Sequence[str], k: int = CONTROL_EXCLUDE_TOP) -> set[tuple[str, int]]:
    """(SAE, feature) of each list's ``k`` strongest attributed pairs (activation × gradient); a
    transcoder site's (``tc_L``) by :func:`transcoder_attributions`."""
    from lister_tui.core.engine.transcoders import is_transcoder_site
    from lister_tui.core.study.experiment import attributable, attribute_lists

    usable = [samples[i] for i in attributable(samples)]
    if not usable:
        return set()
    plain = [i for i in sae_ids if not is_transcoder_site(i)]
    out: set[tuple[str, int]] = set()
    if plain:
        attrs = attribute_lists(loaded, usable, plain, keep=k)
        out |= {(sae_id, p.feature) for sae_id, a in attrs.items() for pairs in a.top for p in pairs[:k]}
    tc = [i for i in sae_ids if is_transcoder_site(i)]
    for s in usable if tc else ():
        for sae_id, scores in transcoder_attributions(loaded, s, tc).items():
            flat = scores.abs().flatten()
            top = flat.topk(min(k, int((flat > 0).sum()))).indices
            out |= {(sae_id, int(j) % scores.shape[1]) for j in top}
    return out


def transcoder_attributions(loaded: LoadedModel, sample: ListSample, sae_ids: Sequence[str]) -> dict[str, torch.Tensor]:
    """Per transcoder site: [pos, d_sae] activation × (gradient of the metric at the attribution position
    at the transcoder's output · the feature's decoder row), BOS excluded (zero); one forward and backward."""
    from lister_tui.core.engine.attribution import metric_logit_diff

    pos = sample.structure.attribution_pos
    tcs = {i: loaded.load_sae(i, cache=True) for i in sae_ids}
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    hooks = []
    for sae_id, tc in tcs.items():
        meta = tc.cfg.metadata

        def keep(act, hook, sae_id=sae_id):
            inputs[sae_id] = act.detach()
            return act

        def open_(act, hook, sae_id=sae_id):  # act + 0: the gradient at the output, nothing cut
            outputs[sae_id] = torch.zeros_like(act, requires_grad=True)
            return act + outputs[sae_id]

        hooks += [(meta.hook_name, keep), (meta.hook_name_out, open_)]
    tokens = torch.tensor([list(sample.tokens[: pos + 1])], device=loaded.device)
    with torch.enable_grad(), loaded.model.hooks(fwd_hooks=hooks):
        logits = loaded.model(tokens)
        metric_logit_diff(logits, loaded.ids.blank, loaded.ids.newline)[0, pos].backward()
    out = {}
    with torch.no_grad():
        for sae_id, tc in tcs.items():
            acts = tc.encode(inputs[sae_id].to(tc.device, tc.dtype))[0]  # [pos, d_sae]
            grad = outputs[sae_id].grad[0].to(tc.dtype) @ tc.W_dec.T  # [pos, d_sae]
            scores = (acts * grad).float().cpu()
            scores[0] = 0.0
            out[sae_id] = scores
    return out


def random_control(
    loaded: LoadedModel,
    samples: Sequence[ListSample],
    interventions: InterventionSet,
    *,
    seed: int = 0,
    exclude: set[tuple[str, int]] | None = None,
) -> InterventionSet:
    """The same interventions on as many random firing features of the same SAEs, outside the chosen
    features and ``exclude`` (None: the lists' top attributions); a seeded draw."""
    if exclude is None:
        exclude = top_attributed(loaded, samples, interventions.sae_ids())
    rng = np.random.default_rng(seed)
    mapping: dict[tuple[str, int], int] = {}
    for sae_id in interventions.sae_ids():
        chosen = list(dict.fromkeys(i.feature for i in interventions.interventions if i.sae_id == sae_id))
        pool = [int(f) for f in _firing_features(loaded, samples, sae_id) if f not in chosen and (sae_id, int(f)) not in exclude]
        if len(pool) < len(chosen):
            d_sae = loaded.load_sae(sae_id, cache=True).cfg.d_sae
            pool = [f for f in range(d_sae) if f not in chosen and (sae_id, f) not in exclude]
        if len(pool) < len(chosen):
            raise ListerError(f"{sae_id} has too few features outside the chosen and top-attributed ones for a random control")
        picked = rng.choice(pool, size=len(chosen), replace=False)
        mapping.update({(sae_id, f): int(p) for f, p in zip(chosen, picked)})
    items = tuple(replace(i, feature=mapping[(i.sae_id, i.feature)]) for i in interventions.interventions)
    return InterventionSet(items, "random control")


# --- running it ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Unit:
    sample_key: str
    sample: ListSample
    seed: int
    j: int


def _units(keys: Sequence[str], samples: Sequence[ListSample], n_seeds: int, start: str) -> list[_Unit]:
    out = []
    for key, s in zip(keys, samples):
        if start == "attribution" and s.structure.attribution_pos is None:
            continue  # no complete item: nothing to regenerate from
        out += [_Unit(key, s, unit_seed(s.spec.seed, j), j) for j in range(n_seeds)]
    return out


def _row(unit: _Unit, condition: str, out: ListSample, metric_plain, metric_under) -> dict:
    return {
        "sample_key": unit.sample_key,
        "template": unit.sample.spec.template,
        "topic": unit.sample.spec.topic,
        "seed": unit.seed,
        "seed_index": unit.j,
        "condition": condition,
        "n_items": int(out.metrics.n_items),
        "n_tokens": int(out.metrics.n_tokens),
        "reached_end": bool(out.metrics.reached_end),
        "metric_plain": metric_plain,
        "metric_under": metric_under,
        "tokens": list(out.tokens),
    }


def _metric_pair(loaded: LoadedModel, base: ListSample, iset: InterventionSet | None, plain: float | None) -> float | None:
    pos = base.structure.attribution_pos
    if pos is None or iset is None:
        return None
    return float(metric_curve_under(loaded, base.tokens[: pos + 1], iset, base.prompt_len)[pos])


def run_experiment(
    loaded: LoadedModel,
    samples: Sequence[ListSample],
    settings: ExperimentSettings,
    *,
    keys: Sequence[str] | None = None,
    exclude: set[tuple[str, int]] | None = None,
    on_partial: Callable[[BatchExperiment], bool | None] | None = None,
    batched: bool = True,
) -> BatchExperiment:
    """Run ``settings`` over ``samples`` × ``settings.n_seeds`` seeds.

    ``keys`` name the samples (default: template/topic/index@seed). ``exclude`` are
    features the random control never draws (None: the lists' top attributions).
    ``on_partial`` sees the experiment after every chunk (return True to cancel:
    :class:`Cancelled`). ``batched=False`` regenerates one list at a time (the bench's
    reference; the same tokens).
    """
    settings.validate()
    if not samples:
        raise ListerError("no lists to run the experiment on; generate or pick some first")
    intervention_saes(loaded, settings.interventions)  # unknown site / feature: refused before any sampling
    keys = list(keys) if keys is not None else [f"{s.spec.key}@{s.spec.seed}" for s in samples]
    sampling = SAMPLING_PRESETS[settings.preset]
    units = _units(keys, samples, settings.n_seeds, settings.start)
    if not units:
        raise ListerError("none of the lists has a complete item to regenerate from; start from the prompt instead")
    exp = BatchExperiment(settings, keys, units_total=len(units))
    conditions: list[tuple[str, InterventionSet | None, dict]] = [(INTERVENED, settings.interventions, {})]
    exp.conditions[INTERVENED] = {"kind": "interventions", "interventions": settings.interventions.to_dict()}
    if settings.control:
        control = random_control(loaded, samples, settings.interventions, seed=settings.control_seed, exclude=exclude)
        conditions.append((CONTROL, control, {}))
        exp.conditions[CONTROL] = {"kind": "interventions", "interventions": control.to_dict()}
    if settings.baselines:
        from lister_tui.core.study.baselines import restricted_baselines, steering_baseline

        layer = min([s.layer for s in loaded.entry.sites if s.kind == "res"] or [0])
        topics = list(dict.fromkeys(s.spec.topic for s in samples))
        for b in [*restricted_baselines(loaded), steering_baseline(loaded, layer, 8.0, topics)]:
            conditions.append((b.name, None, {"banned_ids": b.banned_ids, "hooks": b.hooks}))
            exp.conditions[b.name] = {"kind": b.method, "details": b.details, "description": b.description}

    def sample(chunk: list[_Unit], iset: InterventionSet | None, extra: dict) -> list[ListSample]:
        specs = [replace(u.sample.spec, seed=u.seed) for u in chunk]
        prefixes = None if settings.start == "prompt" else [list(u.sample.tokens[: u.sample.structure.attribution_pos]) for u in chunk]
        kwargs = dict(interventions=iset, banned_ids=extra.get("banned_ids", ()), hooks=extra.get("hooks", ()))
        if batched:
            return sample_lists(loaded, specs, sampling, prefixes=prefixes, **kwargs)
        return [
            sample_lists(loaded, [spec], sampling, prefixes=None if prefixes is None else [prefixes[k]], **kwargs)[0]
            for k, spec in enumerate(specs)
        ]

    for start, size in chunk_spans(len(units), settings.chunk):
        chunk = units[start : start + size]
        bases = sample(chunk, None, {})
        plains = []
        for u, b in zip(chunk, bases):
            pos = b.structure.attribution_pos
            plain = None if pos is None else float(metric_curve_under(loaded, b.tokens[: pos + 1], None, b.prompt_len)[pos])
            plains.append(plain)
            exp.rows.append(_row(u, BASE, b, plain, plain))
        for name, iset, extra in conditions:
            outs = sample(chunk, iset, extra)
            for u, b, o, plain in zip(chunk, bases, outs, plains):
                exp.rows.append(_row(u, name, o, plain, _metric_pair(loaded, b, iset, plain)))
        if on_partial is not None and on_partial(exp):
            raise Cancelled(f"the experiment stopped after {exp.units_done} of {exp.units_total} units")
    exp.done = True
    if on_partial is not None:
        on_partial(exp)
    return exp


GROWTH = 4  # later chunks grow to this many times the first


def chunk_spans(n_units: int, first: int) -> list[tuple[int, int]]:
    """(start, size) of each chunk: ``first`` units, then twice as many each time up to
    GROWTH × ``first``: the first partial result comes soon, the later ones batch more.
    Chunking changes no number (every unit is seeded alone), only when results stream out."""
    spans, start, size = [], 0, first
    while start < n_units:
        spans.append((start, min(size, n_units - start)))
        start += size
        size = min(size * 2, first * GROWTH)
    return spans


def replay(loaded: LoadedModel, samples: Sequence[ListSample], saved: BatchExperiment) -> list[str]:
    """Run a saved experiment again; the differences from the saved rows (empty: bit-exact).

    The random control is replayed as saved (its features), not drawn again.
    """
    control = saved.conditions.get(CONTROL)
    exclude = None
    again = run_experiment(
        loaded, samples, replace(saved.settings, control=False), keys=saved.sample_keys, exclude=exclude
    )
    rows = list(again.rows)
    if control is not None:
        iset = ExperimentSettings.from_dict({"interventions": control["interventions"]}).interventions
        again_control = run_experiment(loaded, samples, replace(saved.settings, interventions=iset, control=False), keys=saved.sample_keys)
        rows += [dict(r, condition=CONTROL) for r in again_control.rows if r["condition"] == INTERVENED]
    order = {c: i for i, c in enumerate([BASE, INTERVENED, CONTROL])}
    key = lambda r: (r["sample_key"], r["seed"], order.get(r["condition"], 9))  # noqa: E731
    saved_rows = sorted((r for r in saved.rows if r["condition"] in order), key=key)
    rows = sorted(rows, key=key)
    problems = []
    if len(rows) != len(saved_rows):
        problems.append(f"{len(saved_rows)} rows saved, {len(rows)} now")
    for a, b in zip(saved_rows, rows):
        if a != b:
            diff = sorted(k for k in a if a.get(k) != b.get(k))
            problems.append(f"{a['sample_key']} seed {a['seed']} {a['condition']}: {', '.join(diff)} differ")
    return problems


