"""`python -m bench`: every comparison, side by side in one run, to bench/out/<name>/report.md + results.csv.

    python -m bench                         # lister-tiny and the Gemma-2-2B shape at ×0.25 (CPU)
    python -m bench --device cuda --scale 1 # full-size Gemma-2-2B shape on a GPU
    python -m bench --smoke                 # tiny sizes, one repeat (what CI runs, so it can't rot)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench import comparisons
from bench.harness import Report, Row, machine
from bench.memory import measure_in_subprocess
from bench.shapes import gemma_like_bench, tiny_bench

# Memory bandwidth of the accelerators we have run on, bytes/s (vendor figures).
HBM_BANDWIDTH = {"H100 80GB HBM3": 3.35e12, "H100": 3.35e12, "H200": 4.8e12, "A100-SXM4-80GB": 2.0e12}

COMPARISONS = ("attribution", "ablation", "sampling", "memory", "latency", "scaling", "cards")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=("tiny", "gemma-2-2b", "both"), default="both")
    p.add_argument("--scale", type=float, default=0.25, help="width factor of the Gemma-2-2B shape (1 = real size)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--only", default=",".join(COMPARISONS), help=f"comma-separated subset of {','.join(COMPARISONS)}")
    p.add_argument("--out", type=Path, default=Path("bench/out/latest"))
    p.add_argument("--smoke", action="store_true", help="tiny sizes and one repeat: checks that the benchmark runs")
    return p.parse_args(argv)


def sizes(smoke: bool, shape: str) -> dict:
    if smoke:
        return dict(batch=2, length=16, new_tokens=4, sample_batch=4, samples=[1, 2], lengths=[8, 16], widths=[64, 128], mem_batch=2, mem_length=16)
    if shape == "tiny":
        return dict(batch=16, length=48, new_tokens=64, sample_batch=16, samples=[1, 4, 16, 64], lengths=[32, 64, 128], widths=[512, 4096, 16384], mem_batch=16, mem_length=64)
    # the Gemma shape on a CPU: a per-sample TransformerLens decoding step takes ~0.4 s at ×0.25,
    # so decode few tokens (the ratio is per step) and attribute short batches
    return dict(batch=2, length=32, new_tokens=8, sample_batch=16, samples=[1, 4, 16], lengths=[32, 64, 128], widths=[1024, 4096, 16384], mem_batch=4, mem_length=64)


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

    def prefixed(fn, *a, **kw):
        before = len(report.rows)
        fn(report, bench, *a, **kw)
        for row in report.rows[before:]:
            row.setting = tag + row.setting
        return report.rows[before:]

    if "attribution" in only:
        prefixed(comparisons.compare_attribution, repeats, s["batch"], s["length"])
    if "ablation" in only:
        prefixed(comparisons.compare_ablated_generation, repeats, s["sample_batch"], s["length"], s["new_tokens"])
    if "sampling" in only:
        rows = prefixed(comparisons.compare_sampling, repeats, s["sample_batch"], s["length"], s["new_tokens"])
        if args.device.startswith("cuda"):
            roofline(report, bench, rows, tag)
    if "scaling" in only:
        prefixed(comparisons.scaling, repeats, s["samples"], s["lengths"], s["widths"], s["length"])
    if "memory" in only:
        memory(report, bench, shape, scale, s, tag, args.device)


def memory(report: Report, bench, shape: str, scale: float, s: dict, tag: str, device: str) -> None:
    n = len(bench.saes)
    runs = {
        "streamed, 1 SAE": measure_in_subprocess("streamed", 1, shape, scale, s["mem_batch"], s["mem_length"], device),
        f"streamed, {n} SAEs (project)": measure_in_subprocess("streamed", n, shape, scale, s["mem_batch"], s["mem_length"], device),
        f"all {n} SAEs held": measure_in_subprocess("held", n, shape, scale, s["mem_batch"], s["mem_length"], device),
    }
    one, streamed, held = runs.values()
    sae_bytes = one["sae_bytes"]
    setting = f"{tag}attribution of {s['mem_batch']} × {s['mem_length']} tokens; one SAE = {sae_bytes / 2**20:.1f} MiB"
    for name, r in runs.items():
        mib = r["peak_over_baseline"] / 2**20
        report.rows.append(Row("4 memory", name, setting, mib, mib, mib, "MiB over the loaded model"))
    # The claim: streaming keeps about one SAE alive at a time. Counted directly (each
    # SAE's lifetime is tracked), since resident-set peaks on a CPU are dominated by the
    # forward/backward pass and the allocator's reuse, not by one SAE.
    alive = streamed["max_saes_alive"]
    report.rows.append(
        Row("4 memory", "ratio", setting, alive, alive, held["max_saes_alive"], "SAEs", alive,
            f"most SAEs alive at once, streaming {n} (holding: {held['max_saes_alive']})",
            "≤ 2 (about one SAE alive at a time)", alive <= 2)
    )
    report.notes.append(
        f"{tag}memory: peak resident set over the loaded model, attribution of {n} SAEs: streamed "
        f"{streamed['peak_over_baseline'] / 2**20:.0f} MiB, all held {held['peak_over_baseline'] / 2**20:.0f} MiB, "
        f"1 SAE {one['peak_over_baseline'] / 2**20:.0f} MiB; the {n} SAEs weigh {n * sae_bytes / 2**20:.0f} MiB "
        f"and the kept activations and gradients {streamed['activation_bytes'] / 2**20:.1f} MiB; the rest is the "
        "model's forward/backward pass (CPU resident-set peaks vary between runs by up to a few hundred MiB at the Gemma shape, so they can't resolve one SAE)"
    )


def roofline(report: Report, bench, rows, tag: str) -> None:
    name = torch.cuda.get_device_name()
    bandwidth = next((v for k, v in HBM_BANDWIDTH.items() if k in name), None)
    if bandwidth is None:
        report.notes.append(f"{tag}no bandwidth figure for {name}: roofline skipped")
        return
    per_step = bench.weight_bytes / bandwidth  # seconds to read every weight once
    ours = next(r for r in rows if r.variant.startswith("batched") and r.unit == "tokens/s")
    batch = int(ours.setting.split("batch ")[1].split(",")[0])
    bound = batch / per_step
    report.notes.append(
        f"{tag}roofline on {name}: weights {bench.weight_bytes / 2**30:.2f} GiB ÷ {bandwidth / 1e12:.2f} TB/s = "
        f"{per_step * 1e3:.2f} ms per decoding step, so at batch {batch} at most {bound:.0f} tokens/s; "
        f"measured {ours.median:.0f} tokens/s ({ours.median / bound:.0%} of the bound)"
    )


def latency(report: Report, repeats: int) -> None:
    try:
        from bench.explorer_latency import measure_latency
    except ImportError as exc:
        report.notes.append(f"explorer latency not measured: {exc}")
        return
    for name, seconds in measure_latency(repeats).items():
        report.rows.append(Row("5 explorer latency", name, "[lister-tiny] regenerate from the explorer's code path", *seconds, "s"))


def main(argv=None) -> Path:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - set(COMPARISONS)
    if unknown:
        raise SystemExit(f"unknown comparison(s) {sorted(unknown)}; choose from {', '.join(COMPARISONS)}")
    report = Report(
        "lister-tui benchmark" + (" (smoke)" if args.smoke else ""),
        {**machine(args.device), "repeats": 1 if args.smoke else args.repeats, "scale of the Gemma shape": 0.02 if args.smoke else args.scale},
    )
    shapes = ("tiny", "gemma-2-2b") if args.shape == "both" else (args.shape,)
    for shape in shapes:
        run_shape(report, args, shape, only)
    if "latency" in only and not args.smoke:
        latency(report, args.repeats)
    if "cards" in only:
        from bench.cards import compare_cards

        compare_cards(report, 1 if args.smoke else args.repeats, args.smoke)
    if args.smoke:
        # sizes too small for the targets to mean anything: the smoke run checks that it runs
        for row in report.rows:
            row.met = None
        report.notes.insert(0, "smoke run: tiny sizes and one repeat; targets are not assessed")
    md, csv_path = report.write(args.out)
    print(report.markdown())
    print(f"wrote {md} and {csv_path}")
    return md


if __name__ == "__main__":
    main()
