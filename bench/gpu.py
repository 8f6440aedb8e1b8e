"""`python -m bench --gpu`: the full-size Gemma-2-2B shape on one GPU, bf16 then fp32, in a time box.

What it measures, for each dtype, on random weights of Gemma-2-2B's shape (scale 1,
2.6B parameters) with 10 Gemma Scope-shaped JumpReLU SAEs of 16k features:

- decode tokens/s at batch 1 and 16 (smoke: 2), against the memory-bandwidth bound (bytes of
  weights read per step ÷ the device's bandwidth, from ``BANDWIDTH_TBS`` or
  ``--bandwidth``);
- batched seeded sampling against TransformerLens ``generate`` per sample (≥ 8×);
- attribution of the 10 SAEs in one pass against splicing each alone (≥ 0.7 × N);
- ablated against unablated generation (≤ 1.15);
- the explorer's regenerate → first token (< 150 ms);
- peak memory of every variant (``torch.cuda.max_memory_allocated``, reset before
  each, measured during its discarded warm-up run);
- in float32 only, the attribution graph (bench/graphs.py): 26 random JumpReLU skip
  transcoders of 16k features (64 firing per token) on the same model, 64- and 256-token
  prompts: the edges into a fixed subset of rows with 16 targets per backward pass against
  one per target (time, peak memory, the largest difference), the forward pass alone, the
  whole graph **extrapolated** from them (labelled so), and one whole graph measured at 2
  features per token where the time left allows (at 64 per token a whole graph has ~10⁵
  nodes, whose dense adjacency does not fit).

The run is time-boxed (``--time-box``, 510 s by default, so that with the imports it
ends within 9½ minutes on an H100/H200-class GPU): every step has a budget, a step
that would not fit in what is left is skipped with a note, a slow step gets fewer
rounds (never under 3), and the elapsed time is printed after each step. A step can
overrun its budget by about one round (the exactness checks before the timing, or a
round slower than its warm-up); the budgets (about 150 s a dtype, plus building) leave
room for that.

``--smoke`` runs the same plan on the CPU at tiny size (``python -m bench --smoke``
includes it), so that it can't rot before a GPU appears. As of this writing it has
never run on a GPU: the CUDA paths synchronise around every timed region and every
tensor is made on the model's device, but no figure from a GPU exists yet (the graph step
included: its memory on a GPU has not been seen; an out-of-memory error there is caught
and noted, and the plan goes on).
"""

from __future__ import annotations

import argparse
import gc
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import comparisons
from bench.harness import (
    Deadline,
    Report,
    Row,
    Target,
    Timing,
    machine,
    time_side_by_side,
    value_row,
)
from bench.shapes import Bench, gemma_like_bench

# Memory bandwidth in TB/s (vendor figures), matched against torch.cuda.get_device_name
# in this order: the first name that is a substring wins, so specific names come first
# (GH200 before H200, "H100 PCIe" before H100, A100 before A10, L40S before L4).
BANDWIDTH_TBS: tuple[tuple[str, float], ...] = (
    ("GH200", 4.0),
    ("H200", 4.8),
    ("H100 PCIe", 2.0),
    ("H100 NVL", 3.9),
    ("H100", 3.35),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H800", 3.35),
    ("A100 80GB PCIe", 1.935),
    ("A100-SXM4-80GB", 2.0),
    ("A100", 1.555),  # 40GB SXM and PCIe
    ("L40S", 0.864),
    ("L40", 0.864),
    ("A10G", 0.6),
    ("A10", 0.6),
    ("L4", 0.3),
    ("RTX 4090", 1.008),
    ("RTX 3090", 0.936),
    ("V100", 0.9),
    ("T4", 0.32),
)


def bandwidth_for(device_name: str) -> float | None:
    """Bytes/s for a device name from ``BANDWIDTH_TBS``, or None if it isn't listed."""
    return next((tbs * 1e12 for key, tbs in BANDWIDTH_TBS if key in device_name), None)


