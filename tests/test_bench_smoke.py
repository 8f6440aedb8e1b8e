"""The benchmark's smoke run: every comparison runs end to end at tiny sizes (so it can't rot).

Timings here mean nothing and are not asserted; what is asserted is that each
comparison produced its rows, that the compared methods agree where they must,
and that the report and CSV are written and readable. The smoke run includes the
GPU plan (`--gpu`) at tiny size on the CPU. The verdict rules are checked on
made-up round times, not on measured ones.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from bench.gpu import bandwidth_for
from bench.harness import Ratio, Target, Timing

ROOT = Path(__file__).resolve().parent.parent


def test_bench_smoke_writes_every_comparison(tmp_path):
    out = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out), "--threads", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(out / "results.csv")
    for comparison in ("1 attribution", "2 ablated generation", "3 sampling", "4 memory", "6 scaling", "7 decode", "8 peak memory", "11 start-up"):
        rows = table[table.comparison == comparison]
        assert len(rows) >= 2, comparison
        assert all(math.isfinite(v) for v in rows["median"]), comparison
        assert (rows[rows.unit == "s"]["median"] > 0).all(), comparison
    for shape in ("lister-tiny", "gemma-2-2b shape", "bfloat16]", "float32]"):
        assert table.setting.str.contains(shape, regex=False).any(), shape
    # the one-pass attribution and the splice-each-SAE baseline computed the same numbers in
    # float32. Not in bf16: splicing rounds the forward pass itself (reconstruction + error
    # ≠ x to 3 digits), and the summed attributions cancel, so there the figure is only reported.
    ratios = table[(table.comparison == "1 attribution") & (table.variant == "ratio")]
    for setting, note in zip(ratios.setting, ratios.note):
        difference = float(note.rsplit(" ", 1)[1])
        assert math.isfinite(difference) and ("bfloat16" in setting or difference < 1e-3), (setting, note)
    assert len(ratios) == 4, ratios.setting.tolist()  # two shapes, and the GPU plan's two dtypes
    assert set(table[table.target.notna()].verdict) == {"not assessed"}
    # with the same seeds, the fast ablation and the spliced SAE drew the same tokens (in float32;
    # in bf16 the splice's rounding of the forward pass may tip a draw, as above)
    ablations = table[(table.comparison == "2 ablated generation") & table.note.notna()]
    ablation_notes = ablations[~ablations.setting.str.contains("bfloat16")]["note"]
    assert len(ablation_notes) == 3 and ablation_notes.str.endswith("True").all(), ablation_notes.tolist()
    # the replay of a (tiny) session next to sampling it: batched, and every token identical
    replays = table[(table.comparison == "10 replay") & (table.variant == "ratio")]
    assert len(replays) == 2 and replays.note.str.contains("replay ok: True", regex=False).any(), replays.to_dict("records")
    # the GPU plan's graph step (float32 only): the edges into the same rows, batched and with one
    # backward pass per target, are the same numbers; the whole graph is extrapolated and measured
    graph = table[table.comparison == "12 graph"]
    (note,) = graph[graph.variant == "ratio"]["note"]
    difference, largest = (float(x) for x in re.fullmatch(r"largest difference (\S+) \(largest \|edge\| (\S+)\)", note).groups())
    assert largest > 0 and difference <= 1e-5 * largest, note
    assert graph.setting.str.contains("float32]").all() and not graph.setting.str.contains("bfloat16").any()
    assert graph.variant.str.endswith("EXTRAPOLATED").sum() == 2 and (graph.variant == "whole graph (measured)").sum() == 1
    assert (graph[graph.unit == "s"]["median"] > 0).all()
    report = (out / "report.md").read_text()
    assert "targets are not assessed" in report and "| 1 attribution |" in report


def test_verdicts_follow_the_range_of_paired_ratios():
    """Ratio of minima as the estimate; the range from per-round ratios with ⌊n/5⌋ dropped at each end."""
    ours = Timing((1.0, 1.1, 1.0, 1.2, 1.0))
    theirs = Timing((6.0, 6.6, 9.0, 7.2, 6.1))  # round 3 was disturbed for "theirs" only
    ratio = Ratio.of(theirs, ours)
    assert ratio.estimate == 6.0
    assert (ratio.low, ratio.high) == (6.0, 6.1)  # 9.0 (the disturbed round) is dropped
    assert Target(5.6, True).verdict(ratio.low, ratio.high) == "met"
    assert Target(6.05, True).verdict(ratio.low, ratio.high) == "unresolved"
    assert Target(6.2, True).verdict(ratio.low, ratio.high) == "missed"
    assert Target(1.15, False).verdict(1.0, 1.1) == "met"
    assert Target(1.15, False).verdict(1.1, 1.2) == "unresolved"
    assert Target(1.15, False).verdict(1.2, 1.3) == "missed"
    # three rounds: nothing is dropped, and the estimate is always inside the range
    few = Ratio.of(Timing((2.0, 3.0, 2.5)), Timing((1.0, 1.0, 1.0)))
    assert (few.low, few.estimate, few.high) == (2.0, 2.0, 3.0)


def test_bandwidth_table_prefers_the_specific_name():
    assert bandwidth_for("NVIDIA H100 80GB HBM3") == 3.35e12
    assert bandwidth_for("NVIDIA H100 PCIe") == 2.0e12
    assert bandwidth_for("NVIDIA H200") == 4.8e12
    assert bandwidth_for("NVIDIA GH200 480GB") == 4.0e12
    assert bandwidth_for("NVIDIA A100-SXM4-80GB") == 2.0e12
    assert bandwidth_for("NVIDIA A10G") == 0.6e12
    assert bandwidth_for("NVIDIA L40S") == 0.864e12
    assert bandwidth_for("some new accelerator") is None
