"""Feature-level views of an attributed batch: dataset rankings and the expression matrix."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from lister_tui.core.engine.generation import ListSample
from lister_tui.core.errors import ListerError
from lister_tui.core.study.experiment import SAEListAttribution


def pairs_table(attr: SAEListAttribution, samples: Sequence[ListSample], token_str, k: int | None = None) -> pd.DataFrame:
    """Every kept (sample, position, feature) pair, ranked within its sample (rank 1 = strongest)."""
    rows = []
    for i, pairs in enumerate(attr.top):
        for rank, p in enumerate(pairs[:k] if k else pairs, start=1):
            rows.append(
                {
                    "sae": attr.sae_id,
                    "sample": i,
                    "template": samples[i].spec.template,
                    "topic": samples[i].spec.topic,
                    "rank": rank,
                    "position": p.pos,
                    "token": token_str(samples[i].tokens[p.pos]),
                    "feature": p.feature,
                    "attribution": p.attribution,
                    "activation": p.activation,
                    "error_share": attr.error_share(i),
                }
            )
    return pd.DataFrame(rows)


def dataset_ranking(attr: SAEListAttribution, samples: Sequence[ListSample], token_str, k: int = 5) -> pd.DataFrame:
    """Features ranked over the batch by the sum of their attribution in each sample's top-k pairs.

    Columns: feature, attribution_sum, attribution_mean (over its top-k appearances),
    count_in_top_k, samples (distinct samples), top_token (the token it most often sits on).
    """
    if k <= 0:
        raise ListerError(f"k must be >= 1, got {k}")
    pairs = pairs_table(attr, samples, token_str, k)
    if pairs.empty:
        return pd.DataFrame(columns=["feature", "attribution_sum", "attribution_mean", "count_in_top_k", "samples", "top_token"])
    grouped = pairs.groupby("feature")
    out = pd.DataFrame(
        {
            "attribution_sum": grouped["attribution"].sum(),
            "attribution_mean": grouped["attribution"].mean(),
            "count_in_top_k": grouped.size(),
            "samples": grouped["sample"].nunique(),
            "top_token": grouped["token"].agg(lambda s: Counter(s).most_common(1)[0][0]),
        }
    ).reset_index()
    out.insert(0, "sae", attr.sae_id)
    return out.sort_values(["attribution_sum", "feature"], ascending=[False, True], ignore_index=True)


@dataclass(frozen=True)
class ExpressionMatrix:
    """Features x samples of max activation, rows and columns in clustered order."""

    sae_id: str
    features: np.ndarray  # [n_features] feature ids, in row order
    samples: np.ndarray  # [n_samples] sample indices, in column order
    values: np.ndarray  # [n_features, n_samples]
    topics: list[str]  # topic of each column

    def per_topic(self) -> pd.DataFrame:
        """Mean activation of each feature (rows, in order) per topic (columns)."""
        frame = pd.DataFrame(self.values, index=self.features, columns=self.topics)
        return frame.T.groupby(level=0, sort=False).mean().T


def _cluster_order(matrix: np.ndarray) -> np.ndarray:
    """Leaf order of average-linkage clustering on correlation distance (stable for ties)."""
    if matrix.shape[0] < 3:
        return np.arange(matrix.shape[0])
    from scipy.cluster.hierarchy import leaves_list, linkage

    data = matrix.astype(np.float64)
    # constant rows have no correlation: jitter-free fallback to euclidean on them
    if np.any(data.std(axis=1) == 0):
        return leaves_list(linkage(data, method="average", metric="euclidean"))
    return leaves_list(linkage(data, method="average", metric="correlation"))


def expression_matrix(
    attr: SAEListAttribution, samples: Sequence[ListSample], top_n: int = 300, cluster: bool = True
) -> ExpressionMatrix:
    """The study's feature expression matrix for the ``top_n`` features by summed attribution."""
    if top_n <= 0:
        raise ListerError(f"top_n must be >= 1, got {top_n}")
    weight = np.zeros(attr.d_sae)
    for pairs in attr.top:
        for p in pairs:
            weight[p.feature] += max(p.attribution, 0.0)
    order = np.argsort(-weight, kind="stable")
    chosen = order[: min(top_n, int((weight > 0).sum()) or top_n)]
    values = attr.max_activation[:, chosen].T  # [n_features, n_samples]
    rows = np.arange(len(chosen))
    cols = np.arange(values.shape[1])
    if cluster:
        rows = _cluster_order(values)
        cols = _cluster_order(values.T)
    return ExpressionMatrix(
        attr.sae_id,
        chosen[rows],
        cols,
        values[rows][:, cols],
        [samples[c].spec.topic for c in cols],
    )


