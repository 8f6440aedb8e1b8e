"""The sweep's tables, from its per-generation rows (pandas).

A *condition* is one way of regenerating a list from its attribution position: an
SAE's top-k ablation (``ablate res_0``) or a baseline (``ban end``, ``steer layer 0
x8``). Its *change* on a sample is the condition's value minus the base's (the
unablated regeneration from the same prefix and seed).

- ``generations``: one row per sample and condition, the base included;
- ``by_condition_and_topic``: per condition and topic, means of the base and of the
  condition, and the mean and variance (across the topic's samples, ddof 1) of the change;
- ``by_condition``: the study's table: per condition, the per-topic values averaged
  across topics (``…_change_mean`` and ``…_change_variance``, as in the study's
  diversity_mean / diversity_variance / n_items_mean / n_items_variance);
- ``by_topic``: per topic, the SAE ablations' per-topic changes averaged across SAEs;
- ``faithfulness_pairs`` / ``faithfulness_by_sae``: attribution estimate vs the
  measured metric change (see :mod:`lister_tui.core.study.faithfulness`).
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import pandas as pd

from lister_tui.core.engine.listing import topic_diversity
from lister_tui.core.study.columns import EMPTY_ITEMS_OLD, ITEM_RULE, PLAIN_METRIC, PLAIN_METRIC_DESCRIPTION
from lister_tui.core.study.faithfulness import correlation_per_sae
from lister_tui.core.study.stats import t_interval

BASE = "base"
SAE_ABLATION = "sae ablation"
INTERVENTIONS = "interventions"  # a named intervention set (--interventions FILE)
SAMPLE_KEYS = ["template", "topic", "sample"]
CONDITION_KEYS = ["condition", "method", "sae"]
# list metrics whose change (condition − base) is aggregated
METRICS = ["n_items", "diversity", "n_tokens", "repeated_items", "filler_count", PLAIN_METRIC]

GENERATION_COLUMNS = [
    "condition",
    "method",
    "sae",
    "template",
    "template_length",
    "topic",
    "sample",
    "seed",
    "regenerated_from_position",
    "ablated_pairs",
    "n_items",
    "n_tokens",
    "repeated_items",
    "diversity",
    "filler_count",
    "empty_items",
    "reached_end",
    PLAIN_METRIC,
    "items",
    "continuation",
]

FAITHFULNESS_COLUMNS = [
    "sae",
    "template",
    "topic",
    "sample",
    "scope",
    "rank",
    "position",
    "feature",
    "activation",
    "attribution",
    "estimated_metric_change",
    "measured_metric_change",
    "attribution_position",
    "metric_without_ablation",
]

TABLE_DESCRIPTIONS = {
    "by_condition": "Per condition (SAE ablation or baseline), averaged across topics: the study's table. "
    "*_change_mean: mean over topics of the topic's mean change (condition − base); "
    "*_change_variance: mean over topics of the change's variance across the topic's samples.",
    "by_condition_and_topic": "Per condition and topic: base and condition means, and the mean and variance "
    "(across the topic's samples, ddof 1) of the change (condition − base).",
    "by_topic": "Per topic: each SAE ablation's per-topic change, averaged across SAEs.",
    "generations": "One row per sample and condition (the base included): the regenerated list and its metrics.",
    "faithfulness_by_sae": "Per SAE: Pearson correlation of the attribution's linear estimate of the metric change "
    "with the change measured when the feature (or the top-k set) is really zeroed.",
    "faithfulness_pairs": "Per checked pair (and per top-k set): attribution estimate vs measured metric change.",
}

COLUMN_DESCRIPTIONS = {
    "condition": "how the list was regenerated: base, 'ablate <sae>' (top-k pairs zeroed), 'ban …', 'steer …' or an intervention set's name",
    "method": "none (base), sae ablation, interventions (a named set), restricted sampling or steering",
    "sae": "the ablated SAE (empty for the base and the baselines)",
    "template": "prompt template (the study's short, long, unspecified; a user template's name; free: a free-form prompt)",
    "template_length": "the template's length group (short, long, unspecified, neutral), to group user templates with the study's",
    "topic": "prompt topic",
    "sample": "sample number within the template and topic",
    "seed": "the sample's seed (base and every condition share it)",
    "regenerated_from_position": "token position the regeneration started from (the original list's attribution position)",
    "ablated_pairs": "zeroed pairs as feature@position, strongest first",
    "n_items": f"number of items: {ITEM_RULE}",
    "n_tokens": "generated tokens after the prompt, the stop token included",
    "repeated_items": "len(items) − len(set(items))",
    "diversity": "Shannon index of the generation's items (the study's code)",
    "filler_count": "filler blanks (a blank right before a line break)",
    "empty_items": f"marker lines with no text (e.g. a trailing '- ' before the end token): not items, counted here; {EMPTY_ITEMS_OLD}",
    "reached_end": "an end token was produced within the token cap",
    PLAIN_METRIC: PLAIN_METRIC_DESCRIPTION,
    "items": "the item names, as a JSON list (see n_items for what counts as an item)",
    "continuation": "the generated text after the prompt",
    "n_generations": "generations aggregated",
    "n": "paired generations (condition and base, same prefix and seed) behind every mean and interval of the row",
    "pairs_zeroed_mean": "(feature, position) pairs zeroed per generation, averaged; 0 for an SAE ablation means it "
    "ablated nothing (its changes are not a measured 'no effect')",
    "n_topics": "topics aggregated",
    "n_saes": "SAE ablations aggregated",
    "reached_end_base_rate": "share of base lists that reached the end token",
    "reached_end_rate": "share of the condition's lists that reached the end token",
    "topic_diversity_base": "Shannon index of all the topic's base items pooled (the post's diversity)",
    "topic_diversity": "Shannon index of all the topic's items under the condition, pooled",
    "topic_diversity_change": "topic_diversity − topic_diversity_base",
    "topic_diversity_change_mean": "topic_diversity_change averaged across topics (or SAEs)",
    "largest_n_items_change_sae": "the SAE whose ablation adds the most items on this topic",
    "largest_n_items_change": "that SAE's n_items_change_mean on this topic",
    "faithfulness_pearson_r": "Pearson r of estimated vs measured metric change, single features (faithfulness_by_sae)",
    "scope": "single feature: one pair zeroed; top-k together: the sample's top-k pairs zeroed at once",
    "rank": "rank of the pair in its sample (1 = strongest); for a top-k set, its size",
    "position": "token position of the pair",
    "feature": "SAE feature index",
    "activation": "the feature's activation at the position",
    "attribution": "activation × gradient of the metric (summed over the set for top-k together)",
    "estimated_metric_change": "linear estimate of the metric change when zeroed: −attribution",
    "measured_metric_change": "metric with the pair(s) zeroed in a real forward pass − metric without",
    "attribution_position": "position of the metric (the list's last item's last token)",
    "metric_without_ablation": "the metric at that position without ablation",
}


def describe(column: str) -> str:
    """A one-line description of a table column."""
    if column in COLUMN_DESCRIPTIONS:
        return COLUMN_DESCRIPTIONS[column]
    for m in METRICS:
        if column.startswith(m + "_"):
            what = COLUMN_DESCRIPTIONS[m]
            rest = column[len(m) + 1 :]
            return {
                "base_mean": f"mean of the base's {m} ({what})",
                "mean": f"mean of the condition's {m}",
                "change_mean": f"mean change of {m} (condition − base)",
                "change_variance": f"variance of the change of {m} across a topic's samples (ddof 1; averaged across topics per condition)",
                "change_ci_low": f"lower end of the 95% Student t interval of the mean change of {m}, over the row's n paired generations",
                "change_ci_high": f"upper end of the 95% Student t interval of the mean change of {m}, over the row's n paired generations",
                "change": f"{m} under the condition − {m} of the base",
            }.get(rest, column)
    return COLUMN_DESCRIPTIONS.get(column.split("_single_feature")[0].split("_top_k_together")[0], column.replace("_", " "))


def generations_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """The per-generation table with a fixed column order and types."""
    frame = pd.DataFrame(list(rows), columns=GENERATION_COLUMNS)
    frame["sae"] = frame["sae"].astype(object).where(frame["sae"].notna(), None)
    for column in ("sample", "seed", "n_items", "n_tokens", "repeated_items", "filler_count"):
        frame[column] = frame[column].astype("int64")
    frame["regenerated_from_position"] = frame["regenerated_from_position"].astype("Int64")
    frame["empty_items"] = frame["empty_items"].astype("Int64")  # missing (<NA>) in rows of older sweeps
    frame["reached_end"] = frame["reached_end"].astype(bool)
    for column in ("diversity", PLAIN_METRIC):
        frame[column] = frame[column].astype("float64")
    return frame


def _with_intervals(row: dict, changes: pd.DataFrame) -> None:
    """``n`` and, per metric, the 95% t interval of the mean change over ``changes``' rows (paired generations)."""
    row["n"] = len(changes)
    for m in METRICS:
        d = changes[f"{m}_change"].astype("float64").to_numpy()
        low, high = t_interval(d[np.isfinite(d)])
        row[f"{m}_change_ci_low"], row[f"{m}_change_ci_high"] = low, high


