"""Batched, KV-cached sampling with common random numbers.

Every sample owns a ``torch.Generator`` seeded with its seed and draws exactly one
uniform number from it per decoding step (none when greedy); the token is then read
off the inverse CDF of the filtered, renormalised distribution. A sample's tokens therefore depend
only on its prompt, its seed and the model (with whatever hooks are on it), not
on the other samples of its batch. Base and ablated runs with the same seed share
their random numbers, so a difference between them comes from the ablation.

Prompts of different lengths are grouped by length and each group runs as one
batch: no padding, so every row sees exactly what it would see alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from lister_tui.core.engine.sampling_settings import (  # noqa: F401  (re-exported: the sampler's settings)
    MAX_NEW_TOKENS,
    MAX_TEMPERATURE,
    MAX_TOP_K,
    SamplingSettings,
    _number,
)
from lister_tui.core.errors import ListerError

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer


ForwardHook = tuple[str, Callable]
HookFactory = Callable[[int], list[ForwardHook]]
# Called after each step with (steps done so far, tokens of every sample in input
# order); returning True cancels the generation.
StepCallback = Callable[[int, list[list[int]]], "bool | None"]


@dataclass(frozen=True)
class Generation:
    """One sampled continuation."""

    prompt: list[int]  # prefix token ids given to the model
    tokens: list[int]  # new token ids, including the stop token if one was produced
    seed: int
    stopped: bool  # a stop token was produced (else the token cap was hit, or cancelled)


def generate(
    model: HookedTransformer,
    prompts: list[list[int]],
    seeds: list[int],
    *,
    temperature: float,
    top_p: float = 1.0,
    top_k: int | None = None,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    banned_ids: Sequence[int] = (),
    ablation_hooks: list[ForwardHook] | None = None,
    hook_factory: HookFactory | None = None,
    on_step: StepCallback | None = None,
    pad_id: int = 0,
    max_batch_size: int | None = None,
) -> list[Generation]:
    """Sample one continuation per (prompt, seed); the output is in input order.

    ``ablation_hooks`` are added as they are to every batch; ``hook_factory(prefix_len)``
    is called once per batch for fresh hooks (position-tracking hooks keep state, so
    they must not be shared between batches). Hooks see the whole prefix in the first
    forward pass, then one new position per pass.

    ``on_step(steps_done, tokens)`` is called after every decoding step; ``tokens`` is
    the live per-sample list (input order; finished batches complete, later ones
    empty): read it, copy what you keep, don't mutate it. Returning True cancels:
    what was generated so far comes back with ``stopped=False``.

    ``pad_id`` is the token fed back for rows that have already stopped (their
    outputs are ignored). ``max_batch_size`` splits large same-length groups.

    A batch stops at the model's context (``model.cfg.n_ctx`` tokens, prefix included)
    if that comes before ``max_new_tokens``; callers refuse prompts that leave no room.

    ``banned_ids`` are never sampled (their logits are set to -inf before the
    temperature, top-k and top-p steps): restricted sampling, e.g. banning the end
    token so that a list cannot end. Each sample still draws one uniform per step.
    """
    _check_arguments(prompts, seeds, temperature, top_p, top_k, max_new_tokens, max_batch_size)
    banned = sorted({int(b) for b in banned_ids})
    if banned and not (0 <= banned[0] and banned[-1] < model.cfg.d_vocab_out):
        raise ListerError(f"banned token ids {banned} are out of range; valid: 0..{model.cfg.d_vocab_out - 1}")
    stop_set = {int(s) for s in stop_ids}
    n_ctx = getattr(model.cfg, "n_ctx", None)
    new_tokens: list[list[int]] = [[] for _ in prompts]
    stopped = [False] * len(prompts)
    steps_done = 0

    for batch_indices in _batches_by_length(prompts, max_batch_size):
        prefix_len = len(prompts[batch_indices[0]])
        # A regeneration continues a sampled prefix, so prefix + max_new_tokens can pass the
        # model's context (a list that never ends under "ban end"): it stops at the context's
        # end, as at the token cap. A batch holds one prefix length, so the cap is the same
        # whatever the batch (a sample's tokens never depend on it).
        steps = max_new_tokens if not isinstance(n_ctx, int) or n_ctx <= 0 else max(0, min(max_new_tokens, n_ctx - prefix_len))
        if steps == 0:
            continue
        hooks = list(ablation_hooks or [])
        if hook_factory is not None:
            hooks += hook_factory(prefix_len)
        generators = [torch.Generator(device="cpu").manual_seed(int(seeds[i])) for i in batch_indices]
        prefix = torch.tensor([prompts[i] for i in batch_indices], dtype=torch.long)  # [batch, prefix_len]

        def record_step(step_tokens: list[int], batch_indices: list[int] = batch_indices) -> bool:
            """Append the step's tokens to unfinished samples; True to cancel."""
            nonlocal steps_done
            for row, sample in enumerate(batch_indices):
                if stopped[sample]:
                    continue
                token = step_tokens[row]
                new_tokens[sample].append(token)
                stopped[sample] = token in stop_set
            steps_done += 1
            return on_step is not None and bool(on_step(steps_done, new_tokens))

        with model.hooks(fwd_hooks=hooks):
            cancelled = _decode_batch(
                model,
                prefix,
                generators,
                temperature=temperature,
                top_p=top_p,
                top_k=top_k,
                max_new_tokens=steps,
                finished=lambda rows=batch_indices: [stopped[s] for s in rows],
                pad_id=pad_id,
                record_step=record_step,
                banned_ids=banned,
            )
        if cancelled:
            break

    return [
        Generation(prompt=list(prompts[i]), tokens=new_tokens[i], seed=int(seeds[i]), stopped=stopped[i])
        for i in range(len(prompts))
    ]


