"""The local replacement model of one prompt: transcoders for MLPs, attention and LayerNorm frozen.

Following Ameisen et al. (2025, "Circuit Tracing"; circuit-tracer), on one prompt:

- every MLP is replaced by its transcoder (features ``a = encode(x)`` of the MLP's input
  ``blocks.L.ln2.hook_normalized``, output ``a W_dec + b_dec`` plus the affine skip ``x W_skipᵀ``)
  and an **error** that is the true MLP output minus the transcoder's, held constant;
- optionally every attention site's ``hook_z`` is replaced by its attention SAE's reconstruction
  plus a constant error, so attention features are nodes too;
- attention patterns and LayerNorm scales (the denominators) are the values of the real pass.

With the errors added the forward pass reproduces the real model exactly; with features
and errors held fixed, the residual stream is a linear function of the features, the
errors and the embeddings. :func:`run` is that forward pass under TransformerLens hooks;
the same function, with ``frozen=False`` and features recomputed, is the real model with
the transcoders spliced in (errors kept), which is where a feature is zeroed to measure
what the graph predicts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lister_tui.core.errors import ListerError

if TYPE_CHECKING:
    from sae_lens import SAE
    from transformer_lens import HookedTransformer

EMBED_HOOK = "blocks.0.hook_resid_pre"
TC_IN = "blocks.{}.ln2.hook_normalized"
TC_OUT = "blocks.{}.hook_mlp_out"
Z_HOOK = "blocks.{}.attn.hook_z"


def has_skip(tc: SAE) -> bool:
    return getattr(tc, "W_skip", None) is not None


def tc_output(tc: SAE, acts: Tensor, x: Tensor) -> Tensor:
    """The transcoder's output from features ``acts`` and its input ``x`` (the skip is linear in x)."""
    out = acts @ tc.W_dec + tc.b_dec
    if has_skip(tc):
        out = out + x @ tc.W_skip.T
    return out


def sae_pre_input(sae: SAE, x: Tensor) -> Tensor:
    """The input the encoder's matrix multiplies (b_dec subtracted where the SAE does)."""
    if getattr(sae.cfg, "apply_b_dec_to_input", False) and sae.b_dec.shape[-1] == x.shape[-1]:
        return x - sae.b_dec
    return x


def check_sets(model: HookedTransformer, transcoders: Mapping[int, SAE], attn_saes: Mapping[int, SAE]) -> None:
    """Refuse transcoder or attention-SAE sets that do not cover the model as a graph needs."""
    n_layers = model.cfg.n_layers
    missing = [layer for layer in range(n_layers) if layer not in transcoders]
    if missing:
        raise ListerError(
            f"a graph replaces every MLP: transcoders for layer(s) {', '.join(map(str, missing))} are missing "
            f"(the model has {n_layers} layers); give one transcoder per layer"
        )
    if model.cfg.normalization_type not in ("LN", "LNPre", "RMS", "RMSPre"):
        raise ListerError(f"normalisation {model.cfg.normalization_type!r} is not supported by the graph; valid: LN, LNPre, RMS, RMSPre")
    for layer, tc in transcoders.items():
        hook = tc.cfg.metadata.hook_name
        if hook != TC_IN.format(layer):
            raise ListerError(f"the transcoder of layer {layer} reads {hook!r}; a graph needs transcoders reading {TC_IN.format(layer)!r}")
    for layer, sae in attn_saes.items():
        if sae.cfg.metadata.hook_name != Z_HOOK.format(layer) or sae.cfg.reshape_activations != "hook_z":
            raise ListerError(f"the attention SAE of layer {layer} must read {Z_HOOK.format(layer)!r} (hook_z), got {sae.cfg.metadata.hook_name!r}")


@dataclass
class PromptState:
    """The real pass on one prompt: what the replacement model freezes and its nodes' activations."""

    tokens: Tensor  # [n] token ids
    embed: Tensor  # [n, d_model] blocks.0.hook_resid_pre (token + positional embedding)
    scales: dict[str, Tensor]  # LayerNorm hook_scale name -> [n, 1]
    patterns: list[Tensor]  # per layer [n_heads, n, n]
    tc_in: list[Tensor]  # per layer [n, d_model] the MLP's (normalised) input
    mlp_out: list[Tensor]  # per layer [n, d_model] the real MLP's output
    tc_acts: list[Tensor]  # per layer [n, d_tc]
    tc_error: list[Tensor]  # per layer [n, d_model] true MLP output − transcoder output
    z: list[Tensor]  # per layer [n, n_heads, d_head]
    attn_acts: dict[int, Tensor] = field(default_factory=dict)  # layer -> [n, d_sae]
    attn_error: dict[int, Tensor] = field(default_factory=dict)  # layer -> [n, n_heads, d_head]
    logits_diff: Tensor | None = None  # [n] the metric at every position in the real pass


