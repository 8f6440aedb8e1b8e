"""Attribution graphs: batched targets vs one backward pass per target, and one whole graph.

    python -m bench.graphs                                   # lister-tiny, its shipped transcoders, CPU
    python -m bench.graphs --rows 64 --repeats 1
    python -m bench.graphs --shape gemma-2-2b --scale 0.25   # random Gemma-2-2B shape × 0.25, 26 transcoders
    python -m bench.graphs --shape gemma-2-2b --scale 0.25 --prompts 64 256 --attention

lister-tiny, measured side by side in one run on the list short/Animals/0 at its attribution
position:

1. **rows, batched vs one by one**: the edges into ``--rows`` targets (the metric, then
   features) with 64 targets per backward pass against one backward pass per target; the two
   must be the same numbers (the largest difference is printed);
2. **one whole graph** (attention features on and off): its time, node count and the memory
   estimate the CLI checks.

``--shape gemma-2-2b``: a random model of Gemma-2-2B's architecture at ``--scale``
(bench/shapes.py) with one random JumpReLU skip transcoder per layer (26; SAELens's
transcoder class, reading ``blocks.L.ln2.hook_normalized`` and writing ``hook_mlp_out`` as
lister-tiny's; 16384 × scale features, ``--l0`` of them firing per token) and, with
``--attention``, a random ``hook_z`` SAE at every layer. For each prompt length (random
tokens, the target at the last position), :func:`graph_comparison`:

1. **rows**: the edges into a fixed subset of rows (the metric and ``--rows`` − 1 features
   spread evenly over all of them), ``--batch`` targets per backward pass against one per
   target, interleaved; the largest difference between the two; each variant's peak memory;
   the forward pass on ``batch`` copies timed alone, so that the whole graph's time can be
   **extrapolated** (forward + every row × the cost of a row; labelled so);
2. **one whole graph** at ``--graph-l0`` (fewer features firing, so that every row fits the
   run; same model, thresholds raised): its time and peak memory beside the CLI's estimate.

Peak memory: on a CPU the process's resident set sampled every millisecond during a
variant's warm-up, over the resident set before it (bench/harness.py ``PeakMemory``; torch's
tensors are in it, and so is whatever the allocator keeps); on a GPU
``torch.cuda.max_memory_allocated`` after a reset. Random weights give the real shapes, so
time and memory are realistic; nothing here says what a trained model's graph looks like.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bench.harness import PeakMemory, Report, Row, machine, ratio_row, time_side_by_side

COMPARISON = "12 graph"


@dataclass
class GraphCase:
    """A model with one transcoder per layer (and maybe attention SAEs), a prompt and its target."""

    name: str
    model: object  # HookedTransformer
    transcoders: Mapping[int, object]
    attn_saes: Mapping[int, object]
    tokens: list[int]
    pos: int
    blank_id: int
    newline_id: int

    @property
    def widths(self) -> list[int]:
        return [tc.cfg.d_sae for tc in self.transcoders.values()] + [s.cfg.d_sae for s in self.attn_saes.values()]


def pick_rows(nodes, n_rows: int) -> list[int]:
    """The target(s), then ``n_rows`` − 1 feature rows spread evenly over every feature (all layers)."""
    from lister_tui.core.study.graphs.attribute import ATTN, TARGET, TC

    features = np.flatnonzero(np.isin(nodes.kind, (TC, ATTN)))
    take = min(max(n_rows - 1, 0), len(features))
    picked = features[np.unique(np.linspace(0, len(features) - 1, take).round().astype(int))] if take else features[:0]
    return [int(i) for i in nodes.where(TARGET)] + [int(i) for i in picked]


def _mib(n_bytes: float) -> float:
    return n_bytes / 2**20


def graph_comparison(
    report: Report,
    case: GraphCase,
    *,
    n_rows: int,
    batch: int,
    repeats: int,
    device: str,
    budget_s: float | None = None,
    setting: str = "",
) -> dict:
    """Rows batched vs one per target (interleaved), the forward alone, the extrapolated whole graph.

    Adds rows to ``report`` under comparison "12 graph" and returns
    ``{"timings", "difference", "rows", "all_rows", "nodes", "extrapolated_s", "estimate_bytes"}``.
    """
    from lister_tui.core.study.graphs import replacement as rep
    from lister_tui.core.study.graphs.attribute import (
        ATTN,
        TARGET,
        TC,
        Replacement,
        build_nodes,
        compute_rows,
        memory_estimate,
    )

    model, tcs, attn = case.model, case.transcoders, case.attn_saes
    ids = dict(blank_id=case.blank_id, newline_id=case.newline_id)
    tokens = torch.tensor(case.tokens[: case.pos + 1])
    state = rep.prompt_state(model, tokens, tcs, attn, **ids)
    nodes = build_nodes(state, bool(attn), [case.pos])
    direction, _ = rep.metric_direction(model, **ids)
    rows = pick_rows(nodes, n_rows)
    all_rows = int(np.isin(nodes.kind, (TC, ATTN, TARGET)).sum())
    results: dict[str, torch.Tensor] = {}
    batch = min(batch, len(rows))  # what compute_rows does with fewer rows than a batch
    batched = f"batched ({batch} per pass)"

    def rows_with(size: int, name: str):
        def go():
            results[name] = compute_rows(model, state, tcs, attn, nodes, rows, direction, batch=size)

        return go

    def forward_only():
        with torch.inference_mode(False), torch.enable_grad():
            Replacement(model, state, tcs, attn, batch)

    variants = {batched: rows_with(batch, batched), "one per target": rows_with(1, "one per target"),
                f"forward alone ({batch} copies)": forward_only}
    timings = time_side_by_side(variants, repeats, device, budget_s=budget_s, min_repeats=1, track_memory=True)
    difference = float((results[batched] - results["one per target"]).abs().max())
    scale = float(results["one per target"].abs().max())
    where = setting or case.name
    setting_rows = f"{where}; {len(rows)} of {all_rows} rows, {len(nodes)} nodes"
    report.add_timings(COMPARISON, setting_rows, timings)
    ratio_row(report, COMPARISON, setting_rows, timings["one per target"], timings[batched], "one per target ÷ batched",
              note=f"largest difference {difference:.3g} (largest |edge| {scale:.3g})")
    for variant, t in timings.items():
        if t.peak_bytes is not None:
            report.rows.append(Row(COMPARISON, f"peak memory: {variant}", setting_rows, _mib(t.peak_bytes), _mib(t.peak_bytes),
                                   _mib(t.peak_bytes), _mib(t.peak_bytes), "MiB", note=peak_meaning(device)))
    # extrapolated: the forward on `batch` copies once, then every row at the measured cost of a row
    forward = timings[f"forward alone ({batch} copies)"].best
    extrapolated = {}
    for variant, size in ((batched, batch), ("one per target", 1)):
        fwd = forward if size == batch else 0.0  # one copy's forward is within a row's cost at batch 1
        per_row = max(timings[variant].best - fwd, 0.0) / len(rows)
        extrapolated[variant] = fwd + per_row * all_rows
        report.rows.append(Row(COMPARISON, f"{variant}: whole graph, EXTRAPOLATED", f"{where}; {all_rows} rows, {len(nodes)} nodes",
                               extrapolated[variant], extrapolated[variant], extrapolated[variant], extrapolated[variant], "s",
                               note=f"extrapolated, not measured: forward {fwd:.3g} s + {all_rows} rows × {per_row:.3g} s"))
    estimate = memory_estimate(len(nodes), case.pos + 1, model, case.widths, batch)
    report.rows.append(Row(COMPARISON, "whole graph: memory estimate (the CLI's check)", f"{where}; {len(nodes)} nodes",
                           _mib(estimate), _mib(estimate), _mib(estimate), _mib(estimate), "MiB",
                           note=f"dense adjacency alone {_mib(4 * len(nodes) ** 2):.0f} MiB"))
    peaks = ", ".join(f"{v} {_mib(t.peak_bytes):.0f} MiB" for v, t in timings.items() if t.peak_bytes is not None)
    report.notes.append(
        f"graph rows [{where}]: {len(rows)} of {all_rows} rows ({len(nodes)} nodes): {batched} {timings[batched].best:.2f} s, "
        f"one per target {timings['one per target'].best:.2f} s (one per target ÷ batched "
        f"{timings['one per target'].best / timings[batched].best:.2f}); largest difference {difference:.3g} "
        f"(largest |edge| {scale:.3g}); forward alone {forward:.2f} s; peak memory {peaks or 'not measured'}; whole graph "
        f"EXTRAPOLATED (not measured): {batched} {extrapolated[batched]:.0f} s, one per target "
        f"{extrapolated['one per target']:.0f} s; the CLI's memory estimate {_mib(estimate):.0f} MiB"
    )
    return {"timings": timings, "difference": difference, "rows": len(rows), "all_rows": all_rows, "nodes": len(nodes),
            "extrapolated_s": extrapolated, "estimate_bytes": estimate}


def peak_meaning(device: str) -> str:
    if device.startswith("cuda"):
        return "torch.cuda.max_memory_allocated over the memory allocated before, during the warm-up run"
    return "CPU: peak resident set (sampled every ms) over the resident set before, during the warm-up run"


def whole_graph(report: Report, case: GraphCase, *, batch: int, device: str, setting: str = "") -> dict:
    """One whole graph, measured once: time, peak memory, node count, the CLI's estimate."""
    from lister_tui.core.study.graphs.attribute import attribute_graph, memory_estimate

    gc.collect()
    meter = PeakMemory(device)
    meter.start()
    started = time.perf_counter()
    graph = attribute_graph(case.model, case.tokens, case.transcoders, case.attn_saes, [case.pos],
                            blank_id=case.blank_id, newline_id=case.newline_id, batch=batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = meter.stop()
    n = len(graph.nodes)
    estimate = memory_estimate(n, case.pos + 1, case.model, case.widths, batch)
    where = f"{setting or case.name}; {n} nodes, {batch} targets per pass"
    report.rows.append(Row(COMPARISON, "whole graph (measured)", where, seconds, seconds, seconds, seconds, "s", repeats=1))
    report.rows.append(Row(COMPARISON, "whole graph: peak memory (measured)", where, _mib(peak), _mib(peak), _mib(peak), _mib(peak),
                           "MiB", note=f"{peak_meaning(device)}; the CLI's estimate {_mib(estimate):.0f} MiB"))
    report.notes.append(f"whole graph [{where}]: {seconds:.1f} s measured, peak memory {_mib(peak):.0f} MiB "
                        f"(the CLI's estimate {_mib(estimate):.0f} MiB)")
    del graph
    gc.collect()
    return {"seconds": seconds, "peak_bytes": peak, "nodes": n, "estimate_bytes": estimate}


def gemma_case(scale: float, *, prompt: int, l0: float, attention: bool, device: str = "cpu", dtype=torch.float32,
               n_layers: int | None = None, seed: int = 0) -> GraphCase:
    """A random Gemma-2-2B-shape model at ``scale`` with 26 random transcoders (and hook_z SAEs) and a random prompt."""
    from bench.shapes import (
        GEMMA_2_2B,
        _round,
        gemma_like_bench,
        random_transcoders,
        set_l0,
    )

    bench = gemma_like_bench(scale, device=device, dtype=dtype, n_layers=n_layers, sae_layers={}, seed=seed)
    width = _round(GEMMA_2_2B["d_sae"] * scale, 256)
    tcs = random_transcoders(bench.model, width, l0=l0, device=device, dtype=dtype, seed=seed)
    attn = {}
    if attention:
        from bench.shapes import random_jumprelu_sae

        cfg = bench.model.cfg
        for layer in range(cfg.n_layers):
            attn[layer] = random_jumprelu_sae(f"blocks.{layer}.attn.hook_z", cfg.n_heads * cfg.d_head, width,
                                              device=device, dtype=dtype, seed=seed + 2000 + layer)
    tokens = bench.random_prompts(1, prompt, seed=seed)[0]
    set_l0(list(tcs.values()) + list(attn.values()), l0, bench.model, tokens)
    return GraphCase(bench.name, bench.model, tcs, attn, tokens, prompt - 1, bench.blank_id, bench.newline_id)


def _gemma(args: argparse.Namespace) -> None:
    from bench.shapes import set_l0

    torch.set_num_threads(args.threads)
    report = Report(f"attribution graphs, Gemma-2-2B shape ×{args.scale:g}", machine("cpu"))
    started = time.perf_counter()
    case = gemma_case(args.scale, prompt=max(args.prompts), l0=args.l0, attention=args.attention)
    tcs = case.transcoders
    report.settings["model"] = (
        f"{case.name}: {sum(p.numel() for p in case.model.parameters()) / 1e6:.0f}M parameters, 26 random JumpReLU skip transcoders "
        f"of {next(iter(tcs.values())).cfg.d_sae} features (L0 {args.l0:g} per token)"
        + (f", {len(case.attn_saes)} random hook_z SAEs" if case.attn_saes else ", attention features off")
        + f"; built in {time.perf_counter() - started:.0f} s"
    )
    full_tokens = case.tokens
    for prompt in args.prompts:
        case.tokens, case.pos = full_tokens[:prompt], prompt - 1
        saes = list(tcs.values()) + list(case.attn_saes.values())
        set_l0(saes, args.l0, case.model, case.tokens)  # L0 exact on this prompt
        setting = f"{case.name}, {prompt}-token prompt, L0 {args.l0:g}"
        print(f"[{time.perf_counter() - started:6.1f} s] rows, {prompt} tokens", flush=True)
        graph_comparison(report, case, n_rows=args.rows, batch=args.batch, repeats=args.repeats, device="cpu", setting=setting)
        if args.graph_l0 > 0:
            print(f"[{time.perf_counter() - started:6.1f} s] whole graph, {prompt} tokens", flush=True)
            set_l0(saes, args.graph_l0, case.model, case.tokens)
            whole_graph(report, case, batch=args.batch, device="cpu", setting=f"{case.name}, {prompt}-token prompt, L0 {args.graph_l0:g}")
    report.notes.append(f"{time.perf_counter() - started:.0f} s in all")
    print(report.markdown())


def _tiny(args: argparse.Namespace) -> None:
    from lister_tui.core.engine.generation import sample_lists
    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.engine.prompts import build_prompts
    from lister_tui.core.engine.transcoders import load_transcoders
    from lister_tui.core.study.graphs import replacement as rep
    from lister_tui.core.study.graphs.attribute import (
        ATTN,
        TARGET,
        TC,
        attribute_graph,
        build_nodes,
        compute_rows,
        memory_estimate,
    )
    from lister_tui.core.study.settings import SAMPLING_PRESETS

    torch.set_num_threads(args.threads)
    loaded = load_model("lister-tiny", device="cpu")
    tcs = load_transcoders(loaded)
    attn = {layer: loaded.load_sae(f"attn_{layer}") for layer in range(loaded.model.cfg.n_layers)}
    sample = sample_lists(loaded, build_prompts(["short"], ["Animals"], samples_per_topic=1, base_seed=0), SAMPLING_PRESETS["code"])[0]
    pos = sample.structure.attribution_pos
    ids = dict(blank_id=loaded.ids.blank, newline_id=loaded.ids.newline)
    state = rep.prompt_state(loaded.model, torch.tensor(sample.tokens[: pos + 1]), tcs, attn, **ids)
    nodes = build_nodes(state, True, [pos])
    direction, _ = rep.metric_direction(loaded.model, **ids)
    rows = list(nodes.where(TARGET)) + list(np.flatnonzero(np.isin(nodes.kind, (TC, ATTN))))[: args.rows - 1]
    variants = (("batched (64 per pass)", 64), ("batched (8 per pass)", 8), ("one per target", 1))
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    results = {}
    for _ in range(args.repeats):  # interleaved, so load on the machine hits both alike
        for name, batch in variants:
            started = time.perf_counter()
            results[name] = compute_rows(loaded.model, state, tcs, attn, nodes, rows, direction, batch=batch)
            times[name].append(time.perf_counter() - started)
    diff = float((results["batched (64 per pass)"] - results["one per target"]).abs().max())
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"edges into {len(rows)} targets of {len(nodes)} nodes (attention features on), median of {args.repeats}:")
    for name, value in medians.items():
        print(f"  {name}: {value:.2f} s")
    print(f"  one per target / batched: {medians['one per target'] / medians['batched (64 per pass)']:.1f}x; largest difference {diff:.2g}")
    for attention, batch in ((attn, 64), (attn, 8), ({}, 64), ({}, 8)):
        started = time.perf_counter()
        graph = attribute_graph(loaded.model, sample.tokens, tcs, attention, [pos], **ids, batch=batch)
        seconds = time.perf_counter() - started
        widths = [tc.cfg.d_sae for tc in tcs.values()] + [s.cfg.d_sae for s in attention.values()]
        estimate = memory_estimate(len(graph.nodes), pos + 1, loaded.model, widths, 64)
        print(f"whole graph, attention features {'on' if attention else 'off'}, {batch} targets per pass: {len(graph.nodes)} nodes, {seconds:.1f} s, "
              f"memory estimate {estimate / 2**20:.0f} MiB")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=("lister-tiny", "gemma-2-2b"), default="lister-tiny")
    parser.add_argument("--rows", type=int, default=None, help="rows timed batched and one by one (lister-tiny 256, gemma-2-2b 32)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds (lister-tiny 3, gemma-2-2b 2)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scale", type=float, default=0.25, help="gemma-2-2b: every width × scale (1.0 is the real size)")
    parser.add_argument("--prompts", type=int, nargs="+", default=[64], help="gemma-2-2b: prompt lengths in tokens")
    parser.add_argument("--batch", type=int, default=16, help="gemma-2-2b: targets per backward pass in the batched variant")
    parser.add_argument("--l0", type=float, default=16.0, help="gemma-2-2b: features firing per token per layer (16 of 4096 at ×0.25)")
    parser.add_argument("--graph-l0", type=float, default=0.25, help="gemma-2-2b: L0 of the whole graph measured (0: none)")
    parser.add_argument("--attention", action="store_true", help="gemma-2-2b: a random hook_z SAE at every layer (attention features)")
    args = parser.parse_args(argv)
    if args.shape == "gemma-2-2b":
        args.rows, args.repeats = args.rows or 32, args.repeats or 2
        _gemma(args)
    else:
        args.rows, args.repeats = args.rows or 256, args.repeats or 3
        _tiny(args)


if __name__ == "__main__":
    main()
