"""Sampling whole lists from a loaded model: tokens, structure and list metrics together.

This is the layer the explorer, the sweep and scripts share: it turns prompt specs
(or explicit prefixes) into :class:`ListSample` records, optionally under an
ablation, with every sample drawn from its own seed (common random numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from lister_tui.core.engine.ablation import Ablation, ablation_hooks, validate, zeroed_activations
from lister_tui.core.engine.lazy import torch  # imported on first use
from lister_tui.core.engine.listing import ListMetrics, ListStructure, list_metrics, parse_structure
from lister_tui.core.engine.prompts import PromptSpec, prompt_ids
from lister_tui.core.engine.sampling_settings import SamplingSettings
from lister_tui.core.errors import ListerError

if TYPE_CHECKING:
    from lister_tui.core.engine.interventions import InterventionSet
    from lister_tui.core.engine.loading import LoadedModel


@dataclass(frozen=True)
class ListSample:
    """One generated list: its prompt, every token, and what we measure of it."""

    spec: PromptSpec
    prompt_len: int  # tokens of the chat prompt (ends with the first item marker)
    tokens: tuple[int, ...]  # prompt + continuation (a regenerated sample: prefix + continuation)
    stopped: bool
    structure: ListStructure
    metrics: ListMetrics
    prefix_len: int | None = None  # set when regenerated from a longer prefix than the prompt

    @property
    def continuation(self) -> tuple[int, ...]:
        return self.tokens[self.prompt_len :]


def _sae_map(loaded: LoadedModel, ablation: Ablation | None) -> dict:
    if ablation is None or ablation.is_empty():
        return {}
    return {sae_id: loaded.load_sae(sae_id, cache=True) for sae_id in {f.sae_id for f in ablation.features}}


def context_length(loaded: LoadedModel) -> int | None:
    """The longest sequence the model takes (None when it does not say)."""
    cfg = getattr(getattr(loaded, "model", None), "cfg", None)
    n_ctx = getattr(cfg, "n_ctx", None)
    return n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None


def check_context(loaded: LoadedModel, longest_start: int, max_new_tokens: int) -> None:
    """Refuse a generation that would run past the model's context (before any sampling)."""
    n_ctx = context_length(loaded)
    if n_ctx is not None and longest_start + max_new_tokens > n_ctx:
        raise ListerError(
            f"max_new_tokens {max_new_tokens} is too large for {loaded.entry.name}: its context is {n_ctx} tokens and the "
            f"longest prompt takes {longest_start}; valid: 1 to {max(n_ctx - longest_start, 0)}"
        )


def check_prompts_fit(loaded: LoadedModel, templates: Sequence[str], topics: Sequence[str], max_new_tokens: int) -> None:
    """:func:`check_context` for every template x topic prompt (tokenizer work only)."""
    longest = max(len(prompt_ids(loaded, t, topic)) for t in templates for topic in topics)
    check_context(loaded, longest, max_new_tokens)


def sample_lists(
    loaded: LoadedModel,
    specs: Sequence[PromptSpec],
    settings: SamplingSettings,
    *,
    ablation: Ablation | None = None,
    prefixes: Sequence[Sequence[int]] | None = None,
    on_step: Callable[[int, list[list[int]]], bool | None] | None = None,
    max_batch_size: int | None = 32,
    banned_ids: Sequence[int] = (),
    hooks: Sequence[tuple[str, Callable]] = (),
    interventions: InterventionSet | None = None,
) -> list[ListSample]:
    """Sample one list per spec, from its prompt or from an explicit prefix, with its own seed.

    ``prefixes`` (one per spec) continue from a longer prefix than the prompt: the
    study regenerates from ``tokens[:attribution position]`` under an ablation.
    ``banned_ids`` are never sampled (restricted sampling); ``hooks`` are extra
    stateless forward hooks active during the whole generation (e.g. a steering
    vector added at every position). ``interventions`` zero, scale, clamp or steer
    features (:mod:`interventions`); they may be combined with ``ablation``.
    """
    if interventions is not None and not interventions.is_empty():
        return _sample_with_interventions(
            loaded, specs, settings, interventions, ablation=ablation, prefixes=prefixes, on_step=on_step,
            max_batch_size=max_batch_size, banned_ids=banned_ids, hooks=hooks,
        )
    prompts = [prompt_ids(loaded, s.template, s.topic) for s in specs]
    starts = [list(p) for p in (prefixes if prefixes is not None else prompts)]
    if starts and prefixes is None:  # a regeneration's prefix was itself sampled within the cap
        check_context(loaded, max(len(s) for s in starts), settings.max_new_tokens)
    saes = _sae_map(loaded, ablation)
    hook_factory = None
    if saes:
        for start in starts:
            validate(ablation, saes, len(start))
        hook_factory = lambda prefix_len: ablation_hooks(ablation, saes, prefix_len)  # noqa: E731
    stop_ids = loaded.ids.stops
    from lister_tui.core.engine.sampling import generate

    with torch.inference_mode():
        gens = generate(
            loaded.model,
            starts,
            [s.seed for s in specs],
            temperature=settings.temperature,
            top_p=settings.top_p,
            top_k=settings.top_k,
            max_new_tokens=settings.max_new_tokens,
            stop_ids=stop_ids,
            banned_ids=banned_ids,
            ablation_hooks=list(hooks),
            hook_factory=hook_factory,
            on_step=on_step,
            pad_id=loaded.tokenizer.pad_token_id or 0,
            max_batch_size=max_batch_size,
        )
    return [
        make_sample(loaded, spec, len(prompt), list(gen.prompt) + list(gen.tokens), gen.stopped, prefix_len=len(start) if prefixes is not None else None)
        for spec, prompt, start, gen in zip(specs, prompts, starts, gens)
    ]


