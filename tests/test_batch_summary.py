"""The batch view's numbers (lister_tui.core.sessions.batch_summary) against hand-counted lists."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.batch_summary import (
    ABLATED,
    LISTS,
    RUN_BASE,
    batch_summary,
    condition_bars,
    histogram,
    sweep_by_condition,
    sweep_folder,
)
from lister_tui.core.sessions.workspace import AblationChoice, AblationRun, Workspace
from lister_tui.core.sweep.tables import GENERATION_COLUMNS, build_tables
from session_fixtures import make_sample


def _list(template: str, topic: str, n: int, items: int, prefix_len: int | None = None):
    """A list of ``items`` one-word items (word ids 6.. ; each item ends with a line break)."""
    return make_sample(template, topic, n, 100 + n, [[6 + i] for i in range(items)], [False] * items, prefix_len=prefix_len)


def _run(sample, base_items: int, ablated_items: int) -> AblationRun:
    base = _list(sample.spec.template, sample.spec.topic, sample.spec.sample, base_items, prefix_len=5)
    ablated = _list(sample.spec.template, sample.spec.topic, sample.spec.sample, ablated_items, prefix_len=5)
    return AblationRun("", (AblationChoice("res_0", 3, 4),), True, "code", base, ablated, (), ())


@pytest.fixture
def workspace() -> Workspace:
    """short: lists of 2, 3 and 5 items, two runs on the first (2 → 6, 3 → 3); long: 4 and 4, no run;
    one more short list of 9 items, removed by the user."""
    ws = Workspace("fake-model")
    s0, s1, s2 = _list("short", "Fruits", 0, 2), _list("short", "Fruits", 1, 3), _list("short", "Colors", 2, 5)
    l0, l1 = _list("long", "Fruits", 3, 4), _list("long", "Colors", 4, 4)
    gone = _list("short", "Colors", 5, 9)
    keys = ws.add_samples([s0, l0, s1, l1, s2, gone], "code")
    ws.record_ablation(keys[0], _run(s0, 2, 6))
    ws.record_ablation(keys[0], _run(s0, 3, 3))
    ws.remove_sample(keys[5])
    return ws


def test_the_fixture_lists_have_the_item_counts_written_in_them(workspace):
    # the counts come from the lists' own structure (lines that start with "-"), not from the fixture's say-so
    counts = sorted(len(st.sample.structure.items) for st in workspace.samples.values())
    assert counts == [2, 3, 4, 4, 5]


def test_item_counts_per_template_base_and_ablated(workspace):
    s = batch_summary(workspace)
    assert s.templates == ["short", "long"]  # in the order first seen
    short, long = s.of("short"), s.of("long")
    assert sorted(short.lists) == [2, 3, 5]  # the removed 9-item list is not counted
    assert short.mean(LISTS) == pytest.approx(10 / 3)
    assert short.run_base == (2, 3) and short.ablated == (6, 3)
    assert short.mean(RUN_BASE) == 2.5 and short.mean(ABLATED) == 4.5
    assert short.paired_change == pytest.approx(((6 - 2) + (3 - 3)) / 2)
    assert long.lists == (4, 4) and long.mean(LISTS) == 4.0
    assert long.ablated == () and long.mean(ABLATED) is None and long.paired_change is None
    assert s.n_runs == 2 and list(s.runs_per_sample.values()) == [2]
    with pytest.raises(ListerError, match="no template 'free'"):
        s.of("free")


def test_the_table_is_what_a_script_reads(workspace):
    table = batch_summary(workspace).table()
    row = table[(table["template"] == "short") & (table["group"] == ABLATED)].iloc[0]
    assert (row["n"], row["items_mean"], row["items_min"], row["items_max"]) == (2, 4.5, 3, 6)
    row = table[(table["template"] == "long") & (table["group"] == ABLATED)].iloc[0]
    assert row["n"] == 0 and pd.isna(row["items_mean"])


def test_histogram_has_one_bin_per_item_count():
    assert histogram([2, 3, 5, 3]) == {2: 1, 3: 2, 4: 0, 5: 1}
    assert histogram([]) == {}


def test_an_empty_session_has_no_templates():
    s = batch_summary(Workspace("fake-model"))
    assert s.per_template == () and s.n_runs == 0


def _generation(condition: str, method: str, sae, topic: str, sample: int, n_items: int, pairs: str = "") -> dict:
    row = {c: None for c in GENERATION_COLUMNS}
    row.update(
        condition=condition, method=method, sae=sae, template="short", template_length="short", topic=topic, sample=sample,
        seed=sample, regenerated_from_position=10, ablated_pairs=pairs, n_items=n_items, n_tokens=3 * n_items, repeated_items=0,
        diversity=1.0, filler_count=0, reached_end=True, metric_at_attribution=0.0, items=json.dumps([f"w{i}" for i in range(n_items)]),
        continuation="",
    )
    return row


def test_condition_bars_from_a_sweeps_by_condition(tmp_path):
    """Two topics of two samples: base 3, 4 (Fruits) and 5, 5 (Colors); ablated 5, 7 and 5, 6.
    Changes: Fruits +2, +3 (mean 2.5, var 0.5), Colors 0, +1 (mean 0.5, var 0.5): over topics 1.5 ± √0.5."""
    base = [("Fruits", 0, 3), ("Fruits", 1, 4), ("Colors", 0, 5), ("Colors", 1, 5)]
    ablated = [7 - 2, 7, 5, 6]
    rows = [_generation("base", "none", None, t, s, n) for t, s, n in base]
    rows += [_generation("ablate res_0", "sae ablation", "res_0", t, s, a, "1@2 3@4") for (t, s, _), a in zip(base, ablated)]
    rows += [_generation("ablate attn_3", "sae ablation", "attn_3", t, s, n) for t, s, n in base]  # zeroed no pair
    by_condition = build_tables(rows)["by_condition"]
    by_condition.to_parquet(tmp_path / "by_condition.parquet")

    bars = condition_bars(sweep_by_condition(tmp_path))
    assert [(b.condition, b.template) for b in bars] == [("ablate res_0", "short"), ("ablate attn_3", "short")]
    res0, attn3 = bars
    assert res0.change_mean == pytest.approx(1.5)
    assert res0.change_sd == pytest.approx(math.sqrt(0.5))
    assert res0.n_generations == 4 and not res0.ablated_nothing
    assert attn3.change_mean == 0 and attn3.ablated_nothing


def test_the_sweep_a_session_came_from():
    assert sweep_folder({"source": {"kind": "sweep", "path": "/x/sweep"}}).as_posix() == "/x/sweep"
    assert sweep_folder({}) is None and sweep_folder(None) is None
    assert sweep_folder({"source": {"kind": "session", "path": "/x"}}) is None


def test_a_missing_or_foreign_sweep_table_is_a_clear_error(tmp_path):
    with pytest.raises(ListerError, match="is not there"):
        sweep_by_condition(tmp_path)
    pd.DataFrame({"condition": ["x"]}).to_parquet(tmp_path / "by_condition.parquet")
    with pytest.raises(ListerError, match="has no column template"):
        sweep_by_condition(tmp_path)
    (tmp_path / "by_condition.parquet").write_bytes(b"not parquet")
    with pytest.raises(ListerError, match="cannot read"):
        sweep_by_condition(tmp_path)