def _check_arguments(
    prompts: list[list[int]],
    seeds: list[int],
    temperature: float,
    top_p: float,
    top_k: int | None,
    max_new_tokens: int,
    max_batch_size: int | None,
) -> None:
    if len(prompts) != len(seeds):
        raise ListerError(f"{len(prompts)} prompts but {len(seeds)} seeds; give one seed per prompt")
    if any(len(p) == 0 for p in prompts):
        raise ListerError("an empty prompt was given; every prompt needs at least one token")
    if temperature < 0:
        raise ListerError(f"temperature {temperature} is negative; valid: 0 (greedy) or more")
    if not 0.0 < top_p <= 1.0:
        raise ListerError(f"top_p {top_p} is out of range; valid: 0 < top_p <= 1")
    if top_k is not None and top_k < 1:
        raise ListerError(f"top_k {top_k} is out of range; valid: None or an integer >= 1")
    if max_new_tokens < 0:
        raise ListerError(f"max_new_tokens {max_new_tokens} is negative; valid: 0 or more")
    if max_batch_size is not None and max_batch_size < 1:
        raise ListerError(f"max_batch_size {max_batch_size} is out of range; valid: None or >= 1")


def _batches_by_length(prompts: list[list[int]], max_batch_size: int | None) -> list[list[int]]:
    """Indices of prompts grouped by length (in order of first appearance), split to size."""
    groups: dict[int, list[int]] = {}
    for index, prompt in enumerate(prompts):
        groups.setdefault(len(prompt), []).append(index)
    size = max_batch_size or len(prompts) or 1
    return [indices[i : i + size] for indices in groups.values() for i in range(0, len(indices), size)]


@torch.inference_mode()
def _decode_batch(
    model: HookedTransformer,
    prefix: Tensor,  # [batch, prefix_len]
    generators: list[torch.Generator],
    *,
    temperature: float,
    top_p: float,
    top_k: int | None,
    max_new_tokens: int,
    finished: Callable[[], list[bool]],
    pad_id: int,
    record_step: Callable[[list[int]], bool],
    banned_ids: Sequence[int] = (),
) -> bool:
    """Decode one same-length batch until every row stopped or the cap; True if cancelled."""
    # imported late: transformer-lens takes seconds to import
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    device = model.cfg.device
    batch_size = prefix.shape[0]
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, device, batch_size)
    step_input = prefix.to(device)  # [batch, prefix_len] first, then [batch, 1]
    for _ in range(max_new_tokens):
        # The attention mask must be explicit with a KV cache: without a tokenizer
        # TransformerLens cannot infer one, and with a tokenizer it would guess pads
        # from token ids. Every position here is real, so it is all ones.
        logits = model(
            step_input,
            return_type="logits",
            past_kv_cache=cache,
            attention_mask=torch.ones_like(step_input),
        )  # [batch, step_len, d_vocab]
        last = logits[:, -1, :]  # [batch, d_vocab]
        if banned_ids:
            last = last.clone()
            last[:, list(banned_ids)] = float("-inf")
        next_tokens = sample_next(last, generators, temperature=temperature, top_p=top_p, top_k=top_k)
        next_list = next_tokens.tolist()
        # Rows that stopped before this step keep running (the batch stays
        # rectangular) on pad tokens; their outputs are ignored.
        fed = [pad_id if done else tok for tok, done in zip(next_list, finished())]
        if record_step(next_list):
            return True
        if all(finished()):
            return False
        step_input = torch.tensor(fed, dtype=torch.long, device=device).unsqueeze(1)  # [batch, 1]
    return False