INTERVAL_COLUMNS = ["n"] + [f"{m}_change_{e}" for m in METRICS for e in ("ci_low", "ci_high")]


def paired_changes(generations: pd.DataFrame) -> pd.DataFrame:
    """Each non-base row beside its base (same template, topic, sample), with ``<metric>_change`` columns."""
    base = generations[generations["condition"] == BASE]
    rows = generations[generations["condition"] != BASE]
    keep = SAMPLE_KEYS + METRICS + ["reached_end", "items"]
    merged = rows.merge(base[keep], on=SAMPLE_KEYS, how="inner", suffixes=("", "_base"), validate="many_to_one")
    for m in METRICS:
        merged[f"{m}_change"] = merged[m].astype("float64") - merged[f"{m}_base"].astype("float64")
    return merged


def _pairs_zeroed(ablated_pairs: pd.Series) -> pd.Series:
    """How many (feature, position) pairs each generation zeroed (``ablated_pairs`` is "f@p f@p …")."""
    return ablated_pairs.fillna("").astype(str).str.split().str.len().astype("float64")


def conditions_that_zeroed_nothing(by_condition_frame: pd.DataFrame) -> list[str]:
    """SAE ablations whose rows zeroed no pair at all: their changes are not a measured "no effect"
    (e.g. at the last layer act×grad is exactly 0 before the attribution position, so the
    top-k pairs in the regeneration prefix are empty)."""
    if "pairs_zeroed_mean" not in by_condition_frame.columns:  # a sweep folder from before the column
        return []
    rows = by_condition_frame[(by_condition_frame["method"] == SAE_ABLATION) & (by_condition_frame["pairs_zeroed_mean"] == 0)]
    return list(dict.fromkeys(str(c) for c in rows["condition"]))


