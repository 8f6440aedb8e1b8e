"""Start-up time of the quick commands, each against `python -c pass`, side by side in one run.

Every command runs in a fresh interpreter, as a user's shell starts it: `lister-tui --help`,
`models`, `sessions` (a folder with one lister-tiny session of 12 lists), `export` of that
session to CSV, and `open --help`. Target: each under 1.5 s (fastest round; the range is
that of its rounds), and the ratio to a bare interpreter's start says what the command adds.
None of them imports torch, TransformerLens or SAELens (tests/test_quick_commands.py).

    python -m bench.startup [--repeats 5] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.harness import Report, Target, machine, ratio_row, time_side_by_side, value_row

COMPARISON = "11 start-up"
ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 1.5


def _session_folder(folder: Path) -> str:
    """One lister-tiny session of 12 sampled lists in ``folder``; returns its name."""
    from lister_tui.core.engine.generation import sample_lists
    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.engine.prompts import build_prompts
    from lister_tui.core.sessions.opening import model_info
    from lister_tui.core.sessions.store import SessionStore
    from lister_tui.core.sessions.workspace import Workspace
    from lister_tui.core.study.settings import SAMPLING_PRESETS

    lab = load_model("lister-tiny", device="cpu")
    ws = Workspace(lab.entry.name)
    ws.add_samples(sample_lists(lab, build_prompts(["short", "long"], ["Fruits", "Animals"], 3, 0), SAMPLING_PRESETS["code"]), "code")
    SessionStore(folder / "bench-session").save(
        ws, model_info(lab), decode=lab.tokenizer.decode, token_string=lambda i: lab.tokenizer.decode([i])
    )
    return "bench-session"


def _runner(args: list[str], env: dict) -> callable:
    """A variant: the command in a fresh interpreter; a failure stops the benchmark with its output."""
    argv = [sys.executable, *args]

    def run() -> None:
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")

    return run


def compare_startup(report: Report, repeats: int, smoke: bool = False) -> None:
    with tempfile.TemporaryDirectory(prefix="lister-startup-") as tmp:
        tmp = Path(tmp)
        name = _session_folder(tmp / "sessions")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LISTER_TUI_CONFIG_DIR": str(tmp / "config"), "COLUMNS": "100"}
        cli = ["-c", "from lister_tui.cli import main; main()"]
        sessions = ["--sessions-dir", str(tmp / "sessions")]
        commands = {
            "lister-tui --help": [*cli, "--help"],
            "lister-tui models": [*cli, "models"],
            "lister-tui sessions": [*cli, "sessions", *sessions],
            "lister-tui export (12 lists, csv)": [*cli, "export", name, *sessions, "--format", "csv", "--out", str(tmp / "exports")],
            "lister-tui open --help": [*cli, "open", "--help"],
        }
        variants = {"python -c pass": _runner(["-c", "pass"], env)} | {k: _runner(v, env) for k, v in commands.items()}
        timings = time_side_by_side(variants, repeats)
    setting = "[lister-tiny] a fresh interpreter per run"
    report.add_timings(COMPARISON, setting, timings)
    bare = timings["python -c pass"]
    for command in commands:
        value_row(report, COMPARISON, command, setting, timings[command], Target(TARGET_S, False, f"< {TARGET_S:g} s"))
        ratio_row(report, COMPARISON, f"{setting}: {command}", timings[command], bare, "command ÷ python -c pass")
    report.notes.append(
        f"start-up: python -c pass took {bare.best:.3f} s (fastest of {bare.n}); "
        + ", ".join(f"{c} {timings[c].best:.2f} s" for c in commands)
    )


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out", type=Path, default=Path("bench/out/startup"))
    args = p.parse_args(argv)
    report = Report("lister-tui benchmark: start-up of the quick commands", {**machine("cpu"), "repeats": args.repeats})
    compare_startup(report, 1 if args.smoke else args.repeats, args.smoke)
    md, csv_path = report.write(args.out)
    print(report.markdown())
    print(f"wrote {md} and {csv_path}")
    return md


if __name__ == "__main__":
    main()
