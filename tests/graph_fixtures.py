"""Transcoders made in the test for lister-tiny (a plain module, not conftest).

Random encoders with JumpReLU thresholds set so that about a tenth of the features fire,
decoders and the affine skip fitted by least squares to the real MLP output on held-out
lists: good enough that the replacement model is not trivial, and the exactness tests
(error nodes, edges against finite differences) hold for any transcoder.
"""

from __future__ import annotations

import torch
from sae_lens import JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig
from sae_lens.saes.sae import SAEMetadata

from lister_tui.core.engine.generation import sample_lists
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.study.settings import SAMPLING_PRESETS

torch.set_num_threads(1)  # two cores shared with other processes: one thread avoids spin-waits

D_TC = 256
FIRE_FRACTION = 0.1


def fit_transcoders(loaded, seed: int = 0, d_tc: int = D_TC) -> dict[int, JumpReLUSkipTranscoder]:
    """One JumpReLU skip transcoder per layer of ``loaded``'s model, in its dtype."""
    model = loaded.model
    specs = build_prompts(["short", "long", "unspecified"], ["Rivers", "Movies", "Colors"], samples_per_topic=1, base_seed=7)
    lists = sample_lists(loaded, specs, SAMPLING_PRESETS["code"])
    xs: dict[int, list] = {layer: [] for layer in range(model.cfg.n_layers)}
    ys: dict[int, list] = {layer: [] for layer in range(model.cfg.n_layers)}
    with torch.no_grad():
        for s in lists:
            _, cache = model.run_with_cache(torch.tensor([s.tokens]), names_filter=lambda n: "ln2.hook_normalized" in n or "hook_mlp_out" in n)
            for layer in range(model.cfg.n_layers):
                xs[layer].append(cache[f"blocks.{layer}.ln2.hook_normalized"][0].double())
                ys[layer].append(cache[f"blocks.{layer}.hook_mlp_out"][0].double())
    generator = torch.Generator().manual_seed(seed)
    out = {}
    d_model = model.cfg.d_model
    for layer in range(model.cfg.n_layers):
        x, y = torch.cat(xs[layer]), torch.cat(ys[layer])  # [N, d_model]
        cfg = JumpReLUSkipTranscoderConfig(
            d_in=d_model, d_sae=d_tc, d_out=d_model, dtype="float64", apply_b_dec_to_input=False,
            metadata=SAEMetadata(hook_name=f"blocks.{layer}.ln2.hook_normalized", hook_name_out=f"blocks.{layer}.hook_mlp_out"),
        )
        tc = JumpReLUSkipTranscoder(cfg)
        w_enc = torch.randn(d_model, d_tc, generator=generator, dtype=torch.float64) / d_model**0.5
        pre = x @ w_enc
        # The chat prompt's tokens repeat in every list, so a quantile can sit exactly on a
        # pre-activation; a margin keeps every feature clear of its threshold (no flips from rounding).
        threshold = pre.quantile(1 - FIRE_FRACTION, dim=0) + 1e-3 * pre.std(dim=0)  # [d_tc]
        acts = pre * (pre > threshold)
        design = torch.cat([acts, x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
        solution = torch.linalg.lstsq(design, y, driver="gelsd").solution  # [d_tc + d_model + 1, d_model]
        with torch.no_grad():
            tc.W_enc.copy_(w_enc)
            tc.b_enc.zero_()
            tc.threshold.copy_(threshold)
            tc.W_dec.copy_(solution[:d_tc])
            # ln2's output is centred (x · 1 = 0), so the skip's component along the all-ones input
            # direction is not identified: least squares gave it ~1e4 from round-off, and float32's
            # ~1e-8 error in x's mean, times that, moved the output by up to 0.1 (a different sum
            # order, as circuit-tracer's, gave errors 0.14 apart). Removed, it changes nothing exact.
            w_skip = solution[d_tc : d_tc + d_model].T
            tc.W_skip.copy_(w_skip - w_skip.mean(dim=1, keepdim=True))
            tc.b_dec.copy_(solution[-1])
        tc.eval()
        out[layer] = tc.to(dtype=next(model.parameters()).dtype)
    return out