def metric_direction(model: HookedTransformer, blank_id: int, newline_id: int) -> tuple[Tensor, Tensor]:
    """(W_U[:, blank] − W_U[:, newline], b_U[blank] − b_U[newline]): the metric as an unembedding direction."""
    W_U, b_U = model.unembed.W_U, model.unembed.b_U
    return W_U[:, blank_id] - W_U[:, newline_id], b_U[blank_id] - b_U[newline_id]


def prompt_state(
    model: HookedTransformer,
    tokens: Tensor,  # [n]
    transcoders: Mapping[int, SAE],
    attn_saes: Mapping[int, SAE],
    *,
    blank_id: int,
    newline_id: int,
) -> PromptState:
    """One real forward pass, keeping what the replacement model needs (no gradients)."""
    check_sets(model, transcoders, attn_saes)
    n_layers = model.cfg.n_layers
    wanted = {EMBED_HOOK}
    for layer in range(n_layers):
        wanted |= {TC_IN.format(layer), TC_OUT.format(layer), Z_HOOK.format(layer), f"blocks.{layer}.attn.hook_pattern"}
    scale_names = [n for n in model.hook_dict if n.endswith("hook_scale")]
    wanted |= set(scale_names)
    tokens = tokens.to(model.cfg.device)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens.unsqueeze(0), names_filter=lambda name: name in wanted)
        direction, bias = metric_direction(model, blank_id, newline_id)
        tc_acts, tc_error = [], []
        for layer in range(n_layers):
            tc = transcoders[layer]
            x = cache[TC_IN.format(layer)][0]
            acts = tc.encode(x.to(tc.dtype)).to(x.dtype)
            tc_acts.append(acts)
            tc_error.append(cache[TC_OUT.format(layer)][0] - tc_output(tc, acts, x))
        attn_acts, attn_error = {}, {}
        for layer, sae in attn_saes.items():
            z = cache[Z_HOOK.format(layer)][0]  # [n, heads, d_head]
            acts = sae.encode(z.to(sae.dtype)).to(z.dtype)  # hook_z SAEs flatten heads themselves
            attn_acts[layer] = acts
            attn_error[layer] = z - (acts @ sae.W_dec + sae.b_dec).reshape(z.shape)
        pair = logits[0][:, [blank_id, newline_id]]
    return PromptState(
        tokens=tokens.cpu(),
        embed=cache[EMBED_HOOK][0],
        scales={name: cache[name][0] for name in scale_names},
        patterns=[cache[f"blocks.{layer}.attn.hook_pattern"][0] for layer in range(n_layers)],
        tc_in=[cache[TC_IN.format(layer)][0] for layer in range(n_layers)],
        mlp_out=[cache[TC_OUT.format(layer)][0] for layer in range(n_layers)],
        tc_acts=tc_acts,
        tc_error=tc_error,
        z=[cache[Z_HOOK.format(layer)][0] for layer in range(n_layers)],
        attn_acts=attn_acts,
        attn_error=attn_error,
        logits_diff=(pair[:, 0] - pair[:, 1]),
    )


Edit = Callable[[int, Tensor], Tensor]  # (layer, acts [B, n, d]) -> edited acts


@dataclass
class Pass:
    """What one :func:`run` kept: the live inputs of every feature's encoder, and the final residual."""

    tc_in: dict[int, Tensor] = field(default_factory=dict)  # layer -> [B, n, d_model]
    z_in: dict[int, Tensor] = field(default_factory=dict)  # layer -> [B, n, heads, d_head], before replacement
    resid_final: Tensor | None = None  # [B, n, d_model] before the final norm
    final: Tensor | None = None  # [B, n, d_model] after the final norm


