"""Small random models and SAEs for the engine tests (a plain module, not conftest).

The SAEs are calibrated on the model's own activations so that a sizeable fraction
of features fires (JumpReLU thresholds are non-zero but below typical
pre-activations), which makes exactness tests meaningful.
"""

from __future__ import annotations

import warnings

import torch
from sae_lens import (
    HookedSAETransformer,
    JumpReLUSAE,
    JumpReLUSAEConfig,
    StandardSAE,
    StandardSAEConfig,
    TopKSAE,
    TopKSAEConfig,
)
from sae_lens.saes.sae import SAE, SAEMetadata
from transformer_lens import HookedTransformerConfig

# Two cores shared with other processes: torch's default of one thread per core
# makes each small op spin-wait on busy cores (milliseconds instead of microseconds).
torch.set_num_threads(1)

D_VOCAB = 97
N_CTX = 64
RESID_HOOK = "blocks.1.hook_resid_post"
ATTN_Z_HOOK = "blocks.1.attn.hook_z"
EARLY_RESID_HOOK = "blocks.0.hook_resid_post"


def build_model(seed: int = 0) -> HookedSAETransformer:
    """A random 3-layer HookedSAETransformer (float32, eval mode, no tokenizer)."""
    torch.manual_seed(seed)
    cfg = HookedTransformerConfig(
        n_layers=3,
        d_model=64,
        n_heads=4,
        d_head=16,
        d_mlp=128,
        d_vocab=D_VOCAB,
        n_ctx=N_CTX,
        act_fn="gelu",
        normalization_type="LN",
        seed=seed,
        dtype=torch.float32,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HookedSAETransformer(cfg)
    model.eval()
    return model


def random_tokens(batch: int, length: int, seed: int) -> torch.Tensor:  # [batch, length]
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, D_VOCAB, (batch, length), generator=generator)


@torch.no_grad()
def _hook_activations(model: HookedSAETransformer, hook_name: str, seed: int) -> torch.Tensor:
    """Activations at ``hook_name`` on random tokens, flattened to [n, d_in]."""
    _, cache = model.run_with_cache(random_tokens(8, 24, seed), names_filter=hook_name)
    acts = cache[hook_name]
    if hook_name.endswith("hook_z"):
        acts = acts.flatten(-2)  # [batch, pos, n_heads * d_head]
    return acts.reshape(-1, acts.shape[-1])


@torch.no_grad()
def build_sae(
    model: HookedSAETransformer,
    hook_name: str,
    *,
    kind: str = "jumprelu",
    d_sae: int = 96,
    seed: int = 1,
) -> SAE:
    """A random StandardSAE, JumpReLUSAE or TopKSAE at ``hook_name``, calibrated on ``model``.

    The TopK SAE (k=8, decoder-norm rescaling) stands for "any other architecture":
    its decoder is not ``a @ W_dec + b_dec``, so the engine must use its own methods.

    Encoder columns are random directions scaled so pre-activations have unit
    spread; biases are centred so roughly a third of the features fire; JumpReLU
    thresholds are drawn in [0.2, 0.8] (below typical active pre-activations).
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    acts = _hook_activations(model, hook_name, seed)  # [n, d_in]
    d_in = acts.shape[-1]
    metadata = SAEMetadata(hook_name=hook_name)
    reshape = "hook_z" if hook_name.endswith("hook_z") else "none"
    if kind == "jumprelu":
        sae: SAE = JumpReLUSAE(
            JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae, reshape_activations=reshape, metadata=metadata)
        )
    elif kind == "standard":
        sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, reshape_activations=reshape, metadata=metadata))
    elif kind == "topk":
        sae = TopKSAE(
            TopKSAEConfig(
                d_in=d_in,
                d_sae=d_sae,
                k=8,
                rescale_acts_by_decoder_norm=True,
                reshape_activations=reshape,
                metadata=metadata,
            )
        )
    else:
        raise ValueError(f"unknown SAE kind {kind!r}")

    b_dec = acts.mean(0) + 0.1 * acts.std(0) * torch.randn(d_in, generator=generator)
    centred = acts - b_dec  # [n, d_in]
    directions = torch.randn(d_in, d_sae, generator=generator)
    directions /= directions.norm(dim=0, keepdim=True)
    projections = centred @ directions  # [n, d_sae]
    W_enc = directions / projections.std(0, keepdim=True)  # unit-spread pre-activations
    pre = centred @ W_enc
    b_enc = -pre.mean(0) + 0.3 + 0.2 * torch.randn(d_sae, generator=generator)
    W_dec = torch.randn(d_sae, d_in, generator=generator)
    W_dec *= acts.std() / W_dec.norm(dim=1, keepdim=True)

    sae.W_enc.copy_(W_enc)
    sae.b_enc.copy_(b_enc)
    sae.W_dec.copy_(W_dec)
    sae.b_dec.copy_(b_dec)
    if kind == "jumprelu":
        sae.threshold.copy_(0.2 + 0.6 * torch.rand(d_sae, generator=generator))
    sae.eval()
    for parameter in sae.parameters():
        parameter.requires_grad_(False)
    return sae


def active_fraction(sae: SAE, model: HookedSAETransformer, seed: int = 5) -> float:
    """Fraction of (token, feature) pairs that fire, for checking the calibration."""
    hook_name = sae.cfg.metadata.hook_name
    with torch.no_grad():
        _, cache = model.run_with_cache(random_tokens(4, 16, seed), names_filter=hook_name)
        return (sae.encode(cache[hook_name]) > 0).float().mean().item()


def word_activations(loaded, word: str = " short", template: str = "short", topic: str = "Animals", sae_id: str = "res_0"):
    """(the word's position in the prompt, {feature: activation} of ``sae_id``'s features active there):
    lister-tiny's planted features found from activations, never written in."""
    import torch

    from lister_tui.core.engine.prompts import prompt_ids

    sae = loaded.load_sae(sae_id, cache=True)
    hook = sae.cfg.metadata.hook_name
    ids = prompt_ids(loaded, template, topic)
    pos = ids.index(loaded.tokenizer.convert_tokens_to_ids(word))
    with torch.inference_mode():
        _, cache = loaded.model.run_with_cache(torch.tensor([ids]), names_filter=hook)
        acts = sae.encode(cache[hook][0, pos])
    return pos, {int(f): float(acts[f]) for f in torch.nonzero(acts > 0).flatten()}
