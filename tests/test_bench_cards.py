"""The feature-card benchmark runs end to end at smoke size (its timings are not asserted)."""

from __future__ import annotations

import math

from bench.cards import compare_cards
from bench.harness import Report


def test_the_card_benchmark_reports_every_variant_and_ratio(tiny):
    report = Report("smoke", {})
    compare_cards(report, repeats=1, smoke=True, lab=tiny)
    variants = {r.variant for r in report.rows}
    assert "plain forward (whole model)" in variants and "card, pass cached" in variants
    assert {f"corpus pass, {s} (first card of the SAE)" for s in ("res_0", "res_3", "attn_3")} <= variants
    ratios = [r for r in report.rows if r.variant == "ratio"]
    assert len(ratios) == 4 and all(math.isfinite(r.ratio) and r.ratio > 0 for r in ratios)