def intervention_saes(loaded: LoadedModel, interventions: InterventionSet) -> dict:
    """The SAEs an intervention set needs, loaded (cached), validated against their widths."""
    from lister_tui.core.engine.interventions import validate as validate_interventions

    for sae_id in interventions.sae_ids():
        loaded.entry.site(sae_id)  # an unknown site: "unknown SAE ... valid: ..."
    saes = {sae_id: loaded.load_sae(sae_id, cache=True) for sae_id in interventions.sae_ids()}
    validate_interventions(interventions, {k: s.cfg.d_sae for k, s in saes.items()})
    return saes


def _sample_with_interventions(loaded, specs, settings, interventions, *, ablation, prefixes, on_step, max_batch_size, banned_ids, hooks):
    """:func:`sample_lists` under interventions: one generation per prompt length (the hooks
    need it to tell prompt from generated positions); tokens never depend on the grouping."""
    saes = intervention_saes(loaded, interventions)
    prompt_lens = [len(prompt_ids(loaded, s.template, s.topic)) for s in specs]
    for n, (plen, start) in enumerate(zip(prompt_lens, prefixes if prefixes is not None else [None] * len(specs))):
        seq_len = len(start) if start is not None else plen
        for item in interventions.interventions:
            if isinstance(item.position, int) and item.position >= seq_len:
                raise ListerError(
                    f"position {item.position} of {item.sae_id}#{item.feature} is past the prefix of list {n} "
                    f"({seq_len} tokens); valid: 0..{seq_len - 1}, or all, prompt, generated"
                )
    out: list[ListSample | None] = [None] * len(specs)
    live: list[list[int]] = [[] for _ in specs]
    steps_before = 0
    stop = [False]
    for plen in dict.fromkeys(prompt_lens):
        idx = [i for i, p in enumerate(prompt_lens) if p == plen]
        from lister_tui.core.engine.interventions import intervention_hooks

        group_hooks = intervention_hooks  # bound late so each batch gets fresh hooks

        def factory(_prefix_len: int, plen: int = plen) -> list:
            return group_hooks(interventions, saes, plen)

        step = None
        if on_step is not None:

            def step(done: int, tokens: list[list[int]], idx: list[int] = idx, base: int = steps_before) -> bool | None:
                for k, i in enumerate(idx):
                    live[i] = tokens[k]
                stop[0] = bool(on_step(base + done, live))
                return stop[0]

        extra_hooks: list = list(hooks)
        saes_abl = _sae_map(loaded, ablation)
        abl_factory = (lambda n: ablation_hooks(ablation, saes_abl, n)) if saes_abl else None  # noqa: E731
        starts = [list(prefixes[i]) if prefixes is not None else prompt_ids(loaded, specs[i].template, specs[i].topic) for i in idx]
        if prefixes is None:
            check_context(loaded, max(len(s) for s in starts), settings.max_new_tokens)
        if saes_abl:
            for start in starts:
                validate(ablation, saes_abl, len(start))
        from lister_tui.core.engine.sampling import generate

        with torch.inference_mode():
            gens = generate(
                loaded.model,
                starts,
                [specs[i].seed for i in idx],
                temperature=settings.temperature,
                top_p=settings.top_p,
                top_k=settings.top_k,
                max_new_tokens=settings.max_new_tokens,
                stop_ids=loaded.ids.stops,
                banned_ids=banned_ids,
                ablation_hooks=extra_hooks,
                hook_factory=(lambda n, f=factory, a=abl_factory: f(n) + (a(n) if a else [])),
                on_step=step,
                pad_id=loaded.tokenizer.pad_token_id or 0,
                max_batch_size=max_batch_size,
            )
        for k, (i, gen) in enumerate(zip(idx, gens)):
            out[i] = make_sample(
                loaded, specs[i], plen, list(gen.prompt) + list(gen.tokens), gen.stopped,
                prefix_len=len(starts[k]) if prefixes is not None else None,
            )
        steps_before += max((len(g.tokens) for g in gens), default=0)
        if stop[0]:
            break
    for i, s in enumerate(out):  # cancelled before this group started: nothing sampled
        if s is None:
            start = list(prefixes[i]) if prefixes is not None else prompt_ids(loaded, specs[i].template, specs[i].topic)
            out[i] = make_sample(loaded, specs[i], prompt_lens[i], start, False, prefix_len=len(start) if prefixes is not None else None)
    return out  # type: ignore[return-value]


