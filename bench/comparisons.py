"""Each comparison: the project's way next to the straightforward one, same inputs, one run."""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench.harness import Report, Target, linearity, ratio_row, time_side_by_side
from bench.shapes import Bench
from lister_tui.core.engine.ablation import EVERY_POSITION, Ablation, FeatureAblation, ablation_hooks
from lister_tui.core.engine.attribution import attribute
from lister_tui.core.engine.sampling import generate


def _tokens(bench: Bench, batch: int, length: int) -> torch.Tensor:  # [batch, length]
    return torch.tensor(bench.random_prompts(batch, length), device=bench.model.cfg.device)


# --- 1. attribution ---------------------------------------------------------------


def attribution_one_pass(bench: Bench, tokens: torch.Tensor, sae_ids: list[str]) -> list:
    """The project's method: one plain forward + backward, then each SAE's a ⊙ (g W_decᵀ)."""
    target = [tokens.shape[1] - 1] * tokens.shape[0]
    stream = ((sid, bench.saes[sid]) for sid in sae_ids)
    hooks = [bench.saes[sid].cfg.metadata.hook_name for sid in sae_ids]
    return [
        r.attribution.sum().item()
        for r in attribute(bench.model, tokens, target, stream, blank_id=bench.blank_id, newline_id=bench.newline_id, hook_names=hooks)
    ]


def attribution_splice_each(bench: Bench, tokens: torch.Tensor, sae_ids: list[str]) -> list:
    """The study's way: splice one SAE (error term kept), forward, backward, repeat per SAE."""
    model = bench.model
    out = []
    for sid in sae_ids:
        sae = bench.saes[sid]
        model.add_sae(sae, use_error_term=True)
        kept = {}

        def keep(acts, hook):
            acts = acts.detach().requires_grad_(True)
            kept["acts"] = acts
            return acts

        hook = sae.cfg.metadata.hook_name + ".hook_sae_acts_post"
        try:
            with torch.enable_grad(), model.hooks(fwd_hooks=[(hook, keep)]):
                logits = model(tokens)  # [batch, pos, d_vocab]
                metric = (logits[:, -1, bench.blank_id] - logits[:, -1, bench.newline_id]).sum()
                metric.backward()
            out.append((kept["acts"] * kept["acts"].grad).sum().item())
        finally:
            model.reset_saes()
    return out


def compare_attribution(report: Report, bench: Bench, repeats: int, batch: int, length: int, **timing) -> dict:
    sae_ids = list(bench.saes)
    n = len(sae_ids)
    tokens = _tokens(bench, batch, length)
    setting = f"{n} SAEs, {batch} samples × {length} tokens"
    # the two methods compute the same numbers: check before timing them
    ours, theirs = attribution_one_pass(bench, tokens, sae_ids), attribution_splice_each(bench, tokens, sae_ids)
    worst = max(abs(a - b) / max(1e-6, abs(b)) for a, b in zip(ours, theirs))
    timings = time_side_by_side(
        {
            "one pass, all SAEs (project)": lambda: attribution_one_pass(bench, tokens, sae_ids),
            "splice each SAE alone (study)": lambda: attribution_splice_each(bench, tokens, sae_ids),
        },
        repeats,
        str(bench.model.cfg.device),
        **timing,
    )
    report.add_timings("1 attribution", setting, timings)
    ratio_row(
        report,
        "1 attribution",
        setting,
        timings["splice each SAE alone (study)"],
        timings["one pass, all SAEs (project)"],
        "speed-up",
        Target(0.7 * n, True, f"≥ 0.7 × N = {0.7 * n:.1f}"),
        note=f"largest relative difference of the summed attributions {worst:.1e}",
    )
    return timings


# --- 2. ablated generation ---------------------------------------------------------