@dataclass(frozen=True)
class Sizes:
    scale: float
    n_layers: int | None  # None: Gemma-2-2B's 26
    prompt: int  # prompt tokens for decoding and sampling
    decode_new: int  # decoding steps whose time gives tokens/s (over a 1-step run of the same prompt)
    sampling_new: int  # new tokens in the batched-vs-per-sample comparison (TransformerLens is slow per sample)
    batches: tuple[int, int]  # decoding at batch 1 and a full batch; the full batch also samples and ablates
    attribution_batch: int
    attribution_length: int
    ablation_new: int
    latency_prefix: int
    repeats: int
    budgets: dict  # seconds per step
    build_s: float  # what building one dtype's model and SAEs is allowed to take before we start it
    graph: dict  # the graph step: prompts, rows, batch, l0, whole_l0 (bench/graphs.py)


FULL = Sizes(
    scale=1.0, n_layers=None, prompt=32, decode_new=64, sampling_new=16, batches=(1, 16), attribution_batch=4, attribution_length=128,
    ablation_new=32, latency_prefix=64, repeats=5,
    budgets={"decode": 35, "sampling": 40, "attribution": 30, "ablation": 35, "latency": 10, "graph": 90}, build_s=45,
    graph=dict(prompts=(64, 256), rows=32, batch=16, l0=64.0, whole_l0=2.0),
)
SMOKE = Sizes(
    scale=0.02, n_layers=3, prompt=4, decode_new=2, sampling_new=1, batches=(1, 2), attribution_batch=2, attribution_length=8,
    ablation_new=2, latency_prefix=8, repeats=1,
    budgets={"decode": 30, "sampling": 30, "attribution": 30, "ablation": 30, "latency": 30, "graph": 30}, build_s=30,
    graph=dict(prompts=(8,), rows=4, batch=2, l0=4.0, whole_l0=1.0),
)


def run_gpu(args: argparse.Namespace) -> Path:
    """`python -m bench --gpu [--smoke]`: the plan alone, written to ``args.out``."""
    device = "cuda" if not args.smoke else args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device (torch.cuda.is_available() is False); --gpu --smoke runs the plan on the CPU")
    # one CPU thread for the smoke run on a shared CPU, as in `python -m bench` (see --threads)
    torch.set_num_threads(args.threads or (1 if device == "cpu" else torch.get_num_threads()))
    report = Report("lister-tui GPU benchmark" + (" (smoke)" if args.smoke else ""), machine(device))
    args.device = device
    gpu_plan(report, args, smoke=args.smoke)
    if args.smoke:
        for row in report.rows:
            if row.target:
                row.verdict = "not assessed"
        report.notes.insert(0, "smoke run: tiny sizes and one round on the CPU; targets are not assessed")
    md, csv_path = report.write(args.out)
    print(report.markdown())
    print("\n".join(["", "Targets:"] + report.target_lines()))
    print(f"wrote {md} and {csv_path}")
    return md


