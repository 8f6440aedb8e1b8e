"""Feature cards on lister-tiny: the corpus pass and a cached card, next to one plain forward pass.

Three variants over the same ~50k-token reference corpus, interleaved in one run:

- **plain forward**: the whole model over the corpus's documents, batched as the pass
  batches them (the reference of the ratios);
- **corpus pass** (per SAE): what a card's first opening costs: the model up to the
  SAE's layer, the SAE's encoder, the non-zero activations kept and written to a fresh
  cache file. Target: within 1.5× the plain forward pass (worst case: the last layer);
- **card, cached**: a card once the pass is cached (reads the cache, top contexts,
  intervals, histogram, logit effects). Target: under 2 s (on 2 cores).

    python -m bench.cards [--threads 2] [--repeats 3] [--smoke]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch

from bench.harness import Report, Target, machine, ratio_row, time_side_by_side, value_row

PASS_SAES = ("res_0", "res_3", "attn_3")
CARD_SAE, CARD_FEATURE = "res_0", 377


def compare_cards(report: Report, repeats: int, smoke: bool = False, lab=None) -> None:
    """Time the card's variants side by side (``lab``: an already loaded lister-tiny, else loaded here)."""
    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.study.cards import feature_card
    from lister_tui.core.study.corpus import Corpus, _batches, corpus_activations, reference_part

    lab = lab if lab is not None else load_model("lister-tiny", device="cpu")
    part = reference_part(lab, n_tokens=2_000 if smoke else 50_000)
    corpus = Corpus((part,))
    batches = [[part.docs[d] for d in batch] for batch in _batches(part, 16384)]
    tensors = []
    for docs in batches:
        width = max(len(d) for d in docs)
        t = torch.zeros((len(docs), width), dtype=torch.long)
        for b, d in enumerate(docs):
            t[b, : len(d)] = torch.tensor(d)
        tensors.append(t)

    def plain_forward() -> None:
        with torch.inference_mode():
            for t in tensors:
                lab.model(t, attention_mask=torch.ones_like(t))

    scratch = Path(tempfile.mkdtemp(prefix="bench-cards-"))
    fresh = iter(range(10**9))

    def corpus_pass(sae_id: str):
        def run() -> None:
            corpus_activations(lab, sae_id, part, cache=scratch / f"pass-{next(fresh)}")

        return run

    card_cache = scratch / "cards"
    for sae_id in PASS_SAES:
        corpus_activations(lab, sae_id, part, cache=card_cache)  # the pass a cached card reads
    lab.release_saes()

    def cached_card() -> None:
        feature_card(lab, CARD_SAE, CARD_FEATURE, corpus, cache=card_cache)

    variants = {"plain forward (whole model)": plain_forward}
    variants |= {f"corpus pass, {s} (first card of the SAE)": corpus_pass(s) for s in PASS_SAES}
    variants["card, pass cached"] = cached_card
    try:
        timings = time_side_by_side(variants, repeats)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    setting = f"[lister-tiny] {part.n_tokens:,} tokens of held-out text, {len(part.docs)} documents"
    comparison = "9 feature cards"
    report.add_timings(comparison, setting, timings)
    plain = timings["plain forward (whole model)"]
    for sae_id in PASS_SAES:
        ratio_row(
            report, comparison, f"{setting}, {sae_id}", timings[f"corpus pass, {sae_id} (first card of the SAE)"], plain,
            "corpus pass ÷ plain forward", Target(1.5, False),
        )
    card = timings["card, pass cached"]
    ratio_row(report, comparison, f"{setting}, {CARD_SAE} f{CARD_FEATURE}", card, plain, "cached card ÷ plain forward")
    value_row(report, comparison, "card, pass cached (absolute)", setting, card, Target(2.0, False, "< 2 s on 2 cores"))


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(prog="python -m bench.cards", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out", type=Path, default=Path("bench/out/cards"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = Report("lister-tui benchmark: feature cards", {**machine("cpu"), "repeats": args.repeats})
    compare_cards(report, 1 if args.smoke else args.repeats, args.smoke)
    md, _ = report.write(args.out)
    print(report.markdown())
    return md


if __name__ == "__main__":
    main()
