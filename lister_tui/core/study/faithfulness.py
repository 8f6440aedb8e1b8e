"""How faithful is the attribution? Its linear estimate beside a real ablation.

Attribution is first order, and JumpReLU thresholds make it crude (REFERENCE §4).
For the top pairs of each sample (the ones the study zeroes), the estimate of the
metric's change when a feature is zeroed at its position is ``−attribution``; the
measured change is the metric at the attribution position in a real forward pass
with that feature zeroed (:func:`experiment.metric_under_ablation`), minus the
metric without it. The same is done for the top-k pairs zeroed together.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from lister_tui.core.engine.ablation import Ablation, FeatureAblation
from lister_tui.core.engine.generation import ListSample
from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.study.experiment import SAEListAttribution, metric_under_ablation, top_k_ablation

SINGLE = "single feature"
TOGETHER = "top-k together"


def sample_faithfulness(
    loaded: LoadedModel, attr: SAEListAttribution, samples: Sequence[ListSample], i: int, k: int
) -> list[dict]:
    """Rows for sample ``i``: each of its top-``k`` pairs alone, then all of them together."""
    sample = samples[i]
    pos = attr.attribution_pos[i]
    together = top_k_ablation(attr, i, k)  # the study's choice of pairs, in rank order
    by_key = {(p.pos, p.feature): p for p in attr.top[i]}
    pairs = [by_key[(f.positions[0], f.feature)] for f in together.features]
    if not pairs:
        return []
    # measured against the same forward pass without ablation (not the attribution
    # pass's metric), so that numerical differences between the two don't count
    plain = metric_under_ablation(loaded, sample.tokens, Ablation(), pos)
    common = {
        "sae": attr.sae_id,
        "template": sample.spec.template,
        "topic": sample.spec.topic,
        "sample": sample.spec.sample,
        "attribution_position": pos,
        "metric_without_ablation": plain,
    }
    rows = []
    for rank, p in enumerate(pairs, start=1):
        single = Ablation((FeatureAblation(attr.sae_id, p.feature, (p.pos,)),))
        rows.append(
            {
                **common,
                "scope": SINGLE,
                "rank": rank,
                "position": p.pos,
                "feature": p.feature,
                "activation": p.activation,
                "attribution": p.attribution,
                "estimated_metric_change": -p.attribution,
                "measured_metric_change": metric_under_ablation(loaded, sample.tokens, single, pos) - plain,
            }
        )
    rows.append(
        {
            **common,
            "scope": TOGETHER,
            "rank": len(pairs),
            "position": None,
            "feature": None,
            "activation": None,
            "attribution": sum(p.attribution for p in pairs),
            "estimated_metric_change": -sum(p.attribution for p in pairs),
            "measured_metric_change": metric_under_ablation(loaded, sample.tokens, together, pos) - plain,
        }
    )
    return rows


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation; NaN with fewer than 2 points or a constant series."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def correlation_per_sae(rows: pd.DataFrame) -> pd.DataFrame:
    """Per SAE: how well the estimate tracks the measured change, for single features and top-k sets."""
    columns = [
        "sae",
        "features_checked",
        "pearson_r_single_feature",
        "sign_agreement_single_feature",
        "estimated_change_mean_single_feature",
        "measured_change_mean_single_feature",
        "samples_checked",
        "pearson_r_top_k_together",
        "estimated_change_mean_top_k_together",
        "measured_change_mean_top_k_together",
    ]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    out = []
    for sae, group in rows.groupby("sae", sort=False):
        single = group[group["scope"] == SINGLE]
        joint = group[group["scope"] == TOGETHER]
        est, meas = single["estimated_metric_change"], single["measured_metric_change"]
        out.append(
            {
                "sae": sae,
                "features_checked": len(single),
                "pearson_r_single_feature": pearson(est, meas),
                "sign_agreement_single_feature": float((np.sign(est) == np.sign(meas)).mean()) if len(single) else float("nan"),
                "estimated_change_mean_single_feature": float(est.mean()),
                "measured_change_mean_single_feature": float(meas.mean()),
                "samples_checked": len(joint),
                "pearson_r_top_k_together": pearson(joint["estimated_metric_change"], joint["measured_metric_change"]),
                "estimated_change_mean_top_k_together": float(joint["estimated_metric_change"].mean()),
                "measured_change_mean_top_k_together": float(joint["measured_metric_change"].mean()),
            }
        )
    return pd.DataFrame(out, columns=columns)