def gpu_plan(report: Report, args: argparse.Namespace, *, smoke: bool) -> None:
    """Every step of the GPU plan, bf16 then fp32, each skipped with a note if the time box can't hold it."""
    sizes = SMOKE if smoke else FULL
    device = args.device if smoke else "cuda"
    deadline = Deadline(None if smoke else args.time_box)
    bandwidth = args.bandwidth * 1e12 if args.bandwidth else (bandwidth_for(torch.cuda.get_device_name()) if device.startswith("cuda") else None)
    report.settings["GPU plan"] = (
        f"Gemma-2-2B shape ×{sizes.scale:g}, bf16 and fp32, up to {sizes.repeats} rounds per step, "
        f"time box {'none (smoke)' if deadline.total_s is None else f'{deadline.total_s:.0f} s'}"
    )
    report.settings["memory bandwidth"] = "not known (give --bandwidth TB/s)" if bandwidth is None else f"{bandwidth / 1e12:.2f} TB/s"

    def say(text: str) -> None:
        print(f"[{deadline.elapsed:6.1f} s] {text}", flush=True)

    for dtype in (torch.bfloat16, torch.float32):
        name = str(dtype).removeprefix("torch.")
        if not deadline.allows(sizes.build_s):
            report.notes.append(f"{name}: skipped: building needs ~{sizes.build_s:.0f} s, {deadline.left:.0f} s left in the time box")
            say(f"{name}: skipped (time box)")
            continue
        say(f"{name}: building the model and SAEs")
        bench = gemma_like_bench(sizes.scale, device=device, dtype=dtype, n_layers=sizes.n_layers)
        tag = f"[{bench.name}, {name}] "
        report.notes.append(
            f"{tag}{bench.parameters / 1e9:.2f}B parameters ({bench.weight_bytes / 2**30:.2f} GiB), {len(bench.saes)} SAEs of "
            f"{next(iter(bench.saes.values())).cfg.d_sae} features ({bench.sae_bytes(next(iter(bench.saes))) / 2**20:.0f} MiB each); "
            f"built by {deadline.elapsed:.0f} s"
        )
        say(f"{name}: built")
        for step in STEPS:
            if name not in STEP_DTYPES.get(step, (name,)):
                continue
            budget = sizes.budgets[step]
            if not deadline.allows(budget):
                report.notes.append(f"{tag}{step}: skipped: its budget is {budget} s, {deadline.left:.0f} s left in the time box")
                say(f"{name} {step}: skipped (time box)")
                continue
            budget = min(budget, deadline.left)
            before = len(report.rows)
            timings = run_step(step, report, bench, sizes, device, bandwidth, budget)
            for row in report.rows[before:]:
                row.setting = tag + row.setting
            if timings:
                peak_rows(report, tag + step, timings)
            say(f"{name} {step}: done")
        del bench
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    report.notes.append(f"GPU plan: {deadline.elapsed:.0f} s in all")
    say("GPU plan done")


STEPS = ("decode", "sampling", "attribution", "ablation", "latency", "graph")
# steps that run in some dtypes only: the graph's batched and one-by-one rows must be the same
# numbers, which float32 can show and bf16's rounding (different batch shapes, other kernels) can't
STEP_DTYPES = {"graph": ("float32",)}


def run_step(step: str, report: Report, bench: Bench, sizes: Sizes, device: str, bandwidth: float | None, budget: float) -> dict:
    """One step of the plan within ``budget`` seconds; returns its timings (with peak memory)."""
    timing = {"budget_s": budget, "min_repeats": min(3, sizes.repeats), "track_memory": True}
    full_batch = sizes.batches[1]
    if step == "decode":
        return decode_throughput(report, bench, sizes, device, bandwidth, budget)
    if step == "sampling":
        return comparisons.compare_sampling(report, bench, sizes.repeats, full_batch, sizes.prompt, sizes.sampling_new, **timing)
    if step == "attribution":
        return comparisons.compare_attribution(report, bench, sizes.repeats, sizes.attribution_batch, sizes.attribution_length, **timing)
    if step == "ablation":
        return comparisons.compare_ablated_generation(report, bench, sizes.repeats, full_batch, sizes.prompt, sizes.ablation_new, **timing)
    if step == "latency":
        return first_token_latency(report, bench, sizes, device, budget)
    if step == "graph":
        graph_step(report, bench, sizes, device, budget)
        return {}  # its peak-memory rows are its own (bench/graphs.py)
    raise ValueError(f"unknown step {step!r}; steps: {', '.join(STEPS)}")


def peak_rows(report: Report, setting: str, timings: dict[str, Timing]) -> None:
    for variant, t in timings.items():
        if t.peak_bytes is not None:
            mib = t.peak_bytes / 2**20
            report.rows.append(Row("8 peak memory", variant, setting, mib, mib, mib, mib, "MiB over the loaded model and SAEs"))


