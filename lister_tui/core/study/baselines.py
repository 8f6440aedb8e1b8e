"""Simple methods that also keep lists from ending, to set beside SAE ablation.

The study says restricted sampling and steering vectors stop lists from ending too,
but never compares them with its ablations. Each baseline here regenerates a list
exactly as the study's ablation does: from ``tokens[:attribution position]``, with
the sample's own seed (common random numbers), so it shares the ablation's base.

- restricted sampling: the end token(s) are never sampled, with or without the
  filler blank banned as well;
- steering: the mean ``hook_resid_post`` activation of long-template prompts minus
  that of short-template prompts at one layer, times a scale, added at every
  position (prompt and generated tokens) during generation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from lister_tui.core.engine.ablation import Ablation
from lister_tui.core.engine.generation import ListSample, sample_lists, with_metric
from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.engine.prompts import prompt_ids
from lister_tui.core.engine.sampling import SamplingSettings
from lister_tui.core.errors import ListerError

RESTRICTED = "restricted sampling"
STEERING = "steering"


# the restricted-sampling conditions' names, in the order restricted_baselines gives them
BAN_BLANK_AND_END = "ban blank+end"
BAN_END = "ban end"


def steering_name(layer: int, scale: float) -> str:
    """The steering condition's name in the tables, e.g. "steer layer 0 x8"."""
    return f"steer layer {layer} x{scale:g}"


@dataclass(frozen=True)
class Baseline:
    """One simple method, as a condition of the sweep."""

    name: str  # the condition's name in the tables, e.g. "ban end"
    method: str  # RESTRICTED or STEERING
    description: str
    banned_ids: tuple[int, ...] = ()
    hooks: tuple[tuple[str, Callable], ...] = ()
    details: dict = field(default_factory=dict, compare=False)  # what the manifest records


def regenerate(
    loaded: LoadedModel,
    samples: Sequence[ListSample],
    settings: SamplingSettings,
    *,
    ablation: Ablation | None = None,
    banned_ids: Sequence[int] = (),
    hooks: Sequence[tuple[str, Callable]] = (),
) -> list[ListSample]:
    """Regenerate each sample from ``tokens[:attribution position]`` with its own seed.

    This is either side of :func:`experiment.ablate_and_regenerate` (the same prefix,
    seed and sampler): with nothing given, its base; with ``ablation``, its ablated
    list. Samples are generated together (the sampler batches equal-length prefixes;
    a sample's tokens do not depend on its batch). The metric at the regenerated
    list's attribution position is filled in (plain model).
    """
    prefixes = []
    for i, sample in enumerate(samples):
        pos = sample.structure.attribution_pos
        if pos is None:
            raise ListerError(f"sample {i} ({sample.spec.key}) has no attribution position to regenerate from")
        prefixes.append(list(sample.tokens[:pos]))
    regenerated = sample_lists(
        loaded, [s.spec for s in samples], settings, prefixes=prefixes, ablation=ablation, banned_ids=banned_ids, hooks=hooks
    )
    return [with_metric(loaded, r) for r in regenerated]


def restricted_baselines(loaded: LoadedModel) -> list[Baseline]:
    """Banning the blank and the end token(s); banning only the end token(s)."""
    ends = tuple(dict.fromkeys(loaded.ids.stops))
    end_names = ", ".join(repr(loaded.tokenizer.decode([t])) for t in ends)
    blank = repr(loaded.tokenizer.decode([loaded.ids.blank]))
    return [
        Baseline(
            BAN_BLANK_AND_END,
            RESTRICTED,
            f"the filler blank {blank} and the end token(s) {end_names} are never sampled",
            banned_ids=(loaded.ids.blank, *ends),
            details={"banned_token_ids": [loaded.ids.blank, *ends]},
        ),
        Baseline(
            BAN_END,
            RESTRICTED,
            f"the end token(s) {end_names} are never sampled",
            banned_ids=ends,
            details={"banned_token_ids": list(ends)},
        ),
    ]


def check_layer(loaded: LoadedModel, layer: int) -> None:
    n_layers = loaded.model.cfg.n_layers
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
        raise ListerError(f"steering layer {layer!r} is out of range; valid: 0..{n_layers - 1}")


@torch.no_grad()
def _mean_activation(loaded: LoadedModel, template: str, topics: Sequence[str], hook_name: str, layer: int) -> Tensor:
    """Mean over topics of the mean activation over each prompt's positions (BOS excluded): [d_model]."""
    per_prompt = []
    for topic in topics:
        ids = prompt_ids(loaded, template, topic)
        start = 1 if loaded.ids.bos is not None and ids[0] == loaded.ids.bos else 0
        _, cache = loaded.model.run_with_cache(
            torch.tensor([ids], device=loaded.device), names_filter=hook_name, stop_at_layer=layer + 1
        )
        per_prompt.append(cache[hook_name][0, start:].float().mean(0).cpu())  # [d_model]
    return torch.stack(per_prompt).mean(0)


def steering_vector(loaded: LoadedModel, layer: int, topics: Sequence[str]) -> Tensor:
    """mean activation(long-template prompts) − mean activation(short-template prompts): [d_model].

    Read at ``blocks.{layer}.hook_resid_post``; each prompt's activations are averaged
    over its positions (BOS excluded), then over ``topics``.
    """
    check_layer(loaded, layer)
    if not topics:
        raise ListerError("no topics given for the steering vector; give at least one")
    hook_name = f"blocks.{layer}.hook_resid_post"
    return _mean_activation(loaded, "long", topics, hook_name, layer) - _mean_activation(
        loaded, "short", topics, hook_name, layer
    )


def steering_baseline(loaded: LoadedModel, layer: int, scale: float, topics: Sequence[str]) -> Baseline:
    """Add ``scale`` × the long − short steering vector at every position of one layer."""
    if not math.isfinite(scale):
        raise ListerError(f"steering scale {scale!r} is not a finite number")
    vector = steering_vector(loaded, layer, topics)
    hook_name = f"blocks.{layer}.hook_resid_post"
    added = (scale * vector).to(loaded.device)  # [d_model]

    def add_vector(activation: Tensor, hook) -> Tensor:  # [batch, pos, d_model]
        return activation + added.to(activation.dtype)

    return Baseline(
        steering_name(layer, scale),
        STEERING,
        f"{scale:g} x (mean long − mean short prompt activation) added at every position of {hook_name}",
        hooks=((hook_name, add_vector),),
        details={
            "hook": hook_name,
            "layer": layer,
            "scale": scale,
            "vector_norm": float(vector.norm()),
            "topics": list(topics),
        },
    )