def _ablation_features(bench: Bench, sae_id: str, k: int) -> list[int]:
    return list(range(0, bench.saes[sae_id].cfg.d_sae, max(1, bench.saes[sae_id].cfg.d_sae // k)))[:k]


def _generate(bench: Bench, prompts, new_tokens: int, hook_factory=None, extra_hooks=None):
    return generate(
        bench.model,
        prompts,
        list(range(len(prompts))),
        temperature=0.8,
        top_p=0.9,
        max_new_tokens=new_tokens,
        stop_ids=[],  # fixed lengths: every variant decodes the same number of tokens
        hook_factory=hook_factory,
        ablation_hooks=extra_hooks,
    )


def compare_ablated_generation(
    report: Report, bench: Bench, repeats: int, batch: int, length: int, new_tokens: int, k: int = 5, **timing
) -> dict:
    sae_id = next(s for s in bench.saes if s.startswith("res")) if any(s.startswith("res") for s in bench.saes) else next(iter(bench.saes))
    sae = bench.saes[sae_id]
    features = _ablation_features(bench, sae_id, k)
    prompts = bench.random_prompts(batch, length)
    ablation = Ablation(tuple(FeatureAblation(sae_id, f, EVERY_POSITION) for f in features))
    saes = {sae_id: sae}

    def fast():
        return _generate(bench, prompts, new_tokens, hook_factory=lambda n: ablation_hooks(ablation, saes, n))

    feature_index = torch.tensor(features, device=sae.device)

    def zero(acts, hook):
        acts[..., feature_index] = 0.0
        return acts

    def splice():
        bench.model.add_sae(sae, use_error_term=True)
        try:
            return _generate(bench, prompts, new_tokens, extra_hooks=[(sae.cfg.metadata.hook_name + ".hook_sae_acts_post", zero)])
        finally:
            bench.model.reset_saes()

    def plain():
        return _generate(bench, prompts, new_tokens)

    same = [g.tokens for g in fast()] == [g.tokens for g in splice()]
    setting = f"{k} features of {sae_id} at every position, batch {batch}, {length}+{new_tokens} tokens"
    with torch.inference_mode():
        timings = time_side_by_side(
            {"no ablation": plain, "fast path (project)": fast, "splice and zero hook (SAELens)": splice},
            repeats,
            str(bench.model.cfg.device),
            **timing,
        )
    report.add_timings("2 ablated generation", setting, timings)
    ratio_row(
        report,
        "2 ablated generation",
        setting,
        timings["fast path (project)"],
        timings["no ablation"],
        "ablated / unablated",
        Target(1.15, False),
        note=f"fast path and splice drew the same tokens: {same}",
    )
    ratio_row(
        report,
        "2 ablated generation",
        setting + " (splice)",
        timings["splice and zero hook (SAELens)"],
        timings["no ablation"],
        "spliced / unablated",
    )
    return timings


# --- 3. sampling throughput --------------------------------------------------------


def compare_sampling(report: Report, bench: Bench, repeats: int, batch: int, length: int, new_tokens: int, **timing) -> dict:
    prompts = bench.random_prompts(batch, length)
    model = bench.model

    def ours():
        return _generate(bench, prompts, new_tokens)

    def tl_per_sample():
        for i, p in enumerate(prompts):
            torch.manual_seed(i)
            model.generate(
                torch.tensor([p], device=model.cfg.device),
                max_new_tokens=new_tokens,
                do_sample=True,
                temperature=0.8,
                top_p=0.9,
                stop_at_eos=False,
                verbose=False,
                use_past_kv_cache=True,
                return_type="tokens",
            )

    with torch.inference_mode():
        timings = time_side_by_side(
            {"batched seeded sampling (project)": ours, "TransformerLens generate per sample": tl_per_sample},
            repeats,
            str(model.cfg.device),
            **timing,
        )
    tokens = batch * new_tokens
    setting = f"batch {batch}, {length}+{new_tokens} tokens"
    report.add_timings("3 sampling", setting, timings)
    for name, t in timings.items():
        report.add_rate("3 sampling", name + " (tokens/s)", setting, tokens, t, "tokens/s")
    ratio_row(
        report,
        "3 sampling",
        setting,
        timings["TransformerLens generate per sample"],
        timings["batched seeded sampling (project)"],
        "tokens/s ratio",
        Target(8, True, "≥ 8× at batch 16") if batch == 16 else None,
    )
    return timings


# --- 5/6. scaling ------------------------------------------------------------------


def scaling(
    report: Report, bench: Bench, repeats: int, samples: list[int], lengths: list[int], widths: list[int], base_length: int, **timing
) -> None:
    from bench.shapes import random_jumprelu_sae

    sae_ids = list(bench.saes)
    device = str(bench.model.cfg.device)

    def sweep(name: str, sizes: list[int], make: Callable[[int], Callable[[], object]], unit: str) -> None:
        best = []
        for size in sizes:
            t = time_side_by_side({f"{name}={size}": make(size)}, repeats, device, **timing)
            report.add_timings("6 scaling", f"attribution, {len(sae_ids)} SAEs, {name} {size}", t)
            best.append(next(iter(t.values())).best)
        report.notes.append(f"[{bench.name}] attribution time vs {name} ({unit}): {linearity(sizes, best)}")

    sweep("samples", samples, lambda b: (lambda tok=_tokens(bench, b, base_length): attribution_one_pass(bench, tok, sae_ids)), "samples")
    sweep("length", lengths, lambda n: (lambda tok=_tokens(bench, 4, n): attribution_one_pass(bench, tok, sae_ids)), "tokens")
    site = sae_ids[0]
    hook = bench.saes[site].cfg.metadata.hook_name
    d_in = bench.saes[site].cfg.d_in

    def with_width(width: int):
        wide = Bench(bench.name, bench.model, {site: random_jumprelu_sae(hook, d_in, width, device=device)}, bench.blank_id, bench.newline_id, bench.d_vocab)
        tok = _tokens(bench, 4, base_length)
        return lambda: attribution_one_pass(wide, tok, [site])

    sweep("d_sae", widths, with_width, "features of one SAE")