def bytes_per_decode_step(bench: Bench) -> int:
    """Weights read once per decoding step: every parameter except the embedding table,
    of which a step reads only its batch's rows (the KV cache's reads come on top)."""
    embed = bench.model.embed.W_E
    return bench.weight_bytes - embed.numel() * embed.element_size()


def decode_throughput(report: Report, bench: Bench, sizes: Sizes, device: str, bandwidth: float | None, budget: float) -> dict:
    """Decode tokens/s at batch 1 and 16: a run of 1 + n steps against a run of 1 step from the
    same prompt, so that the prompt's prefill is not counted as decoding."""
    n = sizes.decode_new
    variants = {}
    for batch in sizes.batches:
        prompts = bench.random_prompts(batch, sizes.prompt)
        for steps in (1, n + 1):
            variants[f"batch {batch}, {steps} step{'s' * (steps > 1)}"] = (
                lambda p=prompts, s=steps: comparisons._generate(bench, p, s)
            )
    with torch.inference_mode():
        timings = time_side_by_side(variants, sizes.repeats, device, budget_s=budget, min_repeats=min(3, sizes.repeats), track_memory=True)
    setting = f"prompt {sizes.prompt} tokens, {n} decoding steps timed"
    report.add_timings("7 decode", setting, timings)
    per_step_bytes = bytes_per_decode_step(bench)
    for batch in sizes.batches:
        short, long = timings[f"batch {batch}, 1 step"], timings[f"batch {batch}, {n + 1} steps"]
        paired = sorted(batch * n / max(b - a, 1e-12) for a, b in zip(short.seconds, long.seconds))
        best = batch * n / max(long.best - short.best, 1e-12)
        row = Row("7 decode", f"batch {batch}: decode tokens/s", setting, best, statistics.median(paired), paired[0], paired[-1],
                  "tokens/s", long.cv, long.n, "")
        if bandwidth is not None:
            bound = batch * bandwidth / per_step_bytes
            row.ratio, row.ratio_low, row.ratio_high = best / bound, paired[0] / bound, paired[-1] / bound
            row.ratio_meaning = f"of the bandwidth bound {bound:.0f} tokens/s"
            report.notes.append(
                f"roofline, batch {batch}: {per_step_bytes / 2**30:.2f} GiB of weights per step ÷ {bandwidth / 1e12:.2f} TB/s "
                f"= {per_step_bytes / bandwidth * 1e3:.2f} ms per step, at most {bound:.0f} tokens/s; measured {best:.0f} "
                f"({best / bound:.0%}, rounds {paired[0]:.0f}–{paired[-1]:.0f})"
            )
        report.rows.append(row)
    return timings


def first_token_latency(report: Report, bench: Bench, sizes: Sizes, device: str, budget: float) -> dict:
    """The explorer's regenerate → first token, through the core call its worker makes
    (``generate`` with the ablation's hooks and an ``on_step`` callback), cancelled at the
    first token as the explorer's stream would show it. Not through the Textual app:
    the app loads registry models, and this random Gemma shape is not one."""
    from lister_tui.core.engine.ablation import (
        EVERY_POSITION,
        Ablation,
        FeatureAblation,
        ablation_hooks,
    )

    sae_id = next(s for s in bench.saes if s.startswith("res"))
    features = comparisons._ablation_features(bench, sae_id, 5)
    ablation = Ablation(tuple(FeatureAblation(sae_id, f, EVERY_POSITION) for f in features))
    saes = {sae_id: bench.saes[sae_id]}
    prompts = bench.random_prompts(1, sizes.latency_prefix)
    from lister_tui.core.engine.sampling import generate

    def regenerate():
        return generate(
            bench.model, prompts, [0], temperature=0.8, top_p=0.9, max_new_tokens=100, stop_ids=[],
            hook_factory=lambda n: ablation_hooks(ablation, saes, n), on_step=lambda steps, tokens: True,
        )

    with torch.inference_mode():
        timings = time_side_by_side(
            {"regenerate → first token": regenerate}, max(sizes.repeats, 5 if sizes.repeats > 1 else 1), device,
            budget_s=budget, min_repeats=min(3, sizes.repeats), track_memory=True,
        )
    setting = f"1 sample, {sizes.latency_prefix}-token prefix, 5 features of {sae_id} ablated everywhere"
    value_row(report, "5 explorer latency", "regenerate → first token", setting, timings["regenerate → first token"],
              Target(0.150, False, "< 150 ms"))
    return timings


