"""The models and SAEs the benchmarks run on.

- ``tiny``: the shipped lister-tiny and its eight trained SAEs.
- ``gemma-2-2b``: a randomly initialised model with Gemma-2-2B's architecture
  (RMS norm before and after each sublayer, GQA, gated gelu MLP, rotary, soft caps,
  alternating local/global attention) and random JumpReLU SAEs of Gemma Scope's
  kinds, every width multiplied by ``scale`` (1.0 is the real size: 2.6B
  parameters, 16k-feature SAEs; 0.25 fits a laptop's CPU).

Random weights give the real shapes, so time and memory are realistic; nothing
here says anything about what a trained model does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

GEMMA_2_2B = dict(
    d_model=2304,
    n_layers=26,
    n_heads=8,
    n_key_value_heads=4,
    d_head=256,
    d_mlp=9216,
    d_vocab=256000,
    d_sae=16384,
)


@dataclass
class Bench:
    """A model, named SAEs on it, and two token ids standing for blank and newline."""

    name: str
    model: object  # HookedSAETransformer
    saes: dict  # sae id -> SAE, in the model's dtype and device
    blank_id: int
    newline_id: int
    d_vocab: int

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def weight_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def sae_bytes(self, sae_id: str) -> int:
        return sum(p.numel() * p.element_size() for p in self.saes[sae_id].parameters())

    def random_prompts(self, batch: int, length: int, seed: int = 0) -> list[list[int]]:
        g = torch.Generator().manual_seed(seed)
        return torch.randint(3, self.d_vocab, (batch, length), generator=g).tolist()


def tiny_bench(device: str = "cpu") -> Bench:
    from lister_tui.core.engine.loading import load_model

    lab = load_model("lister-tiny", device=device)
    saes = {site.id: lab.load_sae(site.id) for site in lab.entry.sites}
    return Bench("lister-tiny", lab.model, saes, lab.ids.blank, lab.ids.newline, lab.model.cfg.d_vocab)


def _round(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def gemma_like_bench(
    scale: float = 0.25,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    n_layers: int | None = None,
    sae_layers: dict[str, tuple[int, ...]] | None = None,
    d_sae: int | None = None,
    seed: int = 0,
) -> Bench:
    """A random Gemma-2-2B-shaped model at ``scale`` and random Gemma-Scope-shaped SAEs.

    ``sae_layers`` maps "res"/"attn" to layers (default: the study's, clipped to the
    model's depth); ``d_sae`` defaults to 16384 × scale.
    """
    from sae_lens import HookedSAETransformer
    from transformer_lens import HookedTransformerConfig

    g = GEMMA_2_2B
    layers = n_layers or g["n_layers"]
    d_head = _round(g["d_head"] * scale, 16)
    d_model = _round(g["d_model"] * scale, 64)
    cfg = HookedTransformerConfig(
        d_model=d_model,
        n_layers=layers,
        n_heads=g["n_heads"],
        n_key_value_heads=g["n_key_value_heads"],
        d_head=d_head,
        d_mlp=_round(g["d_mlp"] * scale, 64),
        d_vocab=_round(g["d_vocab"] * scale, 256),
        n_ctx=1024,
        act_fn="gelu_pytorch_tanh",
        gated_mlp=True,
        normalization_type="RMS",
        use_normalization_before_and_after=True,
        positional_embedding_type="rotary",
        rotary_dim=d_head,
        attn_scores_soft_cap=50.0,
        output_logits_soft_cap=30.0,
        attn_types=["local", "global"] * (layers // 2) + ["local"] * (layers % 2),
        window_size=256,
        use_local_attn=True,
        original_architecture="Gemma2ForCausalLM",
        final_rms=True,
        default_prepend_bos=False,
        seed=seed,
        dtype=dtype,
        device=device,
    )
    # Made and initialised on the device: at full size on a GPU that is seconds where
    # initialising 2.6B parameters on the CPU and copying them over takes much longer.
    with warnings.catch_warnings(), torch.device(device):
        warnings.simplefilter("ignore")
        model = HookedSAETransformer(cfg)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    plan = sae_layers or {
        "attn": tuple(layer for layer in (2, 7, 14, 18, 22) if layer < layers),
        "res": tuple(layer for layer in (0, 5, 10, 15, 20) if layer < layers),
    }
    width = d_sae or _round(g["d_sae"] * scale, 256)
    saes = {}
    for kind, kind_layers in plan.items():
        for layer in kind_layers:
            hook = f"blocks.{layer}.attn.hook_z" if kind == "attn" else f"blocks.{layer}.hook_resid_post"
            d_in = cfg.n_heads * cfg.d_head if kind == "attn" else cfg.d_model
            saes[f"{kind}_{layer}"] = random_jumprelu_sae(hook, d_in, width, device=device, dtype=dtype, seed=seed + layer)
    return Bench(f"gemma-2-2b shape ×{scale:g}", model, saes, blank_id=1, newline_id=2, d_vocab=cfg.d_vocab)


def random_jumprelu_sae(
    hook_name: str, d_in: int, d_sae: int, *, device: str = "cpu", dtype=torch.float32, seed: int = 0
):
    """A random JumpReLU SAE with Gemma Scope's layout; about a tenth of features fire."""
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from lister_tui.core.engine.loading import freed_when_released

    reshape = "hook_z" if hook_name.endswith("hook_z") else "none"
    sae = JumpReLUSAE(
        JumpReLUSAEConfig(
            d_in=d_in,
            d_sae=d_sae,
            reshape_activations=reshape,
            metadata=SAEMetadata(hook_name=hook_name),
            dtype=str(dtype).removeprefix("torch."),
            device=device,
        )
    )
    # drawn on the device (ten 16k SAEs are 750M numbers); on a CPU the same draws as before
    g = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=g, device=device) / d_in**0.5)
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=g, device=device) / d_sae**0.5)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.threshold.fill_(1.2)  # ~ the 88th percentile of a unit-spread pre-activation
    sae.eval()
    for p in sae.parameters():
        p.requires_grad_(False)
    return freed_when_released(sae)  # as the engine loads them (no reference cycle)


