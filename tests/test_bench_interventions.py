"""The batch-experiment benchmark runs end to end at smoke size (its timings are not asserted)."""

from __future__ import annotations

import math

from bench.harness import Report
from bench.interventions import compare_interventions


def test_the_intervention_benchmark_reports_the_ratio_and_the_first_partial_result(tiny):
    report = Report("smoke", {})
    compare_interventions(report, repeats=1, smoke=True, lab=tiny)
    variants = {r.variant for r in report.rows}
    assert {"batched", "one regeneration at a time", "first partial result (4 units)"} <= variants
    ratios = [r for r in report.rows if r.variant == "ratio"]
    assert len(ratios) == 1 and math.isfinite(ratios[0].ratio) and ratios[0].ratio > 0