def graph_step(report: Report, bench: Bench, sizes: Sizes, device: str, budget: float) -> None:
    """Attribution graphs on the model of ``bench``: 26 random transcoders, each prompt length in turn.

    Rows batched vs one per target, the forward alone and the extrapolated whole graph
    (bench/graphs.py :func:`graph_comparison`), then one whole graph at ``whole_l0`` if the
    extrapolation says it fits in what is left of ``budget``. On a GPU, running out of memory or
    any other failure is noted in the report, not raised (the step has never run on one).
    """
    import time

    from bench.graphs import GraphCase, graph_comparison, whole_graph
    from bench.shapes import GEMMA_2_2B, _round, random_transcoders, set_l0

    plan = sizes.graph
    started = time.perf_counter()
    dtype = next(bench.model.parameters()).dtype
    width = _round(GEMMA_2_2B["d_sae"] * sizes.scale, 256)
    tokens = bench.random_prompts(1, max(plan["prompts"]), seed=1)[0]
    tcs = {}
    try:
        tcs = random_transcoders(bench.model, width, l0=plan["l0"], device=device, dtype=dtype)
        report.notes.append(
            f"[{bench.name}] graph: {len(tcs)} random JumpReLU skip transcoders of {width} features, built in "
            f"{time.perf_counter() - started:.0f} s; attention features off (as circuit-tracer)"
        )
        for i, prompt in enumerate(plan["prompts"]):
            share_started = time.perf_counter()
            share = (budget - (share_started - started)) / (len(plan["prompts"]) - i)
            case = GraphCase(bench.name, bench.model, tcs, {}, tokens[:prompt], prompt - 1, bench.blank_id, bench.newline_id)
            set_l0(tcs.values(), plan["l0"], bench.model, case.tokens)
            result = graph_comparison(report, case, n_rows=plan["rows"], batch=plan["batch"], repeats=sizes.repeats,
                                      device=device, budget_s=share / 2, setting=f"{prompt}-token prompt, L0 {plan['l0']:g}")
            # one whole graph at whole_l0, if the time the rows took says it fits in this prompt's share
            t = result["timings"]
            forward = t[next(k for k in t if k.startswith("forward"))].best
            batched = next(k for k in t if k.startswith("batched"))
            per_row = min(max(t[batched].best - forward, 0.0), t["one per target"].best) / result["rows"]
            expected = forward + per_row * result["all_rows"] * plan["whole_l0"] / plan["l0"]
            left = share - (time.perf_counter() - share_started)
            if expected < left:
                set_l0(tcs.values(), plan["whole_l0"], bench.model, case.tokens)
                whole_graph(report, case, batch=plan["batch"], device=device, setting=f"{prompt}-token prompt, L0 {plan['whole_l0']:g}")
            else:
                report.notes.append(f"[{bench.name}] graph: whole graph at {prompt} tokens, L0 {plan['whole_l0']:g} skipped: "
                                    f"~{expected:.0f} s expected, {max(left, 0):.0f} s left of its share")
    except torch.cuda.OutOfMemoryError as exc:
        report.notes.append(f"[{bench.name}] graph: out of memory ({str(exc).splitlines()[0]}); the rest of the step skipped")
    except Exception as exc:  # never run on a GPU: a failure there is reported, and the rest of the report kept
        if device == "cpu":
            raise  # the smoke run must fail loudly
        first = str(exc).splitlines()[0] if str(exc) else ""
        report.notes.append(f"[{bench.name}] graph: FAILED ({type(exc).__name__}: {first}); the rest of the step skipped")
    finally:
        del tcs
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
