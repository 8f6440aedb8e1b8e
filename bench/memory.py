"""Peak memory of attribution over N SAEs, streamed (one SAE alive at a time) or all held.

Each measurement runs in a fresh process, so one variant's allocations can't hide in
another's peak: on CPU a thread samples the resident set (/proc/self/statm) every
millisecond while attribution runs (torch releases the GIL inside its ops), on CUDA
``torch.cuda.max_memory_allocated``. The peak is reported over the resident set just
before attribution starts (model loaded, tokens ready). Run as ``python -m bench.memory MODE N SHAPE SCALE
BATCH LENGTH DEVICE``; it prints one JSON line.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import subprocess
import sys
import weakref
from pathlib import Path

import torch


def measure(
    mode: str, n: int, shape: str, scale: float, batch: int, length: int, device: str, *, threads: int | None = 1, bench=None
) -> dict:
    """``bench``: an already loaded Bench to measure on (in-process use; its SAEs are left alone)."""
    from bench.harness import PeakMemory
    from bench.shapes import gemma_like_bench, random_jumprelu_sae, tiny_bench
    from lister_tui.core.engine.attribution import attribute

    if threads:
        torch.set_num_threads(threads)
    if bench is None:
        bench = tiny_bench(device) if shape == "tiny" else gemma_like_bench(scale, device=device)
    else:
        bench = dataclasses.replace(bench, saes=dict(bench.saes))
    specs = [(sid, sae.cfg.metadata.hook_name, sae.cfg.d_in, sae.cfg.d_sae) for sid, sae in bench.saes.items()][:n]
    sae_bytes = bench.sae_bytes(specs[0][0])
    bench.saes.clear()  # the SAEs are made again below, inside the measured window
    tokens = torch.tensor(bench.random_prompts(batch, length), device=device)

    alive = {"now": 0, "max": 0}

    def released() -> None:
        alive["now"] -= 1

    def make(i: int):
        sid, hook, d_in, d_sae = specs[i]
        sae = random_jumprelu_sae(hook, d_in, d_sae, device=device, seed=i)
        alive["now"] += 1
        alive["max"] = max(alive["max"], alive["now"])
        weakref.finalize(sae, released)
        return sid, sae

    gc.collect()
    sampler = PeakMemory(device)
    sampler.start()
    if mode == "held":
        held = [make(i) for i in range(len(specs))]
        stream = iter(held)
    else:
        stream = (make(i) for i in range(len(specs)))
    results = attribute(
        bench.model,
        tokens,
        [length - 1] * batch,
        stream,
        blank_id=bench.blank_id,
        newline_id=bench.newline_id,
        hook_names=[s[1] for s in specs],
    )
    for r in results:
        float(r.attribution.sum())  # use it, keep nothing
        del r
    peak = sampler.stop()
    # what attribution keeps besides SAEs: x and dmetric/dx at each hook point
    activations = sum(batch * length * d_in * 4 * 2 for _, _, d_in, _ in specs)
    return {"mode": mode, "n": len(specs), "peak_over_baseline": peak, "max_saes_alive": alive["max"], "sae_bytes": sae_bytes, "activation_bytes": activations}


def measure_in_subprocess(mode: str, n: int, shape: str, scale: float, batch: int, length: int, device: str) -> dict:
    args = [sys.executable, "-m", "bench.memory", mode, str(n), shape, str(scale), str(batch), str(length), device]
    done = subprocess.run(args, capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    mode, n, shape, scale, batch, length, device = sys.argv[1:8]
    print(json.dumps(measure(mode, int(n), shape, float(scale), int(batch), int(length), device)))
