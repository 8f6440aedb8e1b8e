"""An ablation run, as the explorer makes and a session stores it.

One run regenerates a sample under a set of ablation choices with the sample's own
seed and preset (from its attribution position, the study's choice, or from the
prompt), next to its unablated twin from the same prefix and seed; it scores both at
every position and measures the ablation's direct effect on the metric at the sample's
attribution position. Scripts get the explorer's numbers by calling
:func:`ablation_run` with the same sample and choices.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import replace

from lister_tui.core.engine.ablation import Ablation
from lister_tui.core.engine.generation import ListSample, metric_curve, metric_curve_and_zeroed, metric_curve_under, sample_lists, with_metric
from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.sessions.workspace import AblationChoice, AblationRun, only_zeroes, to_ablation, to_interventions
from lister_tui.core.study.experiment import metric_under_ablation, regenerate
from lister_tui.core.study.experiment import regeneration_prefix as prefix_of
from lister_tui.core.study.settings import SAMPLING_PRESETS

# (sample key, from the attribution position, preset) -> the unablated regeneration and its curve
BaseCache = MutableMapping[tuple, tuple[ListSample, tuple[float, ...]]]


def regeneration_prefix(sample: ListSample, from_attribution_pos: bool) -> tuple[int, ...]:
    """The tokens a run regenerates from."""
    end = sample.structure.attribution_pos if from_attribution_pos else sample.prompt_len
    return tuple(sample.tokens[:end])


def ablation_run(
    lab: LoadedModel,
    key: str,
    sample: ListSample,
    choices: tuple[AblationChoice, ...],
    preset: str,
    from_attribution_pos: bool = True,
    *,
    on_step: Callable[[int, list[list[int]]], "bool | None"] | None = None,
    base_cache: BaseCache | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> AblationRun | None:
    """Regenerate ``sample`` under ``choices`` and its unablated twin; None if ``cancelled()`` turned true.

    ``on_step`` sees the ablated regeneration's tokens as they are sampled (returning
    True cancels it). ``base_cache`` keeps the unablated twin between runs of the same
    sample, prefix and preset: it does not depend on the choices.
    """
    settings = SAMPLING_PRESETS[preset]
    if not only_zeroes(choices):
        return _intervention_run(lab, key, sample, choices, preset, from_attribution_pos, on_step=on_step, base_cache=base_cache, cancelled=cancelled)
    ablation = to_ablation(choices)
    ablated = regenerate(lab, sample, settings, ablation, from_attribution_pos=from_attribution_pos, on_step=on_step)
    if cancelled():
        return None
    base, base_curve = _base(lab, key, sample, settings, preset, from_attribution_pos, base_cache)
    # the scoring pass also counts the activations the ablation zeroed (0: it changed nothing)
    curve, zeroed = metric_curve_and_zeroed(lab, ablated.tokens, ablation)
    ablated_curve = tuple(curve.tolist())
    attr_pos = sample.structure.attribution_pos
    before = None if attr_pos is None else metric_under_ablation(lab, sample.tokens, Ablation(), attr_pos)
    under = None if attr_pos is None else metric_under_ablation(lab, sample.tokens, ablation, attr_pos)
    if cancelled():
        return None
    return AblationRun(key, tuple(choices), from_attribution_pos, preset, base, ablated, base_curve, ablated_curve, before, under, zeroed)


def _base(lab, key, sample, settings, preset, from_attribution_pos, base_cache):
    cache = {} if base_cache is None else base_cache
    cache_key = (key, from_attribution_pos, preset)
    if cache_key not in cache:
        # From the prompt with the sample's own seed and preset, the unablated run is the
        # sample itself (common random numbers; tested), so it is only scored.
        if from_attribution_pos:
            base = regenerate(lab, sample, settings, None, from_attribution_pos=True)
        else:
            base = with_metric(lab, replace(sample, prefix_len=sample.prompt_len))
        cache[cache_key] = (base, tuple(metric_curve(lab, base.tokens).tolist()))
    return cache[cache_key]


def _intervention_run(lab, key, sample, choices, preset, from_attribution_pos, *, on_step, base_cache, cancelled) -> AblationRun | None:
    """:func:`ablation_run` for choices that scale, clamp or steer (core.engine.interventions)."""
    settings = SAMPLING_PRESETS[preset]
    interventions = to_interventions(choices)
    prefix = prefix_of(sample, from_attribution_pos)
    out = sample_lists(lab, [sample.spec], settings, prefixes=[prefix], interventions=interventions, on_step=on_step)[0]
    ablated = with_metric(lab, out)
    if cancelled():
        return None
    base, base_curve = _base(lab, key, sample, settings, preset, from_attribution_pos, base_cache)
    ablated_curve = tuple(metric_curve_under(lab, ablated.tokens, interventions, sample.prompt_len).tolist())
    attr_pos = sample.structure.attribution_pos
    before = under = None
    if attr_pos is not None:
        before = float(metric_curve_under(lab, sample.tokens[: attr_pos + 1], None, sample.prompt_len)[attr_pos])
        under = float(metric_curve_under(lab, sample.tokens[: attr_pos + 1], interventions, sample.prompt_len)[attr_pos])
    if cancelled():
        return None
    return AblationRun(key, tuple(choices), from_attribution_pos, preset, base, ablated, base_curve, ablated_curve, before, under, None)
