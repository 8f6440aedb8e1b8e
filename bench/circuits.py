"""Circuits: batched vs one-by-one edges, and the time and memory of a one-sample circuit.

    python -m bench.circuits                  # lister-tiny (8 sites) and the Gemma-2-2B shape ×0.25 (10 sites), CPU
    python -m bench.circuits --smoke          # tiny sizes (what CI runs, so it can't rot)
    python -m bench.circuits --device cuda --scale 1

Measured side by side in one run:

1. **edges, batched vs one by one**: the same circuit (node effects included, so the
   ratio understates the edges' own speed-up) with ``edge_batch`` = 64 downstream nodes
   per forward and backward pass against one pass per downstream node; the two edge sets
   must agree (the largest difference is reported).
2. **a one-sample circuit**: node effects + edges, then the faithfulness curve, their time
   and peak memory (CPU: resident set over the start, sampled every millisecond; CUDA:
   ``max_memory_allocated``), for lister-tiny with its 8 sites and the Gemma-2-2B shape with
   the study's 10 sites (random weights: real shapes, meaningless circuits).

Writes ``bench/out/circuits/report.md`` and ``results.csv``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import torch

from bench.harness import PeakMemory
from bench.shapes import Bench, gemma_like_bench, tiny_bench


@dataclass
class _Spec:
    key: str


def _fake_loaded(bench: Bench, device: str):
    """What build_circuit reads of a LoadedModel, for a bench model (token text = its id)."""
    from lister_tui.core.engine.registry import ModelEntry, SAESite

    sites = tuple(SAESite(i, "attn" if i.startswith("attn") else "res", int(i.split("_")[1])) for i in bench.saes)
    entry = ModelEntry(name=bench.name, description="bench", source="shipped", sites=sites)
    return SimpleNamespace(
        entry=entry,
        model=bench.model,
        device=device,
        ids=SimpleNamespace(blank=bench.blank_id, newline=bench.newline_id),
        tokenizer=SimpleNamespace(decode=lambda ids: f"t{ids[0]}"),
        load_sae=lambda sae_id, cache=False: bench.saes[sae_id],
    )


def _sample(bench: Bench, length: int, seed: int = 0):
    """A stand-in list: random tokens, the attribution position at the last one."""
    tokens = bench.random_prompts(1, length, seed)[0]
    structure = SimpleNamespace(attribution_pos=length - 1)
    return SimpleNamespace(tokens=tokens, structure=structure, spec=_Spec(f"random/{seed}"))


def _timed(fn, repeats: int, device: str) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times, out


def run_shape(bench: Bench, device: str, length: int, nodes: int, repeats: int, rows: list[dict]) -> None:
    from lister_tui.core.study.circuits import (
        CircuitSettings,
        add_faithfulness,
        build_circuit,
    )

    loaded = _fake_loaded(bench, device)
    sample = _sample(bench, length)
    sites = tuple(bench.saes)
    setting = f"{bench.name}, {len(sites)} sites, {length} tokens, {nodes} nodes per site"

    def build(edge_batch: int):
        return build_circuit(loaded, [sample], CircuitSettings(sites=sites, nodes_per_site=nodes, edge_batch=edge_batch))

    build(64)  # warm-up
    # side by side: alternate the two variants so that machine load hits both alike
    batched, one_by_one = [], []
    for _ in range(repeats):
        t, b64 = _timed(lambda: build(64), 1, device)
        batched += t
        t, b1 = _timed(lambda: build(1), 1, device)
        one_by_one += t
    w64 = {(e.source, e.target): e.weight for e in b64.circuit.edges}
    w1 = {(e.source, e.target): e.weight for e in b1.circuit.edges}
    diff = max((abs(w64[k] - w1.get(k, 0.0)) for k in w64), default=0.0)
    for variant, times in (("edges batched (64 rows per backward)", batched), ("edges one by one (one backward per node)", one_by_one)):
        rows.append(dict(comparison="circuit edges", setting=setting, variant=variant, median=statistics.median(times),
                         low=min(times), high=max(times), unit="s", note=f"{len(b64.circuit.edges)} edges"))
    rows.append(dict(comparison="circuit edges", setting=setting, variant="ratio", median=statistics.median(one_by_one) / statistics.median(batched),
                     low=None, high=None, unit="×", note=f"one-by-one / batched; max |weight difference| {diff:.2e}"))

    sampler = PeakMemory(device)
    sampler.start()
    start = time.perf_counter()
    built = build(64)
    mid = time.perf_counter()
    add_faithfulness(loaded, built)
    end = time.perf_counter()
    peak = sampler.stop()
    c = built.circuit
    rows.append(dict(comparison="one-sample circuit", setting=setting, variant="nodes + edges", median=mid - start, low=None, high=None, unit="s",
                     note=f"{len(c.nodes)} nodes, {len(c.edges)} edges of {c.n_candidates} candidate nodes"))
    rows.append(dict(comparison="one-sample circuit", setting=setting, variant="faithfulness curve + completeness", median=end - mid, low=None, high=None,
                     unit="s", note=f"{len(c.faithfulness) + 4} ablated forward passes"))
    rows.append(dict(comparison="one-sample circuit", setting=setting, variant="peak memory over the start", median=peak / 2**20, low=None, high=None,
                     unit="MiB", note="resident set (CPU) or max_memory_allocated (CUDA)"))


def _markdown(table: pd.DataFrame) -> str:
    def cell(v) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return ""
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    head = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.circuits", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=("tiny", "gemma-2-2b", "both"), default="both")
    p.add_argument("--scale", type=float, default=0.25)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("bench/out/circuits"))
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[dict] = []
    repeats = 1 if args.smoke else args.repeats
    args.out.mkdir(parents=True, exist_ok=True)
    if args.shape in ("tiny", "both"):
        run_shape(tiny_bench(args.device), args.device, 12 if args.smoke else 48, 3 if args.smoke else 10, repeats, rows)
        _write(args, rows)  # a long run keeps what it measured so far
    if args.shape in ("gemma-2-2b", "both"):
        bench = gemma_like_bench(0.02 if args.smoke else args.scale, device=args.device, n_layers=4 if args.smoke else None)
        run_shape(bench, args.device, 12 if args.smoke else 48, 3 if args.smoke else 10, repeats, rows)
    print(_write(args, rows))


def _write(args, rows: list[dict]) -> str:
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "results.csv", index=False)
    text = "\n".join([f"# Circuits benchmark ({args.device}, torch threads {torch.get_num_threads()})", "", _markdown(table), ""])
    (args.out / "report.md").write_text(text)
    return text


if __name__ == "__main__":
    main()
