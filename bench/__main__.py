"""`python -m bench`: every comparison, side by side in one run, to bench/out/<name>/report.md + results.csv.

    python -m bench                         # lister-tiny and the Gemma-2-2B shape at ×0.25 (CPU)
    python -m bench --gpu                   # full-size Gemma-2-2B shape on one GPU, bf16 and fp32, time-boxed
    python -m bench --smoke                 # tiny sizes, one round (what CI runs, so it can't rot)
    python -m bench --only replay           # one comparison (see COMPARISONS)
    python -m bench --only startup          # the quick commands' start-up against `python -c pass`

How times and ratios are estimated, and when a verdict is "unresolved": bench/harness.py.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from bench import comparisons
from bench.harness import Report, Row, Target, Timing, load_average, machine, value_row
from bench.memory import measure, measure_in_subprocess
from bench.shapes import gemma_like_bench, tiny_bench

COMPARISONS = ("attribution", "ablation", "sampling", "memory", "latency", "scaling", "cards", "replay", "startup")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=("tiny", "gemma-2-2b", "both"), default="both")
    p.add_argument("--scale", type=float, default=0.25, help="width factor of the Gemma-2-2B shape (1 = real size)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per comparison after a discarded warm-up (at most)")
    p.add_argument(
        "--budget", type=float, default=120.0,
        help="seconds per comparison: a slow one gets fewer rounds (never under 3), judged from its warm-up",
    )
    p.add_argument(
        "--threads", type=int, default=None,
        help="torch threads (default on a CPU: 1. With 2 threads on 2 cores shared with other work, one op "
        "waits for its slower thread and rounds varied 10×; the ratios are what is compared)",
    )
    p.add_argument("--gpu", action="store_true", help="the time-boxed full-size GPU run (bench/gpu.py); with --smoke, tiny on the CPU")
    p.add_argument("--bandwidth", type=float, default=None, help="the device's memory bandwidth in TB/s, for the roofline (default: from its name)")
    p.add_argument("--time-box", type=float, default=510.0, help="--gpu: seconds for the whole run, model building included")
    p.add_argument("--only", default=",".join(COMPARISONS), help=f"comma-separated subset of {','.join(COMPARISONS)}")
    p.add_argument("--out", type=Path, default=Path("bench/out/latest"))
    p.add_argument("--smoke", action="store_true", help="tiny sizes and one round: checks that the benchmark (and --gpu's plan) runs")
    return p.parse_args(argv)


def sizes(smoke: bool, shape: str) -> dict:
    if smoke:
        return dict(batch=2, length=16, new_tokens=4, sample_batch=4, samples=[1, 2], lengths=[8, 16], widths=[64, 128], mem_batch=2, mem_length=16)
    if shape == "tiny":
        return dict(batch=16, length=48, new_tokens=32, sample_batch=16, samples=[1, 4, 16, 64], lengths=[32, 64, 128], widths=[512, 4096, 16384], mem_batch=16, mem_length=64)
    # the Gemma shape on a CPU: a per-sample TransformerLens decoding step takes ~0.4 s at ×0.25,
    # so decode few tokens (the ratio is per step) and attribute short batches; with 4 tokens
    # the comparison's 3 rounds and warm-up still take minutes on a shared 2-core machine
    return dict(batch=2, length=32, new_tokens=4, sample_batch=16, samples=[1, 4, 16], lengths=[32, 64, 128], widths=[1024, 4096, 16384], mem_batch=4, mem_length=64)


def run_shape(report: Report, args, shape: str, only: set[str]) -> None:
    s = sizes(args.smoke, shape)
    repeats = 1 if args.smoke else args.repeats
    scale = 0.02 if args.smoke else args.scale
    if shape == "tiny":
        bench = tiny_bench(args.device)
    else:
        bench = gemma_like_bench(scale, device=args.device, n_layers=4 if args.smoke else None)
    report.notes.append(
        f"{bench.name}: {bench.parameters / 1e6:.1f}M parameters ({bench.weight_bytes / 2**20:.0f} MiB), "
        f"{len(bench.saes)} SAEs of {next(iter(bench.saes.values())).cfg.d_sae} features ({bench.sae_bytes(next(iter(bench.saes))) / 2**20:.1f} MiB each)"
    )
    tag = f"[{bench.name}] "

    timing = dict(budget_s=args.budget, min_repeats=min(3, repeats))

    def prefixed(fn, *a, **kw):
        before = len(report.rows)
        fn(report, bench, *a, **kw)
        for row in report.rows[before:]:
            row.setting = tag + row.setting
        progress(f"{tag}{fn.__name__} done")
        return report.rows[before:]

    if "attribution" in only:
        prefixed(comparisons.compare_attribution, repeats, s["batch"], s["length"], **timing)
    if "ablation" in only:
        prefixed(comparisons.compare_ablated_generation, repeats, s["sample_batch"], s["length"], s["new_tokens"], **timing)
    if "sampling" in only:
        prefixed(comparisons.compare_sampling, repeats, s["sample_batch"], s["length"], s["new_tokens"], **timing)
    if "scaling" in only:
        # a sweep, not a race: three rounds per size are enough to see its shape
        prefixed(comparisons.scaling, min(repeats, 3), s["samples"], s["lengths"], s["widths"], s["length"], **timing)
    if "memory" in only:
        memory(report, bench, shape, scale, s, tag, args.device, in_process=args.smoke)
        progress(f"{tag}memory done")


_START = time.perf_counter()


def progress(text: str) -> None:
    """A line on stderr with the elapsed time and the load, so that a long run shows where it is."""
    print(f"[{time.perf_counter() - _START:6.0f} s, load {load_average():.1f}] {text}", file=sys.stderr, flush=True)


def memory(report: Report, bench, shape: str, scale: float, s: dict, tag: str, device: str, *, in_process: bool = False) -> None:
    n = len(bench.saes)
    # A fresh process per measurement keeps one's allocations out of another's peak;
    # the smoke run measures in this process instead (each fresh process spends ~10 s
    # importing sae-lens, and the smoke run only checks that the code runs).
    run = (lambda *a: measure(*a, threads=None, bench=bench)) if in_process else measure_in_subprocess
    runs = {
        "streamed, 1 SAE": run("streamed", 1, shape, scale, s["mem_batch"], s["mem_length"], device),
        f"streamed, {n} SAEs (project)": run("streamed", n, shape, scale, s["mem_batch"], s["mem_length"], device),
        f"all {n} SAEs held": run("held", n, shape, scale, s["mem_batch"], s["mem_length"], device),
    }
    one, streamed, held = runs.values()
    sae_bytes = one["sae_bytes"]
    setting = f"{tag}attribution of {s['mem_batch']} × {s['mem_length']} tokens; one SAE = {sae_bytes / 2**20:.1f} MiB"
    for name, r in runs.items():
        mib = r["peak_over_baseline"] / 2**20
        report.rows.append(Row("4 memory", name, setting, mib, mib, mib, mib, "MiB over the loaded model"))
    # The claim: streaming keeps about one SAE alive at a time. Counted directly (each
    # SAE's lifetime is tracked), since resident-set peaks on a CPU are dominated by the
    # forward/backward pass and the allocator's reuse, not by one SAE.
    alive = streamed["max_saes_alive"]
    # a count, not a timing: no spread, so the verdict is plain
    report.rows.append(
        Row("4 memory", "ratio", setting, alive, alive, alive, alive, "SAEs", ratio=alive, ratio_low=alive,
            ratio_high=alive, ratio_meaning=f"most SAEs alive at once, streaming {n} (holding: {held['max_saes_alive']})",
            target="≤ 2 (about one SAE alive at a time)", verdict=Target(2, False).verdict(alive, alive))
    )
    report.notes.append(
        f"{tag}memory: peak resident set over the loaded model, attribution of {n} SAEs: streamed "
        f"{streamed['peak_over_baseline'] / 2**20:.0f} MiB, all held {held['peak_over_baseline'] / 2**20:.0f} MiB, "
        f"1 SAE {one['peak_over_baseline'] / 2**20:.0f} MiB; the {n} SAEs weigh {n * sae_bytes / 2**20:.0f} MiB "
        f"and the kept activations and gradients {streamed['activation_bytes'] / 2**20:.1f} MiB; the rest is the "
        "model's forward/backward pass (CPU resident-set peaks vary between runs by up to a few hundred MiB at the Gemma shape, so they can't resolve one SAE)"
    )


def latency(report: Report, repeats: int) -> None:
    try:
        from bench.explorer_latency import measure_latency
    except ImportError as exc:
        report.notes.append(f"explorer latency not measured: {exc}")
        return
    setting = "[lister-tiny] regenerate from the explorer's code path"
    for name, seconds in measure_latency(repeats).items():
        timing = Timing(seconds, load=(math.nan, load_average()))
        if name.endswith("first token") and "(cold)" not in name:
            value_row(report, "5 explorer latency", name, setting, timing, Target(0.150, False, "< 150 ms"))
        elif name.endswith("done") and "(cold)" not in name:
            value_row(report, "5 explorer latency", name, setting, timing, Target(2.0, False, "< 2 s"))
        else:
            report.add_timings("5 explorer latency", setting, {name: timing})


def main(argv=None) -> Path:
    args = parse_args(argv)
    if args.gpu:
        from bench.gpu import run_gpu

        return run_gpu(args)
    torch.set_num_threads(args.threads or (1 if args.device == "cpu" else torch.get_num_threads()))
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - set(COMPARISONS)
    if unknown:
        raise SystemExit(f"unknown comparison(s) {sorted(unknown)}; choose from {', '.join(COMPARISONS)}")
    repeats = 1 if args.smoke else args.repeats
    report = Report(
        "lister-tui benchmark" + (" (smoke)" if args.smoke else ""),
        {
            **machine(args.device),
            "rounds": f"a discarded warm-up, then up to {repeats} per comparison (3 for the scaling sweep), "
            f"fewer (never under 3) where one would overrun {args.budget:g} s; each row gives its count",
            "scale of the Gemma shape": 0.02 if args.smoke else args.scale,
        },
    )
    shapes = ("tiny", "gemma-2-2b") if args.shape == "both" else (args.shape,)
    for shape in shapes:
        run_shape(report, args, shape, only)
    if "latency" in only and not args.smoke:
        latency(report, max(args.repeats, 5))
        progress("explorer latency done")
    report.settings["load average at the end (1 min)"] = f"{load_average():.2f}"
    if "cards" in only:
        from bench.cards import compare_cards

        compare_cards(report, 1 if args.smoke else args.repeats, args.smoke)
    if "replay" in only:
        from bench.replay import compare_replay

        # replay of a 24-list session vs sampling it (tiny sizes in the smoke run)
        compare_replay(report, 1 if args.smoke else args.repeats, args.smoke)
        progress("replay done")
    if "startup" in only:
        from bench.startup import compare_startup

        # each quick command in a fresh interpreter against `python -c pass`
        compare_startup(report, 1 if args.smoke else args.repeats, args.smoke)
        progress("start-up done")
    if args.smoke:
        from bench.gpu import gpu_plan

        # the --gpu plan at tiny size on this device, so that it can't rot before a GPU appears
        gpu_plan(report, args, smoke=True)
        # sizes too small for the targets to mean anything: the smoke run checks that it runs
        for row in report.rows:
            if row.target:
                row.verdict = "not assessed"
        report.notes.insert(0, "smoke run: tiny sizes and one round; targets are not assessed")
    md, csv_path = report.write(args.out)
    print(report.markdown())
    print(f"wrote {md} and {csv_path}")
    return md


if __name__ == "__main__":
    main()
