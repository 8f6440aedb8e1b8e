"""Paired statistics for interventions: the mean difference, its 95% interval and a p-value, with n.

Each unit (one list, one seed) is measured twice with common random numbers, base
and intervened, so the analysis works on the paired differences d_i:

- the **interval** is a seeded percentile bootstrap of the mean of d (``BOOTSTRAP``,
  2000 resamples by default: resample the differences with replacement, take the
  2.5th and 97.5th percentiles of the resampled means) or Student's t interval
  (``T``: mean ± t_{0.975, n−1} · sd/√n, the same as ``scipy.stats.ttest_rel``);
- the **p-value** is a two-sided paired sign-flip permutation test of mean(d) = 0:
  exact over all 2^n sign patterns when n ≤ 16, otherwise a seeded Monte Carlo over
  ``n_permutations`` patterns, counted as scipy does ((hits + 1) / (draws + 1)).

Everything is deterministic for a given seed: the same differences give the same
figures (a saved experiment replays bit-exact).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from lister_tui.core.errors import ListerError

BOOTSTRAP = "bootstrap"
T = "t"
CI_METHODS = (BOOTSTRAP, T)
DEFAULT_RESAMPLES = 2000
DEFAULT_PERMUTATIONS = 10_000
EXACT_UP_TO = 16  # 2^16 sign patterns: exact below this n


@dataclass(frozen=True)
class PairedSummary:
    """One measure's paired differences summarised: n beside every mean."""

    n: int
    mean: float  # mean of the differences (NaN when n = 0)
    ci_low: float
    ci_high: float
    p_value: float  # two-sided sign-flip permutation p-value (NaN when n = 0)
    sd: float  # sample standard deviation of the differences (ddof 1; NaN when n < 2)
    method: str  # how the interval was made: BOOTSTRAP or T
    exact_p: bool  # True: the p-value enumerates every sign pattern

    def to_dict(self) -> dict:
        return asdict(self)

    def contains_zero(self) -> bool:
        return self.ci_low <= 0.0 <= self.ci_high

    def text(self) -> str:
        """E.g. ``+1.25 [0.80, 1.70] n=24 p=0.0001`` (a literal string)."""
        if self.n == 0:
            return "n=0"
        return f"{self.mean:+.3g} [{self.ci_low:.3g}, {self.ci_high:.3g}] n={self.n} p={self.p_value:.2g}"


def _clean(differences: Sequence[float]) -> np.ndarray:
    d = np.asarray([float(x) for x in differences], dtype=np.float64)
    return d[np.isfinite(d)]


def t_interval(d: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Student's t interval of the mean of ``d`` (NaN for n < 2; a point when sd is 0)."""
    from scipy import stats  # imported late: scipy.stats takes a while to import

    n = len(d)
    if n < 2:
        return (math.nan, math.nan)
    mean, sem = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(n)
    if sem == 0.0:
        return (mean, mean)
    q = float(stats.t.ppf(0.5 + confidence / 2, n - 1))
    return (mean - q * sem, mean + q * sem)


def bootstrap_interval(d: np.ndarray, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``d`` from ``resamples`` seeded resamples."""
    n = len(d)
    if n == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // max(n, 1))  # bounded memory whatever n
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = d[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return (float(low), float(high))


def sign_flip_p(d: np.ndarray, *, permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0) -> tuple[float, bool]:
    """Two-sided paired sign-flip permutation p-value of mean(d) = 0, and whether it is exact.

    As ``scipy.stats.permutation_test(..., permutation_type="samples")`` on the pairs:
    p = min(1, 2·min(P(T ≤ t), P(T ≥ t))) over the sign patterns, with a small relative
    tolerance for ties.
    """
    n = len(d)
    if n == 0:
        return (math.nan, True)
    observed = float(d.mean())
    if n <= EXACT_UP_TO:
        patterns = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.float64) * -2 + 1  # [2^n, n]
        stats_ = patterns @ d / n
        exact = True
        total = len(stats_)
        adjust = 0
    else:
        rng = np.random.default_rng(seed)
        signs = rng.integers(0, 2, size=(permutations, n)).astype(np.float64) * -2 + 1
        stats_ = signs @ d / n
        exact = False
        total = permutations + 1
        adjust = 1  # the observed pattern counts once (scipy's Monte Carlo convention)
    eps = 1e-14 * max(1.0, abs(observed))
    less = (np.count_nonzero(stats_ <= observed + eps) + adjust) / total
    greater = (np.count_nonzero(stats_ >= observed - eps) + adjust) / total
    return (float(min(1.0, 2 * min(less, greater))), exact)


def paired_summary(
    differences: Sequence[float],
    *,
    method: str = BOOTSTRAP,
    resamples: int = DEFAULT_RESAMPLES,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> PairedSummary:
    """n, mean, 95% interval and permutation p-value of paired differences (NaN/inf dropped)."""
    if method not in CI_METHODS:
        raise ListerError(f"unknown interval method {method!r}; valid: {', '.join(CI_METHODS)}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 2000:
        raise ListerError(f"resamples must be an integer >= 2000, got {resamples!r}")
    d = _clean(differences)
    n = len(d)
    if n == 0:
        return PairedSummary(0, math.nan, math.nan, math.nan, math.nan, math.nan, method, True)
    low, high = bootstrap_interval(d, resamples=resamples, seed=seed) if method == BOOTSTRAP else t_interval(d)
    p, exact = sign_flip_p(d, permutations=permutations, seed=seed)
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    return PairedSummary(n, float(d.mean()), low, high, p, sd, method, exact)
