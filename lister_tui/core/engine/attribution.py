"""Feature attribution of the end-of-list metric, every SAE from one backward pass.

With the error term kept, splicing an SAE does not change the forward pass, and the
metric's gradient with respect to feature f at a position is ``g · W_dec[f]``, where
``g`` is the metric's gradient at the SAE's hook point in the *unspliced* model
(REFERENCE §4). So one forward and one backward pass of the plain model, keeping
only the activation ``x`` and the gradient ``g`` at each needed hook point, give
every SAE's exact splice-one-SAE-alone attribution:

    feature attribution  a ⊙ (g W_decᵀ)        with a = encode(x)
    error attribution    (x − decode(a)) · g

SAEs are consumed one at a time, so a caller can load one, use it and drop it.
Long because both methods (one-pass activation × gradient and integrated gradients)
share their input checks and the plain pass here, which circuits reuse too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lister_tui.core.engine.lazy import torch  # imported on first use
from lister_tui.core.errors import ListerError

if TYPE_CHECKING:
    from sae_lens import SAE
    from transformer_lens import HookedTransformer


def has_plain_decoder(sae: SAE) -> bool:
    """True when ``sae.decode(a)`` is exactly ``a @ W_dec + b_dec`` (reshaped for hook_z).

    That holds for the inference StandardSAE and JumpReLUSAE (Gemma Scope's) without
    a runtime input normalisation ("expected_average_only_in" is folded into the
    weights and is a no-op at run time). Other architectures or normalisers (TopK
    with decoder-norm rescaling, layer_norm, ...) go through their own encode/decode.
    Exact class checks: subclasses such as training SAEs may encode differently.
    """
    from sae_lens import JumpReLUSAE, StandardSAE  # imported late: sae-lens takes seconds to import

    return type(sae) in (StandardSAE, JumpReLUSAE) and sae.cfg.normalize_activations in (
        "none",
        "expected_average_only_in",
    )


def metric_logit_diff(logits: Tensor, blank_id: int, newline_id: int) -> Tensor:
    """``logits[..., blank] − logits[..., newline]``: [batch, pos, d_vocab] -> [batch, pos].

    The two columns are sliced before the subtraction so nothing vocabulary-sized
    is allocated (Gemma's vocabulary is 256k).
    """
    pair = logits[..., [blank_id, newline_id]]  # [batch, pos, 2]
    return pair[..., 0] - pair[..., 1]


@dataclass
class SAEAttribution:
    """One SAE's attribution of the metric, per sample, position and feature."""

    sae_id: str
    hook_name: str
    attribution: Tensor  # [batch, pos, d_sae] float32 on CPU; zero at padding positions
    activation: Tensor  # [batch, pos, d_sae] float32 on CPU; zero at padding positions
    error_attribution: Tensor  # [batch, pos] float32 on CPU; the SAE error node's attribution
    metric: Tensor  # [batch] float32 on CPU; the metric at each target position (what was attributed)

    def top_pairs(
        self,
        k: int,
        *,
        min_pos: int = 0,
        max_pos: Sequence[int] | None = None,
    ) -> list[list[tuple[int, int, float, float]]]:
        """Per sample, up to ``k`` (pos, feature, attribution, activation) with the
        largest positive attribution first, restricted to ``min_pos <= pos < max_pos[b]``.
        """
        batch, n_pos, d_sae = self.attribution.shape
        if max_pos is not None and len(max_pos) != batch:
            raise ListerError(f"max_pos has {len(max_pos)} entries for a batch of {batch}; give one per sample")
        if k < 0:
            raise ListerError(f"k {k} is negative; valid: 0 or more")
        pairs: list[list[tuple[int, int, float, float]]] = []
        for b in range(batch):
            stop = n_pos if max_pos is None else min(int(max_pos[b]), n_pos)
            window = self.attribution[b, min_pos:stop].reshape(-1)  # [n_window_pos * d_sae]
            if window.numel() == 0 or k == 0:
                pairs.append([])
                continue
            values, flat_ids = window.topk(min(k, window.numel()))
            sample_pairs = []
            for value, flat_id in zip(values.tolist(), flat_ids.tolist()):
                if value <= 0:
                    break  # sorted descending: nothing positive is left
                pos, feature = min_pos + flat_id // d_sae, flat_id % d_sae
                sample_pairs.append((pos, feature, value, float(self.activation[b, pos, feature])))
            pairs.append(sample_pairs)
        return pairs


def attribute(
    model: HookedTransformer,
    tokens: Tensor,  # [batch, pos] right-padded token ids
    target_pos: Sequence[int],
    saes: Iterable[tuple[str, SAE]],
    *,
    blank_id: int,
    newline_id: int,
    lengths: Sequence[int] | None = None,
    hook_names: Sequence[str] | None = None,
) -> Iterator[SAEAttribution]:
    """Attribute ``Σ_b metric[b, target_pos[b]]`` to every feature of every SAE.

    Samples don't interact, so each sample's gradient is its own metric's. One forward
    and backward pass of the unspliced model serves all SAEs; it runs when the first
    result is requested (bad inputs are reported at the call). ``hook_names`` lists the
    hook points up front so that ``saes`` can be a lazy stream (each SAE is loaded only
    after the pass); without it the stream is materialised to read the hook names from
    the SAEs' configs.
    """
    if hook_names is None:
        saes = list(saes)
        hook_names = [sae.cfg.metadata.hook_name for _, sae in saes]
    hook_names = list(dict.fromkeys(hook_names))  # unique, in order
    lengths = _check_inputs(model, tokens, target_pos, lengths, hook_names)
    return _attribute_stream(model, tokens, target_pos, saes, hook_names, lengths, blank_id, newline_id)


def _attribute_stream(
    model: HookedTransformer,
    tokens: Tensor,  # [batch, pos]
    target_pos: Sequence[int],
    saes: Iterable[tuple[str, SAE]],
    hook_names: list[str],
    lengths: Sequence[int],
    blank_id: int,
    newline_id: int,
) -> Iterator[SAEAttribution]:
    activations, gradients, metric = activations_and_gradients(
        model, tokens, target_pos, hook_names, blank_id=blank_id, newline_id=newline_id
    )
    # [batch, pos] True at real (non-padding) positions
    real = torch.arange(tokens.shape[1]).unsqueeze(0) < torch.tensor(list(lengths)).unsqueeze(1)
    for sae_id, sae in saes:
        hook_name = sae.cfg.metadata.hook_name
        if hook_name not in activations:
            raise ListerError(
                f"SAE {sae_id!r} reads hook {hook_name!r}, which is not among the hook names given "
                f"up front ({', '.join(hook_names)})"
            )
        yield _attribute_one(sae_id, sae, activations[hook_name], gradients[hook_name], real, metric)


def _check_inputs(
    model: HookedTransformer,
    tokens: Tensor,
    target_pos: Sequence[int],
    lengths: Sequence[int] | None,
    hook_names: Sequence[str],
) -> Sequence[int]:
    if tokens.ndim != 2:
        raise ListerError(f"tokens must be [batch, pos]; got shape {tuple(tokens.shape)}")
    batch, n_pos = tokens.shape
    if lengths is None:
        lengths = [n_pos] * batch
    if len(lengths) != batch or len(target_pos) != batch:
        raise ListerError(
            f"batch of {batch} but {len(lengths)} lengths and {len(target_pos)} target positions; give one per sample"
        )
    for b, (length, target) in enumerate(zip(lengths, target_pos)):
        if not 0 < length <= n_pos:
            raise ListerError(f"length {length} of sample {b} is out of range; valid: 1..{n_pos}")
        if not 0 <= target < length:
            raise ListerError(f"target position {target} of sample {b} is out of range; valid: 0..{length - 1}")
    for name in hook_names:
        if name not in model.hook_dict:
            # A spliced SAE replaces its hook point by a wrapper module, so the plain
            # name disappears: attribution needs the unspliced model.
            raise ListerError(
                f"hook {name!r} is not a hook point of the model (is an SAE spliced in there? "
                "attribution runs on the plain model; call model.reset_saes() first)"
            )
    return lengths


def activations_and_gradients(
    model: HookedTransformer,
    tokens: Tensor,  # [batch, pos]
    target_pos: Sequence[int],
    hook_names: Sequence[str],
    *,
    blank_id: int,
    newline_id: int,
) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
    """x and d(Σ_b metric[b, target_pos[b]])/dx at each hook, and the metric itself
    ([batch]), from one plain forward+backward: the shared first step of attribution and
    of circuits (REFERENCE §4).

    Only these tensors are kept (no full activation cache). Shapes as at the hook:
    [batch, pos, d] or, for hook_z, [batch, pos, n_heads, d_head].
    """
    captured: dict[str, Tensor] = {}

    def capture(activation: Tensor, hook) -> Tensor:
        # Loaded models have frozen weights, so the first hook's input may not require
        # grad. Making it a leaf there is safe: it only happens when nothing upstream
        # requires grad, i.e. when no other needed hook point feeds it.
        if not activation.requires_grad:
            activation = activation.detach().requires_grad_(True)
        captured[hook.name] = activation
        return activation

    # Tokens made under inference mode can't enter an autograd graph: copy them out.
    with torch.inference_mode(False), torch.enable_grad():
        tokens = tokens.clone().to(model.cfg.device)
        fwd_hooks = [(name, capture) for name in hook_names]
        with model.hooks(fwd_hooks=fwd_hooks):
            metric = metric_at(model, tokens, target_pos, blank_id, newline_id)  # [batch]
        grads = torch.autograd.grad(
            metric.sum(), [captured[name] for name in hook_names], allow_unused=True
        )
    activations = {name: captured[name].detach() for name in hook_names}
    gradients = {
        name: torch.zeros_like(activations[name]) if grad is None else grad.detach()
        for name, grad in zip(hook_names, grads)
    }
    return activations, gradients, metric.detach().float().cpu()


def metric_at(
    model: HookedTransformer,
    tokens: Tensor,  # [batch, pos]
    target_pos: Sequence[int],
    blank_id: int,
    newline_id: int,
) -> Tensor:  # [batch]
    """metric[b, target_pos[b]] on the soft-capped logits, without full-vocabulary logits.

    The final norm is per position and the soft cap per logit, so selecting the
    target positions and the two unembedding columns first gives the same numbers
    as slicing the model's logits.
    """
    # An explicit all-ones mask: with right padding and causal attention, real
    # positions never see pads, and it stops TransformerLens guessing pads from ids.
    residual = model(
        tokens, stop_at_layer=model.cfg.n_layers, attention_mask=torch.ones_like(tokens)
    )  # [batch, pos, d_model], before the final norm
    rows = torch.arange(tokens.shape[0], device=residual.device)
    columns = torch.tensor(list(target_pos), device=residual.device)
    at_target = residual[rows, columns].unsqueeze(1)  # [batch, 1, d_model]
    if model.cfg.normalization_type is not None:
        at_target = model.ln_final(at_target)
    ids = [blank_id, newline_id]
    logits = at_target @ model.unembed.W_U[:, ids] + model.unembed.b_U[ids]  # [batch, 1, 2]
    cap = model.cfg.output_logits_soft_cap
    if cap is not None and cap > 0:  # as transformer_lens apply_softcap
        logits = cap * torch.tanh(logits / cap)
    return (logits[..., 0] - logits[..., 1]).squeeze(1)


def _attribute_one(
    sae_id: str,
    sae: SAE,
    activation: Tensor,  # [batch, pos, d_in] or hook_z [batch, pos, n_heads, d_head]
    gradient: Tensor,  # same shape as activation
    real: Tensor,  # [batch, pos] bool
    metric: Tensor,  # [batch]
) -> SAEAttribution:
    x = activation.to(sae.device, sae.dtype)
    g = gradient.to(sae.device, sae.dtype)
    # hook_z SAEs flatten heads as einops "... n_heads d_head -> ... (n_heads d_head)",
    # which is a row-major flatten of the last two dims.
    hook_z = sae.cfg.reshape_activations == "hook_z"
    x_flat = x.flatten(-2) if hook_z else x  # [batch, pos, d_in]
    g_flat = g.flatten(-2) if hook_z else g  # [batch, pos, d_in]
    # Dense [batch, pos, d_sae] tensors: ~20 MB each at batch 5, 60 positions and
    # d_sae 16k, fine at our sizes; a wider SAE would want sparse top-k here.
    plain = has_plain_decoder(sae)
    with torch.no_grad():
        feature_acts = _encode_plain(sae, x_flat) if plain else sae.encode(x)  # [batch, pos, d_sae]
    if plain:
        with torch.no_grad():
            attribution = g_flat @ sae.W_dec.T  # [batch, pos, d_sae]: d metric / d feature
            attribution.mul_(feature_acts)
            # decode(a) · g = a · (g W_decᵀ) + b_dec · g, so the error node's attribution
            # (x − decode(a)) · g needs no decoding: on a small model the decoder's matmul
            # was a third of the per-SAE cost (bench/README). Sums accumulate in float32 so
            # that a bf16 SAE's cancellation stays at float32 precision.
            error_attribution = (
                (x_flat * g_flat).sum(-1, dtype=torch.float32)
                - (g_flat @ sae.b_dec).float()
                - attribution.sum(-1, dtype=torch.float32)
            )  # [batch, pos]
    else:
        feature_grad, reconstruction = _decoder_gradient_autograd(sae, x, g)
        with torch.no_grad():
            attribution = feature_acts * feature_grad  # [batch, pos, d_sae]
            error_attribution = ((x - reconstruction) * g).flatten(2).sum(-1)  # [batch, pos]
    padding = ~real.to(attribution.device)  # [batch, pos]
    return SAEAttribution(
        sae_id=sae_id,
        hook_name=sae.cfg.metadata.hook_name,
        attribution=_zeroed_cpu(attribution, padding),
        activation=_zeroed_cpu(feature_acts, padding),
        error_attribution=_zeroed_cpu(error_attribution, padding),
        metric=metric,
    )


def _encode_plain(sae: SAE, x_flat: Tensor) -> Tensor:  # [batch, pos, d_in] -> [batch, pos, d_sae]
    """``sae.encode`` for a StandardSAE or JumpReLUSAE with a plain decoder, in fewer passes.

    sae-lens computes ``relu(h) * (h > threshold)`` (JumpReLU) or ``relu(h)`` with
    ``h = (x − b_dec) W_enc + b_enc``: four passes over [pos, d_sae] and three temporaries.
    Here the bias is added inside the matmul and the features that don't fire are
    zeroed in place (``h`` is kept where ``h > max(threshold, 0)``): the same numbers,
    and on lister-tiny a fifth of the per-SAE time less (bench/profile_attribution.py).
    The SAE's hook points are bypassed; nothing hooks a standalone SAE here.
    """
    from sae_lens import JumpReLUSAE

    sae_in = x_flat.to(sae.dtype)
    if sae.cfg.apply_b_dec_to_input:
        sae_in = sae_in - sae.b_dec
    hidden = torch.addmm(sae.b_enc, sae_in.reshape(-1, sae_in.shape[-1]), sae.W_enc)  # [batch·pos, d_sae]
    if type(sae) is JumpReLUSAE:
        off = hidden <= sae.threshold.clamp(min=0)
    else:
        off = hidden <= 0
    return hidden.masked_fill_(off, 0).reshape(*sae_in.shape[:-1], hidden.shape[-1])


def _decoder_gradient_autograd(sae: SAE, x: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """d(decode(a) · g)/da and decode(a) through autograd, for any decoder.

    encode must run right before decode: stateful normalisers keep the input's
    statistics between the two calls.
    """
    with torch.inference_mode(False), torch.enable_grad():
        feature_acts = sae.encode(x).detach().requires_grad_(True)
        reconstruction = sae.decode(feature_acts)
        (feature_grad,) = torch.autograd.grad((reconstruction * g).sum(), feature_acts)
    return feature_grad, reconstruction.detach()


def _zeroed_cpu(values: Tensor, padding: Tensor) -> Tensor:
    """``values`` (freshly computed, owned here) zeroed at padding positions, as float32 on CPU.

    In place and only when there is padding: a copy of every [batch, pos, d_sae]
    tensor cost more than a tenth of the per-SAE time on a small model.
    """
    if padding.any():
        values.masked_fill_(padding.reshape(padding.shape + (1,) * (values.ndim - padding.ndim)), 0)
    return values.float().cpu()


from lister_tui.core.limits import MAX_IG_STEPS  # noqa: E402  (each step is a forward and backward pass per SAE)


def check_ig_steps(steps: object) -> None:
    """Refuse anything but an integer number of integrated-gradient steps in [1, MAX_IG_STEPS]."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_IG_STEPS:
        raise ListerError(f"integrated-gradient steps must be an integer in [1, {MAX_IG_STEPS}], got {steps!r}")


def attribute_integrated(
    model: HookedTransformer,
    tokens: Tensor,  # [batch, pos] right-padded token ids
    target_pos: Sequence[int],
    sae_id: str,
    sae: SAE,
    *,
    steps: int,
    blank_id: int,
    newline_id: int,
    lengths: Sequence[int] | None = None,
) -> SAEAttribution:
    """Integrated gradients of ``metric[b, target_pos[b]]`` for every feature of one SAE.

    Activation × gradient is a first-order estimate: where the model reads a feature
    through a saturated switch (a softmax or a GELU far from its bend) the gradient
    at the real activation is near zero although zeroing the feature changes a lot.
    Integrated gradients (as in Marks et al., *Sparse Feature Circuits*) average the
    gradient along the straight path from every feature of this SAE at zero to its
    real value, with the SAE's error term kept:

        feature attribution  a ⊙ mean over α of  d metric / d feature  at  α·a

    with α at the midpoints of ``steps`` equal intervals. Summed over every
    (position, feature) it approaches metric(real) − metric(every feature zeroed) as
    ``steps`` grows (completeness); each step is one forward and backward pass with
    this SAE spliced, so this costs ``steps`` passes per SAE where activation ×
    gradient costs one pass for all SAEs. The error node's attribution is the
    first-order one (the error is not on the path).
    """
    check_ig_steps(steps)
    hook_name = sae.cfg.metadata.hook_name
    lengths = _check_inputs(model, tokens, target_pos, lengths, [hook_name])
    activations, gradients, metric = activations_and_gradients(
        model, tokens, target_pos, [hook_name], blank_id=blank_id, newline_id=newline_id
    )
    real = torch.arange(tokens.shape[1]).unsqueeze(0) < torch.tensor(list(lengths)).unsqueeze(1)
    first_order = _attribute_one(sae_id, sae, activations[hook_name], gradients[hook_name], real, metric)

    x = activations[hook_name].to(sae.device, sae.dtype)
    with torch.no_grad():
        feature_acts = sae.encode(x)  # [batch, pos, d_sae]
        reconstruction = sae.decode(feature_acts)  # shape of x
    grad_sum = torch.zeros_like(feature_acts)
    with torch.inference_mode(False), torch.enable_grad():
        run_tokens = tokens.clone().to(model.cfg.device)
        for step in range(steps):
            alpha = (step + 0.5) / steps
            scaled = (alpha * feature_acts).detach().requires_grad_(True)

            def splice(activation: Tensor, hook) -> Tensor:
                # x − decode(a) + decode(α·a): the error term x − decode(a) is kept
                return activation - reconstruction.to(activation.dtype) + sae.decode(scaled).to(activation.dtype)

            with model.hooks(fwd_hooks=[(hook_name, splice)]):
                path_metric = metric_at(model, run_tokens, target_pos, blank_id, newline_id)
            (grad,) = torch.autograd.grad(path_metric.sum(), [scaled])
            grad_sum += grad.detach()
    with torch.no_grad():
        attribution = feature_acts * grad_sum / steps
    return SAEAttribution(
        sae_id=sae_id,
        hook_name=hook_name,
        attribution=_zeroed_cpu(attribution, ~real.to(attribution.device)),
        activation=first_order.activation,
        error_attribution=first_order.error_attribution,
        metric=metric,
    )
