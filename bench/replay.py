"""Replay of a 24-list session next to sampling those 24 lists, on lister-tiny.

Three variants, interleaved in one run (bench/harness.py):

- **sampling** the lists as the explorer's first sampling does (one ``sample_lists`` call
  with every spec): the reference of the ratios;
- **replay** of a session holding those lists (``lister-tui replay``: batched, the same
  seeds, every token compared). Target: within 1.5× the sampling;
- **replay, one list at a time**: what the replay did before it was batched, for scale.

Every variant samples the same lists; the replay must also report every token identical
(checked once before timing; the note says so).

    python -m bench.replay [--threads 1] [--repeats 5] [--smoke]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench.harness import Report, Target, machine, ratio_row, time_side_by_side

COMPARISON = "10 replay"


def _one_at_a_time(lab, ws, settings) -> None:
    """The replay before batching: one ``sample_lists`` call per list."""
    from lister_tui.core.engine.generation import sample_lists

    for st in ws.samples.values():
        s = st.sample
        sample_lists(lab, [s.spec], settings, prefixes=None if s.prefix_len is None else [list(s.tokens[: s.prefix_len])])


def compare_replay(report: Report, repeats: int, smoke: bool = False, lab=None) -> None:
    """Time replay and sampling of the same session side by side (``lab``: lister-tiny, else loaded here)."""
    from lister_tui.core.engine.generation import sample_lists
    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.engine.prompts import TOPICS, build_prompts
    from lister_tui.core.engine.sampling import SamplingSettings
    from lister_tui.core.sessions.replay import replay
    from lister_tui.core.sessions.workspace import Workspace
    from lister_tui.core.study.settings import SAMPLING_PRESETS

    lab = lab if lab is not None else load_model("lister-tiny", device="cpu")
    # 24 lists as a user samples them: the three study templates × 4 topics × 2 samples
    templates, topics, n = (("short", "long"), list(TOPICS)[:1], 2) if smoke else (("short", "long", "unspecified"), list(TOPICS)[:4], 2)
    preset = "code"
    settings = SAMPLING_PRESETS[preset]
    if smoke:  # fewer tokens; the session records them, so its replay uses them too
        settings = SamplingSettings(settings.temperature, settings.top_p, settings.top_k, 16)
    recorded = {preset: {"temperature": settings.temperature, "top_p": settings.top_p, "top_k": settings.top_k, "max_new_tokens": settings.max_new_tokens}}
    specs = build_prompts(templates, topics, n, 0)
    ws = Workspace(lab.entry.name)
    ws.add_samples(sample_lists(lab, specs, settings), preset)
    checked = replay(lab, ws, recorded)
    variants = {
        f"sampling {len(specs)} lists (one batched call)": lambda: sample_lists(lab, specs, settings),
        f"replay of the {len(specs)}-list session": lambda: replay(lab, ws, recorded),
        "replay, one list at a time (before)": lambda: _one_at_a_time(lab, ws, settings),
    }
    timings = time_side_by_side(variants, repeats)
    setting = f"[lister-tiny] {len(specs)} lists ({', '.join(templates)} × {len(topics)} topics × {n}), {preset} preset, ≤ {settings.max_new_tokens} new tokens"
    report.add_timings(COMPARISON, setting, timings)
    sampling, batched, single = timings.values()
    note = f"replay ok: {checked.ok} ({checked.checked} lists, every token identical)"
    ratio_row(report, COMPARISON, setting, batched, sampling, "replay ÷ sampling", Target(1.5, False), note)
    ratio_row(report, COMPARISON, setting + ", before batching", single, sampling, "one-at-a-time replay ÷ sampling")


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out", type=Path, default=Path("bench/out/replay"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = Report("lister-tui benchmark: replay", {**machine("cpu"), "repeats": args.repeats})
    compare_replay(report, 1 if args.smoke else args.repeats, args.smoke)
    md, csv_path = report.write(args.out)
    print(report.markdown())
    print(f"wrote {md} and {csv_path}")
    return md


if __name__ == "__main__":
    main()
