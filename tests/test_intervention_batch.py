"""The batch experiment on lister-tiny: ground truth, the random control, the API's numbers, replay."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from engine_fixtures import word_activations

from lister_tui.core.engine.generation import metric_curve_under, sample_lists
from lister_tui.core.engine.interventions import Intervention, InterventionSet
from lister_tui.core.engine.prompts import TOPICS, build_prompts, prompt_ids
from lister_tui.core.errors import Cancelled, ListerError
from lister_tui.core.study.intervention_batch import (
    BASE,
    CONTROL,
    INTERVENED,
    ExperimentSettings,
    BatchExperiment,
    replay,
    run_experiment,
    unit_seed,
)
from lister_tui.core.study.settings import SAMPLING_PRESETS
from lister_tui.core.study.stats import paired_summary

torch.set_num_threads(1)


def _lists(tiny, template, n_topics=6):
    specs = build_prompts([template], TOPICS[:n_topics], samples_per_topic=1, base_seed=11)
    return sample_lists(tiny, specs, SAMPLING_PRESETS["code"])


@pytest.fixture(scope="module")
def short_word(tiny):
    """res_0's features that fire on the prompt's " short" (found from activations), and the word's position."""
    pos, active = word_activations(tiny)
    feats = list(active)
    assert 1 <= len(feats) <= 4, feats  # the word lives in a few features of res_0
    return pos, feats


def _row(exp, condition, template):
    return next(r for r in exp.summary() if r["condition"] == condition and r["template"] == template)


def test_zeroing_the_short_features_lengthens_short_lists_and_a_random_control_does_not(tiny, short_word):
    # Measured (6 lists x 4 seeds, code preset, seed 11): +1.92 items [1.50, 2.33] n=24; the random
    # control -0.04 [-0.17, 0.08] n=24 (bootstrap 95%).
    _, feats = short_word
    iset = InterventionSet(tuple(Intervention("res_0", f, "zero", 0.0, "all") for f in feats))
    exp = run_experiment(tiny, _lists(tiny, "short"), ExperimentSettings(iset, n_seeds=4))
    hit, control = _row(exp, INTERVENED, "short"), _row(exp, CONTROL, "short")
    assert hit["n"] == control["n"] == 24
    assert hit["n_items_change_ci_low"] > 0, hit
    assert hit["metric_change_ci_high"] < 0  # the wish to end drops at the last item
    assert control["n_items_change_ci_low"] <= 0 <= control["n_items_change_ci_high"], control
    # the control has as many features, from the same SAE, none of the chosen ones
    chosen = exp.conditions[CONTROL]["interventions"]["interventions"]
    assert len(chosen) == len(feats) and all(c["site"] == "res_0" and c["feature"] not in feats for c in chosen)


def test_steering_long_lists_along_the_short_features_shortens_them(tiny, short_word):
    # Measured (6 lists x 2 seeds, c = 5 at the template word): -9.6 items [-10.7, -8.5] with 4 seeds;
    # a random same-size set steered the same way also shortens them (-5.0 [-6.2, -3.8]): lister-tiny's
    # long lists are fragile, so the control matters.
    pos, feats = short_word
    assert prompt_ids(tiny, "long", "Animals")[pos] == tiny.tokenizer.convert_tokens_to_ids(" long")
    iset = InterventionSet(tuple(Intervention("res_0", f, "steer", 5.0, pos) for f in feats))
    exp = run_experiment(tiny, _lists(tiny, "long"), ExperimentSettings(iset, n_seeds=2, control=False))
    hit = _row(exp, INTERVENED, "long")
    assert hit["n"] == 12 and hit["n_items_change_ci_high"] < 0, hit


@pytest.fixture(scope="module")
def small(tiny, short_word):
    _, feats = short_word
    samples = _lists(tiny, "short", n_topics=3)
    iset = InterventionSet(tuple(Intervention("res_0", f, "scale", 0.25, "prompt") for f in feats))
    seen = []
    exp = run_experiment(tiny, samples, ExperimentSettings(iset, n_seeds=2, chunk=2), on_partial=lambda e: seen.append(e.units_done))
    return samples, iset, exp, seen


