"""The circuits benchmark runs end to end at tiny sizes (timings not asserted; agreement is)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def test_circuit_bench_smoke_compares_batched_and_one_by_one_edges(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench.circuits", "--smoke", "--threads", "1", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(tmp_path / "results.csv")
    ratios = table[(table.comparison == "circuit edges") & (table.variant == "ratio")]
    assert len(ratios) == 2  # lister-tiny and the Gemma shape
    # batched and one-by-one edges are the same numbers
    assert all(float(n.rsplit(" ", 1)[1]) < 1e-5 for n in ratios["note"])
    assert (table[table.unit == "s"]["median"] > 0).all()
    assert (tmp_path / "report.md").read_text().startswith("# Circuits benchmark")
