"""Where one-pass attribution spends its time on lister-tiny: the model's pass, the per-SAE
floor, and whether stacking the SAEs' matmuls into one batched matmul would lower it.

    python -m bench.profile_attribution [--batch 16] [--length 48] [--rounds 7]

The speed-up over splicing each SAE alone is N·(P_s + S_s) / (P + N·S), with P our
forward+backward pass, S our per-SAE work, and P_s + S_s one spliced pass (which
backpropagates only down to its SAE, so P_s < P). On a model as small as lister-tiny
S is not small next to P, so S is what decides whether 0.7 × N is reached. This prints
P, S, the operators inside S (torch.profiler), and the per-SAE matmuls run one by one
against the same matmuls stacked into one ``torch.bmm`` (what stacking the encoders
and the decoder-gradient projections of same-shaped SAEs would do).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.comparisons import _tokens, attribution_one_pass, attribution_splice_each
from bench.harness import load_average
from bench.shapes import tiny_bench
from lister_tui.core.engine import attribution as engine


def _best_and_median(fn, rounds: int) -> tuple[float, float]:
    fn()  # warm-up
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return min(seconds), statistics.median(seconds)


def main(batch: int, length: int, rounds: int) -> None:
    torch.set_num_threads(1)
    bench = tiny_bench("cpu")
    tokens = _tokens(bench, batch, length)
    ids = list(bench.saes)
    hooks = [bench.saes[s].cfg.metadata.hook_name for s in ids]
    target = [length - 1] * batch
    acts, grads, metric = engine.activations_and_gradients(
        bench.model, tokens, target, hooks, blank_id=bench.blank_id, newline_id=bench.newline_id
    )
    real = torch.ones(batch, length, dtype=torch.bool)

    def the_pass():
        engine.activations_and_gradients(bench.model, tokens, target, hooks, blank_id=bench.blank_id, newline_id=bench.newline_id)

    def per_sae_work():
        for sid in ids:
            sae = bench.saes[sid]
            engine._attribute_one(sid, sae, acts[sae.cfg.metadata.hook_name], grads[sae.cfg.metadata.hook_name], real, metric)

    x = torch.stack([acts[h].flatten(2) if acts[h].ndim == 4 else acts[h] for h in hooks]).flatten(1, 2)  # [N, batch·pos, d_in]
    g = torch.stack([grads[h].flatten(2) if grads[h].ndim == 4 else grads[h] for h in hooks]).flatten(1, 2)
    w_enc = torch.stack([bench.saes[s].W_enc for s in ids])  # [N, d_in, d_sae]
    w_dec_t = torch.stack([bench.saes[s].W_dec.T for s in ids])  # [N, d_in, d_sae]

    def matmuls_one_by_one():
        for i in range(len(ids)):
            x[i] @ w_enc[i]
            g[i] @ w_dec_t[i]

    def matmuls_stacked():
        torch.bmm(x, w_enc)
        torch.bmm(g, w_dec_t)

    print(f"lister-tiny, {len(ids)} SAEs of {bench.saes[ids[0]].cfg.d_sae}, {batch} × {length} tokens, 1 thread, "
          f"load average {load_average():.2f}; best / median of {rounds} rounds")
    figures = {
        "one pass, all SAEs (project)": lambda: attribution_one_pass(bench, tokens, ids),
        "  forward + backward (P)": the_pass,
        f"  per-SAE work, all {len(ids)} (N·S)": per_sae_work,
        "    their matmuls one by one": matmuls_one_by_one,
        "    their matmuls stacked (bmm)": matmuls_stacked,
        "splice each SAE alone (study)": lambda: attribution_splice_each(bench, tokens, ids),
    }
    results = {name: _best_and_median(fn, rounds) for name, fn in figures.items()}
    for name, (best, median) in results.items():
        print(f"{name:<40} {best * 1e3:8.1f} ms  {median * 1e3:8.1f} ms")
    p, ns = results["  forward + backward (P)"][0], results[f"  per-SAE work, all {len(ids)} (N·S)"][0]
    spliced = results["splice each SAE alone (study)"][0]
    n = len(ids)
    print(f"per SAE: {ns / n * 1e3:.1f} ms; one spliced pass: {spliced / n * 1e3:.1f} ms; "
          f"speed-up N·spliced / (P + N·S) = {spliced / (p + ns):.2f} (target {0.7 * n:.1f}); "
          f"with no per-SAE work at all it would be {spliced / p:.2f}")
    from torch.profiler import profile

    with profile() as prof:
        per_sae_work()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=7)
    a = parser.parse_args()
    main(a.batch, a.length, a.rounds)