def test_the_experiments_numbers_are_what_a_script_gets_from_the_api(tiny, small):
    samples, iset, exp, _ = small
    settings = SAMPLING_PRESETS["code"]
    items = {BASE: [], INTERVENED: []}
    metric = []
    for s in samples:
        for j in range(2):
            spec = replace(s.spec, seed=unit_seed(s.spec.seed, j))
            base = sample_lists(tiny, [spec], settings)[0]
            hit = sample_lists(tiny, [spec], settings, interventions=iset)[0]
            row_b = next(r for r in exp.rows if r["condition"] == BASE and r["seed"] == spec.seed and r["topic"] == s.spec.topic)
            row_i = next(r for r in exp.rows if r["condition"] == INTERVENED and r["seed"] == spec.seed and r["topic"] == s.spec.topic)
            assert row_b["tokens"] == list(base.tokens) and row_i["tokens"] == list(hit.tokens)
            items[BASE].append(base.metrics.n_items)
            items[INTERVENED].append(hit.metrics.n_items)
            pos = base.structure.attribution_pos
            metric.append(float(metric_curve_under(tiny, base.tokens[: pos + 1], iset, base.prompt_len)[pos] - metric_curve_under(tiny, base.tokens[: pos + 1], None, base.prompt_len)[pos]))
    expected = paired_summary(np.array(items[INTERVENED]) - np.array(items[BASE]))
    row = next(r for r in exp.summary() if r["condition"] == INTERVENED)
    assert (row["n"], row["n_items_change_mean"], row["n_items_change_ci_low"], row["n_items_change_ci_high"], row["n_items_change_p"]) == (
        expected.n, expected.mean, expected.ci_low, expected.ci_high, expected.p_value
    )
    assert row["metric_change_mean"] == pytest.approx(float(np.mean(metric)), abs=1e-6)


def test_partial_results_stream_and_a_saved_experiment_replays_bit_exact(tiny, small):
    samples, _, exp, seen = small
    from lister_tui.core.study.intervention_batch import chunk_spans

    ends = [start + size for start, size in chunk_spans(exp.units_total, 2)]
    assert seen[: len(ends)] == ends and exp.done and ends[-1] == exp.units_total
    assert ends[:2] == [2, 6]  # chunks of 2, then 4, ...: the first result soon, later ones batch more
    again = BatchExperiment.from_dict(exp.to_dict())
    assert again.summary() == exp.summary()
    assert replay(tiny, samples, again) == []
    tampered = BatchExperiment.from_dict(exp.to_dict())
    tampered.rows[1]["n_items"] += 1
    assert replay(tiny, samples, tampered)


def test_cancel_and_bad_settings(tiny, small):
    samples, iset, _, _ = small
    with pytest.raises(Cancelled, match="after 2 of 6"):
        run_experiment(tiny, samples, ExperimentSettings(iset, n_seeds=2, chunk=2, control=False), on_partial=lambda e: True)
    with pytest.raises(ListerError, match="empty"):
        run_experiment(tiny, samples, ExperimentSettings(InterventionSet()))
    with pytest.raises(ListerError, match=r"seeds per list must be an integer in \[1, 1000\]"):
        run_experiment(tiny, samples, ExperimentSettings(iset, n_seeds=0))
    with pytest.raises(ListerError, match="out of range"):
        run_experiment(tiny, samples, ExperimentSettings(InterventionSet((Intervention("res_0", 10**6),))))


def test_the_studys_baselines_can_sit_beside_the_set(tiny, small):
    samples, iset, _, _ = small
    exp = run_experiment(tiny, samples[:2], ExperimentSettings(iset, n_seeds=1, control=False, baselines=True))
    conditions = {r["condition"] for r in exp.summary()}
    assert {INTERVENED, "ban blank+end", "ban end"} <= conditions and any(c.startswith("steer layer") for c in conditions)
    ban = next(r for r in exp.summary() if r["condition"] == "ban end")
    assert ban["n"] == 2 and ban["metric_change_n"] == 0  # banning tokens does not change the forward pass: no Δmetric
    assert ban["n_items_change_mean"] >= 0
