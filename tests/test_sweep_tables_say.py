"""Sweep tables say what they mean: how many pairs each condition zeroed, and which zeroed none."""

from __future__ import annotations

import json

from lister_tui.core.sweep.tables import (
    BASE,
    COLUMN_DESCRIPTIONS,
    GENERATION_COLUMNS,
    SAE_ABLATION,
    build_tables,
    conditions_that_zeroed_nothing,
)


def _row(condition: str, method: str, sae, sample: int, pairs: str, n_items: int) -> dict:
    row = {c: None for c in GENERATION_COLUMNS}
    row.update(
        condition=condition, method=method, sae=sae, template="short", topic="Fruits", sample=sample, seed=100 + sample,
        regenerated_from_position=40, ablated_pairs=pairs, n_items=n_items, n_tokens=20, repeated_items=0, diversity=1.0,
        filler_count=0, reached_end=True, metric_at_attribution=0.5, items=json.dumps(["a"] * n_items), continuation="",
    )
    return row


def test_pairs_zeroed_per_condition_and_the_conditions_that_zeroed_nothing():
    rows = []
    for sample in (0, 1):
        rows.append(_row(BASE, "none", None, sample, "", 4))
        rows.append(_row("ablate res_0", SAE_ABLATION, "res_0", sample, "12@30 4@31 7@33", 6))
        rows.append(_row("ablate res_3", SAE_ABLATION, "res_3", sample, "", 4))  # the last layer: nothing in the prefix
    tables = build_tables(rows)
    by_condition = tables["by_condition"].set_index("condition")
    assert by_condition.loc["ablate res_0", "pairs_zeroed_mean"] == 3
    assert by_condition.loc["ablate res_3", "pairs_zeroed_mean"] == 0
    assert "pairs_zeroed_mean" in tables["by_condition_and_topic"].columns
    assert conditions_that_zeroed_nothing(tables["by_condition"]) == ["ablate res_3"]
    assert "ablated nothing" in COLUMN_DESCRIPTIONS["pairs_zeroed_mean"]