def run(
    model: HookedTransformer,
    state: PromptState,
    transcoders: Mapping[int, SAE],
    attn_saes: Mapping[int, SAE],
    *,
    batch: int = 1,
    frozen: bool = True,
    embed: Tensor | None = None,  # [B, n, d_model]; default the real embedding
    tc_acts: Mapping[int, Tensor] | None = None,  # layer -> [B, n, d_tc] fixed features; None: recomputed
    tc_error: Mapping[int, Tensor] | None = None,  # layer -> [B, n, d_model]; default the real errors
    attn_acts: Mapping[int, Tensor] | None = None,
    attn_error: Mapping[int, Tensor] | None = None,
    edit: Edit | None = None,  # applied to recomputed transcoder features
    attn_edit: Edit | None = None,  # applied to recomputed attention features
    head_mask: Tensor | None = None,  # [B, n_layers, n_heads] multiplies the frozen patterns
    live_errors: bool = False,  # errors recomputed from the live input (the real model with features edited)
) -> Pass:
    """The replacement model's forward pass on ``batch`` copies of the prompt.

    ``frozen``: patterns and LayerNorm scales are the real pass's (the local replacement
    model); otherwise they are computed (the real model with transcoders spliced in).
    Features given in ``tc_acts`` / ``attn_acts`` are used as they are (leaves for a
    gradient); otherwise they are encoded from the live input and passed through
    ``edit``. With ``live_errors`` an edited MLP writes its true output minus what the
    edit removed (the real model, errors kept as the sample's SAE ablations do).
    """
    n = state.tokens.shape[0]
    out = Pass()

    def expand(t: Tensor) -> Tensor:
        return t.unsqueeze(0).expand(batch, *t.shape)

    hooks = []
    if embed is not None:
        hooks.append((EMBED_HOOK, lambda act, hook: embed))
    if frozen:
        for name, value in state.scales.items():
            hooks.append((name, lambda act, hook, value=value: expand(value)))
        for layer, pattern in enumerate(state.patterns):
            def freeze_pattern(act, hook, pattern=pattern, layer=layer):
                frozen_pattern = expand(pattern)
                if head_mask is not None:
                    frozen_pattern = frozen_pattern * head_mask[:, layer, :, None, None]
                return frozen_pattern

            hooks.append((f"blocks.{layer}.attn.hook_pattern", freeze_pattern))
    for layer, tc in transcoders.items():
        def keep_in(act, hook, layer=layer):
            out.tc_in[layer] = act
            return act

        def replace_mlp(act, hook, layer=layer, tc=tc):
            x = out.tc_in[layer]
            if tc_acts is not None and layer in tc_acts:
                acts = tc_acts[layer]
            else:
                acts = tc.encode(x.to(tc.dtype)).to(x.dtype)
                if edit is not None:
                    edited = edit(layer, acts)
                    if live_errors:
                        return act + (edited - acts) @ tc.W_dec
                    acts = edited
            error = tc_error[layer] if tc_error is not None and layer in tc_error else expand(state.tc_error[layer])
            return tc_output(tc, acts, x) + error

        hooks.append((TC_IN.format(layer), keep_in))
        hooks.append((TC_OUT.format(layer), replace_mlp))
    for layer, sae in attn_saes.items():
        def replace_z(act, hook, layer=layer, sae=sae):
            out.z_in[layer] = act
            if attn_acts is not None and layer in attn_acts:
                acts = attn_acts[layer]
            else:
                acts = sae.encode(act.to(sae.dtype)).to(act.dtype)
                if attn_edit is not None:
                    edited = attn_edit(layer, acts)
                    if live_errors:
                        return act + ((edited - acts) @ sae.W_dec).reshape(act.shape)
                    acts = edited
            error = attn_error[layer] if attn_error is not None and layer in attn_error else expand(state.attn_error[layer])
            return (acts @ sae.W_dec + sae.b_dec).reshape(act.shape) + error

        hooks.append((Z_HOOK.format(layer), replace_z))
    tokens = state.tokens.to(model.cfg.device).unsqueeze(0).expand(batch, n)
    with model.hooks(fwd_hooks=hooks):
        resid = model(tokens, stop_at_layer=model.cfg.n_layers)
        out.resid_final = resid
        out.final = model.ln_final(resid) if model.cfg.normalization_type is not None else resid
    return out


def metric_of(model: HookedTransformer, final: Tensor, blank_id: int, newline_id: int) -> Tensor:
    """The metric logit(blank) − logit(newline) before any soft cap: [B, n] from the normed residual."""
    direction, bias = metric_direction(model, blank_id, newline_id)
    return final @ direction + bias