def random_transcoders(
    model, d_tc: int, *, l0: float = 16.0, device: str = "cpu", dtype=torch.float32, seed: int = 0
) -> dict:
    """``{layer: JumpReLUSkipTranscoder}``, one per MLP layer, random, as lister-tiny's are laid out.

    SAELens's transcoder class with an affine skip, reading ``blocks.L.ln2.hook_normalized``
    and writing ``blocks.L.hook_mlp_out`` (core/engine/transcoders.py). The input is RMS- or
    LayerNorm-normalised, so with ``W_enc ~ N(0, 1/d_in)`` a pre-activation is about N(0, 1):
    the threshold is the normal quantile at which ``l0`` of the ``d_tc`` features fire per
    token on average (Gemma Scope's 16k transcoders fire some tens to a hundred and some).
    """
    from statistics import NormalDist

    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.transcoder import (
        JumpReLUSkipTranscoder,
        JumpReLUSkipTranscoderConfig,
    )

    from lister_tui.core.engine.loading import freed_when_released

    d = model.cfg.d_model
    threshold = NormalDist().inv_cdf(1.0 - min(max(l0 / d_tc, 1e-9), 0.5))
    out = {}
    for layer in range(model.cfg.n_layers):
        cfg = JumpReLUSkipTranscoderConfig(
            d_in=d, d_sae=d_tc, d_out=d, dtype=str(dtype).removeprefix("torch."), device=device,
            apply_b_dec_to_input=False, normalize_activations="none",
            metadata=SAEMetadata(hook_name=f"blocks.{layer}.ln2.hook_normalized", hook_name_out=f"blocks.{layer}.hook_mlp_out"),
        )
        tc = JumpReLUSkipTranscoder(cfg)
        g = torch.Generator(device=device).manual_seed(seed + 1000 + layer)
        with torch.no_grad():
            tc.W_enc.copy_(torch.randn(d, d_tc, generator=g, device=device) / d**0.5)
            tc.W_dec.copy_(torch.randn(d_tc, d, generator=g, device=device) / d_tc**0.5)
            tc.W_skip.copy_(torch.randn(d, d, generator=g, device=device) / d**0.5 * 0.1)
            tc.b_enc.zero_()
            tc.b_dec.zero_()
            tc.threshold.fill_(threshold)
        tc.eval()
        for p in tc.parameters():
            p.requires_grad_(False)
        out[layer] = freed_when_released(tc)
    return out


def set_l0(saes, l0: float, model=None, tokens=None) -> None:
    """Raise or lower every JumpReLU threshold so that about ``l0`` features fire per token.

    With ``model`` and ``tokens`` (a list of ids): each threshold is the quantile of that
    SAE's pre-activations on the prompt at which ``l0`` fire per token there (exact on this
    prompt; its hook is read from the SAE's metadata); otherwise the normal quantile, which
    fits a unit-spread pre-activation (a transcoder reading a normalised residual).
    """
    from statistics import NormalDist

    saes = list(saes)
    if model is None:
        for sae in saes:
            frac = min(max(l0 / sae.cfg.d_sae, 1e-9), 0.5)
            with torch.no_grad():
                sae.threshold.fill_(NormalDist().inv_cdf(1.0 - frac))
        return
    hooks = {sae.cfg.metadata.hook_name for sae in saes}
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.tensor([tokens], device=model.cfg.device), names_filter=lambda n: n in hooks)
        for sae in saes:
            x = cache[sae.cfg.metadata.hook_name][0].flatten(1).to(sae.W_enc.dtype)  # hook_z: heads flattened
            pre = (x @ sae.W_enc + sae.b_enc).flatten().float()
            k = max(1, min(pre.numel(), int(round(pre.numel() * (1.0 - l0 / sae.cfg.d_sae)))))
            sae.threshold.fill_(float(pre.kthvalue(k).values))