def _pooled_diversity(items_json: pd.Series) -> float:
    return topic_diversity(json.loads(s) for s in items_json)


def by_condition_and_topic(generations: pd.DataFrame) -> pd.DataFrame:
    """Per condition, template and topic: base and condition means, mean and variance of the change."""
    pairs = paired_changes(generations)
    keys = CONDITION_KEYS + ["template", "topic"]
    out = []
    for key, group in pairs.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, key))
        row["n_generations"] = len(group)
        row["pairs_zeroed_mean"] = _pairs_zeroed(group["ablated_pairs"]).mean()
        for m in METRICS:
            row[f"{m}_base_mean"] = group[f"{m}_base"].astype("float64").mean()
            row[f"{m}_mean"] = group[m].astype("float64").mean()
            row[f"{m}_change_mean"] = group[f"{m}_change"].mean()
            row[f"{m}_change_variance"] = group[f"{m}_change"].var(ddof=1)
        row["reached_end_base_rate"] = group["reached_end_base"].astype(float).mean()
        row["reached_end_rate"] = group["reached_end"].astype(float).mean()
        row["topic_diversity_base"] = _pooled_diversity(group["items_base"])
        row["topic_diversity"] = _pooled_diversity(group["items"])
        row["topic_diversity_change"] = row["topic_diversity"] - row["topic_diversity_base"]
        _with_intervals(row, group)
        out.append(row)
    columns = keys + ["n_generations", "pairs_zeroed_mean"]
    columns += [f"{m}_{s}" for m in METRICS for s in ("base_mean", "mean", "change_mean", "change_variance")]
    columns += ["reached_end_base_rate", "reached_end_rate", "topic_diversity_base", "topic_diversity", "topic_diversity_change"]
    columns += INTERVAL_COLUMNS
    return _fix_sae(pd.DataFrame(out, columns=columns))