def sample_next(
    logits: Tensor,  # [batch, d_vocab]
    generators: list[torch.Generator],
    *,
    temperature: float,
    top_p: float = 1.0,
    top_k: int | None = None,
) -> Tensor:  # [batch] token ids
    """One token per row: greedy at temperature 0, else top-k then top-p, then inverse CDF.

    Each row draws one uniform from its own generator (even at temperature 0 nothing
    is drawn, so greedy runs consume no randomness).
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    scaled = logits.float() / temperature  # [batch, d_vocab]
    sorted_logits = _sorted_descending(scaled)  # [batch, d_vocab], values only
    if top_k is not None and top_k < sorted_logits.shape[-1]:
        # Like HF's TopKLogitsWarper: keep everything tied with the k-th logit.
        kth = sorted_logits[:, top_k - 1 : top_k]  # [batch, 1]
        sorted_logits = sorted_logits.masked_fill(sorted_logits < kth, float("-inf"))
    probs = torch.softmax(sorted_logits, dim=-1)  # [batch, d_vocab], renormalised after top-k
    if top_p < 1.0:
        # Keep the smallest prefix whose mass reaches top_p: drop a token when the mass
        # strictly before it already does. The top token is always kept.
        mass_before = probs.cumsum(dim=-1) - probs
        drop = mass_before >= top_p
        drop[:, 0] = False
        probs = probs.masked_fill(drop, 0.0)
    cdf = probs.double().cumsum(dim=-1)  # [batch, d_vocab]; unnormalised, total = cdf[:, -1]
    uniforms = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])  # [batch]
    targets = (uniforms.to(cdf.device) * cdf[:, -1]).unsqueeze(1)  # [batch, 1]
    # First index whose cumulative mass exceeds the target; zero-probability tokens
    # never exceed it because their cdf equals their predecessor's. The kept tokens
    # are a prefix of the sorted order, so clamping to the last kept one only guards
    # against rounding at the very top of the cdf.
    last_kept = (probs > 0).sum(dim=-1, keepdim=True) - 1  # [batch, 1]
    if bool((last_kept < 0).any()):
        # no token has a probability: the row's logits hold a NaN or an infinity (a softmax
        # over them is NaN everywhere), or every token was banned
        rows = torch.nonzero(last_kept.squeeze(1) < 0).flatten().tolist()
        raise ListerError(
            f"nothing can be sampled for batch row(s) {rows}: the model's next-token logits are not "
            "finite numbers (NaN or infinite) or every token is banned; run the model in float32 "
            "(its registry entry's dtype) or check its weights and any ablation hooks"
        )
    chosen = torch.minimum(torch.searchsorted(cdf, targets, right=True), last_kept)  # [batch, 1]
    return _ids_at_sorted_positions(scaled, sorted_logits, chosen)


def _sorted_descending(values: Tensor) -> Tensor:  # [batch, n] -> [batch, n]
    """Each row's values, largest first.

    Only the values are needed (the one chosen token's id is found afterwards), and on a
    CPU NumPy's vectorised sort of values alone is over 10 times faster than a stable
    ``torch.sort`` with indices, which took a fifth of lister-tiny's sampling time.
    Equal values are equal floats (0.0 and -0.0 aside, which give the same softmax), so
    the result is bit for bit a stable descending sort's values.
    """
    if values.device.type != "cpu":
        return torch.sort(values, dim=-1, descending=True).values
    ascending = np.sort(values.detach().numpy(), axis=-1)
    return torch.from_numpy(np.ascontiguousarray(ascending[:, ::-1]))


def _ids_at_sorted_positions(values: Tensor, sorted_values: Tensor, positions: Tensor) -> Tensor:
    """The original index of each row's element at ``positions`` [batch, 1] of a *stable*
    descending sort of ``values`` [batch, n]: equal values keep their original order, so
    the element is the r-th index (counting up) holding that value, where r is how far
    ``positions`` lies into the run of that value in the sorted row.
    """
    value = sorted_values.gather(1, positions)  # [batch, 1]
    run_start = (values > value).sum(dim=-1, keepdim=True)  # [batch, 1] where the value's run begins
    rank = positions - run_start  # [batch, 1], 0 for the run's first element
    equal = values == value  # [batch, n]
    nth_equal = equal & (equal.cumsum(dim=-1) == rank + 1)  # exactly one True per row
    return nth_equal.to(torch.uint8).argmax(dim=-1)  # [batch]