def make_sample(
    loaded: LoadedModel,
    spec: PromptSpec,
    prompt_len: int,
    tokens: Sequence[int],
    stopped: bool,
    metric_at_attribution: float | None = None,
    prefix_len: int | None = None,
) -> ListSample:
    structure = parse_structure(tokens, loaded.ids, prompt_len - 1)
    metrics = list_metrics(tokens, prompt_len, loaded.ids, loaded.tokenizer.decode, metric_at_attribution)
    return ListSample(spec, prompt_len, tuple(tokens), stopped, structure, metrics, prefix_len)


def metric_curve(loaded: LoadedModel, tokens: Sequence[int], ablation: Ablation | None = None) -> torch.Tensor:
    """The metric logit(blank) - logit(newline) at every position of ``tokens``: [pos] float32.

    With ``ablation``, its features are zeroed during the forward pass (a real
    measurement of the ablation's effect, not the linear estimate).
    """
    return metric_curve_and_zeroed(loaded, tokens, ablation)[0]


def metric_curve_and_zeroed(loaded: LoadedModel, tokens: Sequence[int], ablation: Ablation | None = None) -> tuple[torch.Tensor, int]:
    """:func:`metric_curve`, and how many non-zero feature activations the ablation zeroed in
    that pass (0 without an ablation, or when every chosen feature is already 0 where it applies)."""
    from lister_tui.core.engine.attribution import metric_logit_diff

    seq = list(tokens)
    saes = _sae_map(loaded, ablation)
    hooks = []
    if saes:
        validate(ablation, saes, len(seq))
        hooks = ablation_hooks(ablation, saes, len(seq), count=True)
    with torch.inference_mode(), loaded.model.hooks(fwd_hooks=hooks):
        logits = loaded.model(torch.tensor([seq], device=loaded.device))  # [1, pos, d_vocab]
        curve = metric_logit_diff(logits, loaded.ids.blank, loaded.ids.newline)[0].float().cpu()
    return curve, zeroed_activations(hooks)


def metric_curve_under(loaded: LoadedModel, tokens: Sequence[int], interventions: InterventionSet | None, prompt_len: int) -> torch.Tensor:
    """The metric at every position of ``tokens`` with ``interventions`` applied ([pos] float32; a
    real forward pass). ``prompt_len`` tells prompt from generated positions."""
    from lister_tui.core.engine.attribution import metric_logit_diff

    seq = list(tokens)
    from lister_tui.core.engine.interventions import intervention_hooks

    hooks = [] if interventions is None or interventions.is_empty() else intervention_hooks(interventions, intervention_saes(loaded, interventions), prompt_len)
    with torch.inference_mode(), loaded.model.hooks(fwd_hooks=hooks):
        logits = loaded.model(torch.tensor([seq], device=loaded.device))
        return metric_logit_diff(logits, loaded.ids.blank, loaded.ids.newline)[0].float().cpu()


def with_metric(loaded: LoadedModel, sample: ListSample) -> ListSample:
    """``sample`` with the metric at its attribution position filled in."""
    pos = sample.structure.attribution_pos
    value = None if pos is None else float(metric_curve(loaded, sample.tokens[: pos + 1])[pos])
    return make_sample(loaded, sample.spec, sample.prompt_len, sample.tokens, sample.stopped, value, sample.prefix_len)


def template_stats(samples: Sequence[ListSample]) -> Mapping[str, dict]:
    """Per template: mean/min/max items, filler-before-final-newline rate, end-reached rate."""
    out: dict[str, dict] = {}
    for template in dict.fromkeys(s.spec.template for s in samples):
        group = [s for s in samples if s.spec.template == template]
        n_items = [s.metrics.n_items for s in group]
        last_filler = [bool(s.structure.items) and s.structure.items[-1].has_filler for s in group]
        out[template] = {
            "lists": len(group),
            "items_mean": sum(n_items) / len(group),
            "items_min": min(n_items),
            "items_max": max(n_items),
            "filler_on_last_item": sum(last_filler) / len(group),
            "filler_items_mean": sum(s.metrics.filler_count for s in group) / len(group),
            "reached_end": sum(s.metrics.reached_end for s in group) / len(group),
            "repeated_items_mean": sum(s.metrics.repeated_items for s in group) / len(group),
        }
    return out
