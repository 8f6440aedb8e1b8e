"""The batch experiment on lister-tiny: batched vs one regeneration at a time, and the first partial result.

24 short-template lists × 4 seeds, zeroing res_0's " short" features (found from their
activations on the word), base, intervened and the random control (3 × 96 lists), without
and with batching across units. Both give the same tokens (tested); the ratio is
one-at-a-time ÷ batched (target ≥ 5×). The first partial result is the time from the
call to the first chunk's summary (the explorer's first chunk; target < 1 s on an idle 2-core machine).

    python -m bench.interventions [--threads 2] [--repeats 3] [--smoke]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench.harness import Report, Target, Timing, load_average, machine, ratio_row, time_side_by_side, value_row

LISTS, SEEDS = 24, 4


def short_features(lab) -> list[int]:
    from lister_tui.core.engine.prompts import prompt_ids

    sae = lab.load_sae("res_0", cache=True)
    hook = sae.cfg.metadata.hook_name
    ids = prompt_ids(lab, "short", "Animals")
    pos = ids.index(lab.tokenizer.convert_tokens_to_ids(" short"))
    with torch.inference_mode():
        _, cache = lab.model.run_with_cache(torch.tensor([ids]), names_filter=hook)
        acts = sae.encode(cache[hook][0, pos])
    return [int(f) for f in torch.nonzero(acts > 0).flatten()]


def compare_interventions(report: Report, repeats: int, smoke: bool = False, lab=None) -> None:
    from lister_tui.core.engine.generation import sample_lists
    from lister_tui.core.engine.interventions import Intervention, InterventionSet
    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.engine.prompts import TOPICS, build_prompts
    from lister_tui.core.study.intervention_batch import ExperimentSettings, run_experiment, top_attributed
    from lister_tui.core.study.settings import SAMPLING_PRESETS

    lab = lab if lab is not None else load_model("lister-tiny", device="cpu")
    n_lists, n_seeds = (4, 2) if smoke else (LISTS, SEEDS)
    topics = (TOPICS * 2)[:n_lists]
    specs = build_prompts(["short"], list(dict.fromkeys(topics)), samples_per_topic=-(-n_lists // len(set(topics))), base_seed=5)[:n_lists]
    samples = sample_lists(lab, specs, SAMPLING_PRESETS["code"])
    iset = InterventionSet(tuple(Intervention("res_0", f, "zero", 0.0, "all") for f in short_features(lab)))
    exclude = top_attributed(lab, samples, ["res_0"])
    settings = ExperimentSettings(iset, n_seeds=n_seeds)  # the explorer's chunks

    variants = {
        "batched": lambda: run_experiment(lab, samples, settings, exclude=exclude),
        "one regeneration at a time": lambda: run_experiment(lab, samples, settings, exclude=exclude, batched=False),
    }
    timings = time_side_by_side(variants, repeats)
    setting = f"[lister-tiny] {n_lists} lists × {n_seeds} seeds, base + intervened + random control"
    comparison = "batch experiment"
    report.add_timings(comparison, setting, timings)
    ratio_row(report, comparison, setting, timings["one regeneration at a time"], timings["batched"], "one at a time ÷ batched", Target(5.0, True))

    firsts = []
    load0 = load_average()
    for _ in range(max(repeats, 3)):
        start = time.perf_counter()
        seen: list[float] = []

        def first(exp, seen=seen, start=start) -> bool:
            seen.append(time.perf_counter() - start)
            return True  # stop at the first chunk: only its time is measured

        try:
            run_experiment(lab, samples, settings, exclude=exclude, on_partial=first)
        except Exception:  # noqa: BLE001 - Cancelled, by design
            pass
        firsts.append(seen[0])
    timing = Timing(tuple(firsts), firsts[0], None, (load0, load_average()))
    value_row(report, comparison, f"first partial result ({settings.chunk} units)", setting, timing, Target(1.0, False, "< 1 s on an idle 2-core machine"))


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(prog="python -m bench.interventions", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out", type=Path, default=Path("bench/out/interventions"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = Report("lister-tui benchmark: batch experiment of interventions", {**machine("cpu"), "repeats": args.repeats})
    compare_interventions(report, 1 if args.smoke else args.repeats, args.smoke)
    md, _ = report.write(args.out)
    print(report.markdown())
    return md


if __name__ == "__main__":
    main()