def by_condition(per_topic: pd.DataFrame, faithfulness: pd.DataFrame | None = None, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The study's table: per condition and template, the per-topic values averaged across topics;
    with ``pairs`` (:func:`paired_changes`), ``n`` and each change's 95% t interval over the
    condition's paired generations (pooled across topics)."""
    keys = CONDITION_KEYS + ["template"]
    study = ["diversity_change_mean", "diversity_change_variance", "n_items_change_mean", "n_items_change_variance"]
    others = [f"{m}_{s}" for m in METRICS for s in ("change_mean", "change_variance") if f"{m}_{s}" not in study]
    means = [f"{m}_{s}" for m in ("n_items", "diversity") for s in ("base_mean", "mean")]
    rates = ["reached_end_base_rate", "reached_end_rate", "topic_diversity_change"]
    out = []
    for key, group in per_topic.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, key))
        row["n_topics"] = len(group)
        row["n_generations"] = int(group["n_generations"].sum())
        row["pairs_zeroed_mean"] = group["pairs_zeroed_mean"].mean()
        for column in study + others + means + rates:
            row[column if column != "topic_diversity_change" else "topic_diversity_change_mean"] = group[column].mean()
        if pairs is not None:
            mask = np.ones(len(pairs), dtype=bool)
            for k, v in zip(keys, key):
                mask &= (pairs[k].isna() if v is None or v != v else pairs[k] == v).to_numpy()
            _with_intervals(row, pairs[mask])
        out.append(row)
    columns = keys + ["n_topics", "n_generations", "pairs_zeroed_mean"] + study + means + others
    columns += ["reached_end_base_rate", "reached_end_rate", "topic_diversity_change_mean"]
    if pairs is not None:
        columns += INTERVAL_COLUMNS
    frame = pd.DataFrame(out, columns=columns)
    frame["faithfulness_pearson_r"] = np.nan
    if faithfulness is not None and not faithfulness.empty:
        r = dict(zip(faithfulness["sae"], faithfulness["pearson_r_single_feature"]))
        frame["faithfulness_pearson_r"] = [
            r.get(s, np.nan) if m == SAE_ABLATION else np.nan for s, m in zip(frame["sae"], frame["method"])
        ]
    return _fix_sae(frame)


def by_topic(per_topic: pd.DataFrame, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per template and topic: the SAE ablations' per-topic changes averaged across SAEs; with
    ``pairs``, ``n`` and 95% t intervals over the SAE ablations' paired generations pooled."""
    saes = per_topic[per_topic["method"] == SAE_ABLATION]
    keys = ["template", "topic"]
    changes = [f"{m}_change_mean" for m in METRICS]
    out = []
    for key, group in saes.groupby(keys, sort=False):
        row = dict(zip(keys, key))
        row["n_saes"] = len(group)
        row["n_items_base_mean"] = group["n_items_base_mean"].mean()
        for column in changes:
            row[column] = group[column].mean()
        row["reached_end_base_rate"] = group["reached_end_base_rate"].mean()
        row["reached_end_rate"] = group["reached_end_rate"].mean()
        row["topic_diversity_change_mean"] = group["topic_diversity_change"].mean()
        best = group.loc[group["n_items_change_mean"].idxmax()] if group["n_items_change_mean"].notna().any() else None
        row["largest_n_items_change_sae"] = None if best is None else best["sae"]
        row["largest_n_items_change"] = np.nan if best is None else best["n_items_change_mean"]
        if pairs is not None:
            ablated = pairs[(pairs["method"] == SAE_ABLATION) & (pairs["template"] == key[0]) & (pairs["topic"] == key[1])]
            _with_intervals(row, ablated)
        out.append(row)
    columns = keys + ["n_saes", "n_items_base_mean"] + changes
    columns += ["reached_end_base_rate", "reached_end_rate", "topic_diversity_change_mean"]
    columns += ["largest_n_items_change_sae", "largest_n_items_change"]
    if pairs is not None:
        columns += INTERVAL_COLUMNS
    return pd.DataFrame(out, columns=columns)


def faithfulness_frame(rows: Sequence[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=FAITHFULNESS_COLUMNS)
    for column in ("position", "feature"):
        frame[column] = frame[column].astype("Int64")
    return frame


def _fix_sae(frame: pd.DataFrame) -> pd.DataFrame:
    """Baseline rows have no SAE: keep None (not NaN) so that CSV and Parquet agree."""
    frame["sae"] = frame["sae"].astype(object).where(frame["sae"].notna(), None)
    return frame


def build_tables(generation_rows: Sequence[dict], faithfulness_rows: Sequence[dict] | None = None) -> dict[str, pd.DataFrame]:
    """Every table of a sweep, by name (the writer's file names), from its rows."""
    generations = generations_frame(generation_rows)
    per_topic = by_condition_and_topic(generations)
    tables = {}
    faithfulness = None
    if faithfulness_rows is not None:
        pairs = faithfulness_frame(faithfulness_rows)
        faithfulness = correlation_per_sae(pairs)
    pairs_frame = paired_changes(generations)
    tables["by_condition"] = by_condition(per_topic, faithfulness, pairs_frame)
    tables["by_condition_and_topic"] = per_topic
    tables["by_topic"] = by_topic(per_topic, pairs_frame)
    tables["generations"] = generations
    if faithfulness is not None:
        tables["faithfulness_by_sae"] = faithfulness
        tables["faithfulness_pairs"] = pairs
    return tables
