"""Attribution graphs: batched targets vs one backward pass per target, and one whole graph.

    python -m bench.graphs                 # lister-tiny with its shipped transcoders, CPU
    python -m bench.graphs --rows 64 --repeats 1

Measured side by side in one run, on the list short/Animals/0 at its attribution position:

1. **rows, batched vs one by one**: the edges into ``--rows`` targets (the metric, then
   features) with 64 targets per backward pass against one backward pass per target; the two
   must be the same numbers (the largest difference is printed);
2. **one whole graph** (attention features on and off): its time, node count and the memory
   estimate the CLI checks.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

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


if __name__ == "__main__":
    main()
