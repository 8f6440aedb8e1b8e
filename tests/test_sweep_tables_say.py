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
        filler_count=0, reached_end=True, plain_metric_at_last_item=0.5, items=json.dumps(["a"] * n_items), continuation="",
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


def test_the_plain_metric_column_says_what_it_measures_and_old_tables_read_under_the_new_name(tmp_path):
    from lister_tui.core.sessions.export import sweep_tables
    from lister_tui.core.sweep.output import read_table
    from lister_tui.core.sweep.tables import describe

    rows = [_row(BASE, "none", None, s, "", 4) for s in (0, 1)] + [_row("ablate res_0", SAE_ABLATION, "res_0", s, "1@3", 6) for s in (0, 1)]
    by_condition = build_tables(rows)["by_condition"]
    assert "plain_metric_at_last_item_change_mean" in by_condition.columns
    assert not [c for c in by_condition.columns if "metric_at_attribution" in c]
    text = describe("plain_metric_at_last_item_change_mean") + describe("plain_metric_at_last_item")
    assert "plain (unablated) model" in text and "not the ablation's effect" in text
    # a sweep folder written before the rename: its columns are read under today's names
    old = by_condition.rename(columns=lambda c: c.replace("plain_metric_at_last_item", "metric_at_attribution"))
    assert "metric_at_attribution_change_mean" in old.columns
    old.to_parquet(tmp_path / "by_condition.parquet", index=False)
    for frame in (read_table(tmp_path, "by_condition"), sweep_tables({"source": {"kind": "sweep", "path": str(tmp_path)}})["sweep_by_condition"]):
        assert list(frame.columns) == list(by_condition.columns)
        assert frame["plain_metric_at_last_item_change_mean"].tolist() == by_condition["plain_metric_at_last_item_change_mean"].tolist()


def test_a_shard_saved_before_the_rename_resumes_with_the_new_name(tmp_path):
    from lister_tui.core.sweep.output import ShardFiles
    from lister_tui.core.sweep.shards import Shard

    shard = Shard(BASE, "short")
    old = {k if k != "plain_metric_at_last_item" else "metric_at_attribution": v for k, v in _row(BASE, "none", None, 0, "", 4).items()}
    files = ShardFiles(tmp_path)
    files.save(shard, {"generations": [old], "faithfulness": [], "partial": False}, {})
    output, _ = files.load([shard])[shard.id]
    assert output["generations"][0]["plain_metric_at_last_item"] == 0.5
    assert "metric_at_attribution" not in output["generations"][0]


def test_the_item_rule_the_tables_state_is_the_code_s():
    from lister_tui.core.engine.listing import items_from_text
    from lister_tui.core.sweep.tables import describe

    rule = describe("n_items")
    assert "start with the list marker" in rule and "not an item" in rule
    # the continuation follows the prompt's own "-": a lone marker cut off at the token cap is no item ...
    assert items_from_text(" Apple\n- Pear\n-") == ["Apple", "Pear"]
    assert items_from_text(" Apple\n- Pear\n- ") == ["Apple", "Pear"]
    # ... an item cut off after some text is one, and a line not starting with the marker is not
    assert items_from_text(" Apple\n- Pe") == ["Apple", "Pe"]
    assert items_from_text(" Apple\nPear") == ["Apple"]


def test_empty_marker_lines_have_their_own_column_and_older_rows_read_as_missing():
    from lister_tui.core.engine.listing import empty_items_from_text
    from lister_tui.core.sweep.tables import describe, generations_frame

    assert "not items" in describe("empty_items") and "empty_items" in describe("n_items")
    counted = _row(BASE, "none", None, 0, "", 2) | {"empty_items": empty_items_from_text(" Apple\n- Pear\n- ")}
    older = {k: v for k, v in _row(BASE, "none", None, 1, "", 3).items() if k != "empty_items"}  # a shard from before the column
    frame = generations_frame([counted, older])
    assert frame["empty_items"].iloc[0] == 1 and frame["empty_items"].isna().iloc[1]
    assert list(frame["n_items"]) == [2, 3]
