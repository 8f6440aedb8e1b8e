"""Paired statistics agree with scipy on fixed data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from lister_tui.core.errors import ListerError
from lister_tui.core.study.stats import BOOTSTRAP, T, paired_summary

BASE = np.array([5, 4, 6, 5, 4, 5, 3, 6, 5, 4, 4, 5], dtype=float)
AFTER = np.array([7, 5, 6, 8, 6, 5, 5, 7, 6, 6, 4, 8], dtype=float)


def test_t_interval_equals_scipys_paired_t_interval():
    s = paired_summary(AFTER - BASE, method=T)
    ref = stats.ttest_rel(AFTER, BASE).confidence_interval(0.95)
    assert s.n == 12 and s.method == T
    assert s.mean == pytest.approx(float(np.mean(AFTER - BASE)), abs=1e-12)
    assert (s.ci_low, s.ci_high) == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_exact_sign_flip_p_equals_scipys_permutation_test():
    d = AFTER - BASE
    s = paired_summary(d, method=T)
    ref = stats.permutation_test(
        (AFTER, BASE), lambda x, y: np.mean(x - y), permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
    )
    assert s.exact_p
    assert s.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert s.p_value < 0.01  # the data do differ


def test_sign_flip_p_for_a_null_effect_equals_scipy():
    d = np.array([1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1.0, -1.5])
    ref = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf).pvalue
    assert paired_summary(d).p_value == pytest.approx(ref, rel=1e-12)
    assert paired_summary(d).p_value > 0.5


def test_monte_carlo_p_is_close_to_scipys_exact_p_for_larger_n():
    rng = np.random.default_rng(3)
    d = rng.normal(0.4, 1.0, size=18)
    exact = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf).pvalue
    s = paired_summary(d, permutations=20000, seed=1)
    assert not s.exact_p
    assert s.p_value == pytest.approx(exact, abs=0.01)


def test_percentile_bootstrap_is_close_to_scipys_and_seeded():
    d = AFTER - BASE
    ref = stats.bootstrap((d,), np.mean, method="percentile", n_resamples=20000, random_state=np.random.default_rng(0)).confidence_interval
    s = paired_summary(d, method=BOOTSTRAP, resamples=20000, seed=5)
    assert s.ci_low == pytest.approx(ref.low, abs=0.1)
    assert s.ci_high == pytest.approx(ref.high, abs=0.1)
    assert s.ci_low > 0  # the effect is there
    again = paired_summary(d, method=BOOTSTRAP, resamples=20000, seed=5)
    assert again == s  # same seed, same figures
    smooth = np.random.default_rng(2).normal(1.0, 1.0, size=30)  # no ties: the seed shows
    assert paired_summary(smooth, seed=6).ci_low != paired_summary(smooth, seed=7).ci_low


def test_empty_and_non_finite_differences():
    s = paired_summary([math.nan, math.inf])
    assert s.n == 0 and math.isnan(s.mean) and s.text() == "n=0"
    assert paired_summary([1.0, math.nan, 2.0, 3.0]).n == 3


def test_bad_method_or_too_few_resamples_are_refused():
    with pytest.raises(ListerError, match="valid: bootstrap, t"):
        paired_summary([1.0, 2.0], method="wild")
    with pytest.raises(ListerError, match=">= 2000"):
        paired_summary([1.0, 2.0], resamples=100)