# --- density-aware ranking ---------------------------------------------------------------

DEFAULT_MAX_DENSITY = 0.01  # a feature firing on more than 1% of the corpus's tokens is "dense"
DENSITY_MODES = ("flag", "downweight")


def feature_densities(parts) -> np.ndarray:
    """Each feature's density over a corpus (share of its counted tokens, BOS excluded, where it
    fires): the card's ``density`` for every feature at once. ``parts``: one
    :class:`~lister_tui.core.study.corpus.SparseActivations` per corpus part, all of one SAE."""
    parts = list(parts)
    if not parts:
        raise ListerError("no corpus activations given; run the corpus pass of the SAE first")
    firing = sum(np.diff(p.indptr).astype(np.int64) for p in parts)
    counted = sum(int(p.n_counted) for p in parts)
    return firing / counted if counted else np.zeros(parts[0].d_sae)


def feature_maxima(parts) -> np.ndarray:
    """Each feature's largest activation over a corpus (0 where it never fires): the card's
    ``max_activation`` for every feature at once. ``parts`` as for :func:`feature_densities`."""
    parts = list(parts)
    if not parts:
        raise ListerError("no corpus activations given; run the corpus pass of the SAE first")
    out = np.zeros(parts[0].d_sae, dtype=np.float64)
    for p in parts:
        counts = np.diff(p.indptr)
        firing = counts > 0
        if firing.any():  # segments of the firing features, in order: reduceat's ends are the next starts
            out[firing] = np.maximum(out[firing], np.maximum.reduceat(p.values.astype(np.float64), p.indptr[:-1][firing]))
    return out


def density_aware(ranking: pd.DataFrame, density: np.ndarray, *, max_density: float = DEFAULT_MAX_DENSITY, mode: str = "flag", score: str = "attribution_sum") -> pd.DataFrame:
    """A ranking with each feature's ``density`` and ``dense`` (density > ``max_density``) added.

    ``mode="flag"`` keeps the order; ``"downweight"`` re-ranks by ``score_density_adjusted`` =
    score × min(1, max_density / density): a feature that fires on every token stops outranking
    a specific one by activation or attribution alone.
    """
    if mode not in DENSITY_MODES:
        raise ListerError(f"unknown density mode {mode!r}; valid: {', '.join(DENSITY_MODES)}")
    if isinstance(max_density, bool) or not isinstance(max_density, (int, float)) or not 0 < max_density <= 1:
        raise ListerError(f"max density must be a share in (0, 1], got {max_density!r}")
    out = ranking.copy()
    d = np.asarray(density, dtype=np.float64)[out["feature"].to_numpy(dtype=np.int64)] if len(out) else np.zeros(0)
    out["density"] = d
    out["dense"] = d > max_density
    weight = np.minimum(1.0, max_density / np.maximum(d, 1e-12))
    out["score_density_adjusted"] = out[score].to_numpy(dtype=np.float64) * weight
    if mode == "downweight":
        out = out.sort_values(["score_density_adjusted", "feature"], ascending=[False, True], ignore_index=True)
    return out
