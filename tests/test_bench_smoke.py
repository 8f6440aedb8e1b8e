"""The benchmark's smoke run: every comparison runs end to end at tiny sizes (so it can't rot).

Timings here mean nothing and are not asserted; what is asserted is that each
comparison produced its rows, that the compared methods agree where they must,
and that the report and CSV are written and readable.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd

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
    for comparison in ("1 attribution", "2 ablated generation", "3 sampling", "4 memory", "6 scaling"):
        rows = table[table.comparison == comparison]
        assert len(rows) >= 2, comparison
        assert all(math.isfinite(v) for v in rows["median"]), comparison
        assert (rows[rows.unit == "s"]["median"] > 0).all(), comparison
    for shape in ("lister-tiny", "gemma-2-2b shape"):
        assert table.setting.str.contains(shape, regex=False).any(), shape
    # the one-pass attribution and the splice-each-SAE baseline computed the same numbers
    notes = table[(table.comparison == "1 attribution") & (table.variant == "ratio")]["note"]
    differences = [float(n.rsplit(" ", 1)[1]) for n in notes]
    assert differences and max(differences) < 1e-3, notes.tolist()
    # with the same seeds, the fast ablation and the spliced SAE drew the same tokens
    ablation_notes = table[(table.comparison == "2 ablated generation") & table.note.notna()]["note"]
    assert ablation_notes.str.endswith("True").all(), ablation_notes.tolist()
    report = (out / "report.md").read_text()
    assert "targets are not assessed" in report and "| 1 attribution |" in report
