"""Interventions on transcoder features (sites tc_L) of lister-tiny's shipped transcoders, in the real model.

Zeroing a feature at one position in one forward moves the metric exactly as the attribution
graph's real-model check measures it (core/study/graphs/checks.py, ``frozen=False``), and the
kinds keep their identities (zero = scale 0 = clamp 0, steer 0 = the base) through generation.
"""

from __future__ import annotations

import pytest
import torch

from lister_tui.core.engine.generation import metric_curve_under, sample_lists
from lister_tui.core.engine.interventions import Intervention, InterventionSet, intervention_hooks, is_transcoder
from lister_tui.core.engine.loading import load_model
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.engine.transcoders import load_transcoders
from lister_tui.core.study.settings import SAMPLING_PRESETS


@pytest.fixture(scope="module")
def tiny():
    return load_model("lister-tiny", device="cpu")


@pytest.fixture(scope="module")
def sample(tiny):
    spec = build_prompts(["short"], ["Animals"], samples_per_topic=1, base_seed=0)
    return sample_lists(tiny, spec, SAMPLING_PRESETS["code"])[0]


@pytest.fixture(scope="module")
def active(tiny, sample):
    """(layer, position, feature, activation) of the most active tc feature before the attribution position."""
    pos = sample.structure.attribution_pos
    tokens = torch.tensor([sample.tokens[: pos + 1]])
    best = None
    with torch.inference_mode():
        _, cache = tiny.model.run_with_cache(tokens, names_filter=lambda n: n.endswith("ln2.hook_normalized"))
        for layer in range(tiny.model.cfg.n_layers):
            tc = tiny.load_sae(f"tc_{layer}", cache=True)
            acts = tc.encode(cache[tc.cfg.metadata.hook_name])[0, 1:]  # BOS excluded
            value, flat = acts.flatten().max(dim=0)
            if best is None or float(value) > best[3]:
                p, f = divmod(int(flat), acts.shape[1])
                best = (layer, p + 1, f, float(value))
    return best


def test_zeroing_a_transcoder_feature_equals_the_graph_checks_real_model_measurement(tiny, sample, active):
    from lister_tui.core.study.graphs.attribute import TC, attribute_graph
    from lister_tui.core.study.graphs.checks import measured

    pos = sample.structure.attribution_pos
    tokens = list(sample.tokens[: pos + 1])
    tcs = load_transcoders(tiny)
    ids = dict(blank_id=tiny.ids.blank, newline_id=tiny.ids.newline)
    graph = attribute_graph(tiny.model, tokens, tcs, {}, [pos], **ids, batch=256)
    nodes = graph.nodes
    # the graph's strongest transcoder-feature nodes into the metric
    strength = graph.adjacency[graph.targets[0]].abs()
    tc_nodes = [int(i) for i in strength.argsort(descending=True) if int(nodes.kind[int(i)]) == TC][:3]
    assert tc_nodes
    base = metric_curve_under(tiny, tokens, None, sample.prompt_len)[pos]
    for node in tc_nodes:
        layer, at, feature = int(nodes.layer[node]), int(nodes.pos[node]), int(nodes.feature[node])
        expected = float(measured(tiny.model, graph, tcs, {}, node, 0.0, frozen=False, **ids)[0])
        iset = InterventionSet((Intervention(f"tc_{layer}", feature, "zero", 0.0, at),))
        got = float(metric_curve_under(tiny, tokens, iset, sample.prompt_len)[pos] - base)
        assert abs(got - expected) <= 1e-4 + 1e-3 * abs(expected), (node, got, expected)
        assert abs(expected) > 1e-4  # a node that moves the metric: the comparison can fail


def test_the_hooks_add_the_decoder_row_at_the_output_and_leave_the_mlp_running(tiny, sample, active):
    """An independent computation: the real MLP output plus (a' − a) W_dec[f] at that position only."""
    layer, at, feature, value = active
    tc = tiny.load_sae(f"tc_{layer}", cache=True)
    assert is_transcoder(tc) and not is_transcoder(tiny.load_sae("res_0", cache=True))
    tokens = torch.tensor([sample.tokens[: sample.structure.attribution_pos + 1]])
    out_hook = tc.cfg.metadata.hook_name_out
    with torch.inference_mode():
        _, plain = tiny.model.run_with_cache(tokens, names_filter=out_hook)
        iset = InterventionSet((Intervention(f"tc_{layer}", feature, "clamp", 3.0, at),))
        with tiny.model.hooks(fwd_hooks=intervention_hooks(iset, {f"tc_{layer}": tc}, sample.prompt_len)):
            _, edited = tiny.model.run_with_cache(tokens, names_filter=out_hook)
    diff = edited[out_hook][0] - plain[out_hook][0]  # [n, d_model]
    expected = (3.0 - value) * tc.W_dec[feature]
    torch.testing.assert_close(diff[at], expected, rtol=1e-4, atol=1e-5)
    others = torch.cat([diff[:at], diff[at + 1 :]])
    assert others.abs().max() == 0  # before and after the position nothing changed (causal, and only at=)


@pytest.fixture(scope="module")
def specs():
    return build_prompts(["short"], ["Animals", "Fruits", "Countries"], samples_per_topic=2, base_seed=3)


def _tokens(tiny, specs, iset):
    return [s.tokens for s in sample_lists(tiny, specs, SAMPLING_PRESETS["code"], interventions=iset)]


@pytest.mark.parametrize("position", ["all", "prompt", "generated"])
def test_zero_scale0_clamp0_on_transcoder_features_are_token_identical(tiny, specs, active, position):
    layer, _, feature, _ = active
    runs = {
        kind: _tokens(tiny, specs, InterventionSet((Intervention(f"tc_{layer}", feature, kind, 0.0, position),)))
        for kind in ("zero", "scale", "clamp")
    }
    assert runs["zero"] == runs["scale"] == runs["clamp"]


def test_steer_zero_on_a_transcoder_feature_is_the_base_and_steering_moves_it(tiny, specs, active):
    layer, _, feature, _ = active
    base = [s.tokens for s in sample_lists(tiny, specs, SAMPLING_PRESETS["code"])]
    site = f"tc_{layer}"
    assert _tokens(tiny, specs, InterventionSet((Intervention(site, feature, "steer", 0.0, "all"),))) == base
    assert _tokens(tiny, specs, InterventionSet((Intervention(site, feature, "steer", 20.0, "all"),))) != base


def test_transcoder_attribution_is_activation_times_the_directional_derivative(sample, active):
    """The random control's exclusion for tc sites: a score is a_f × d(metric)/d(ε) of adding ε W_dec[f] at its
    position (a central difference in float64, where rounding is far below the tolerance)."""
    from lister_tui.core.engine.attribution import metric_logit_diff
    from lister_tui.core.study.intervention_batch import transcoder_attributions

    tiny = load_model("lister-tiny", device="cpu", dtype=torch.float64)
    layer, at, feature, value = active
    site = f"tc_{layer}"
    scores = transcoder_attributions(tiny, sample, [site])[site]
    pos = sample.structure.attribution_pos
    tokens = list(sample.tokens[: pos + 1])
    eps = 1e-4
    moved = []
    for sign in (1.0, -1.0):
        # steer at one position adds sign·eps·W_dec[f] to the MLP's output there (float64 throughout)
        iset = InterventionSet((Intervention(site, feature, "steer", sign * eps, at),))
        hooks = intervention_hooks(iset, {site: tiny.load_sae(site, cache=True)}, sample.prompt_len)
        with torch.no_grad(), tiny.model.hooks(fwd_hooks=hooks):
            logits = tiny.model(torch.tensor([tokens]))
        moved.append(float(metric_logit_diff(logits, tiny.ids.blank, tiny.ids.newline)[0, pos]))
    derivative = (moved[0] - moved[1]) / (2 * eps)
    assert float(scores[at, feature]) == pytest.approx(value * derivative, rel=1e-5, abs=1e-9)
    assert float(scores[0].abs().max()) == 0.0  # BOS excluded


def test_a_batch_experiment_on_a_transcoder_feature_has_a_control_of_other_features_and_replays(tiny, active):
    from lister_tui.core.study.intervention_batch import CONTROL, ExperimentSettings, replay, run_experiment

    layer, _, feature, _ = active
    site = f"tc_{layer}"
    samples = sample_lists(tiny, build_prompts(["short"], ["Animals", "Fruits"], samples_per_topic=1, base_seed=5), SAMPLING_PRESETS["code"])
    iset = InterventionSet((Intervention(site, feature, "zero", 0.0, "all"),))
    exp = run_experiment(tiny, samples, ExperimentSettings(iset, n_seeds=1, resamples=200))
    control = exp.conditions[CONTROL]["interventions"]["interventions"]
    assert [c["site"] for c in control] == [site] and control[0]["feature"] != feature
    assert {r["condition"] for r in exp.rows} == {"base", "intervened", CONTROL}
    assert replay(tiny, samples, exp) == []


def test_an_explorer_run_zeroing_a_transcoder_feature_is_the_apis_regeneration(tiny, specs, active):
    """The Interventions tab's run (core.sessions.runs) takes a tc_L choice through the transcoder hooks."""
    from dataclasses import replace

    from lister_tui.core.sessions.runs import ablation_run
    from lister_tui.core.sessions.workspace import AblationChoice

    layer, at, feature, _ = active
    sample = sample_lists(tiny, specs[:1], SAMPLING_PRESETS["code"])[0]
    zero = (AblationChoice(f"tc_{layer}", feature, at, "every"),)
    run = ablation_run(tiny, "k", sample, zero, "code", from_attribution_pos=False)
    iset = InterventionSet((Intervention(f"tc_{layer}", feature, "zero", 0.0, "all"),))
    assert run.ablated.tokens == _tokens(tiny, specs[:1], iset)[0]
    clamped = ablation_run(tiny, "k", sample, (replace(zero[0], kind="clamp", value=0.0),), "code", from_attribution_pos=False)
    assert clamped.ablated.tokens == run.ablated.tokens


def test_a_sweep_file_names_transcoder_sites_and_checks_their_width_before_loading():
    from lister_tui.core.engine.registry import get_entry
    from lister_tui.core.errors import ListerError
    from lister_tui.core.sweep.interventions_file import parse_sets

    entry = get_entry("lister-tiny")
    good = {"sets": [{"name": "tc", "interventions": [{"site": "tc_2", "feature": 7, "kind": "scale", "value": 0.5, "position": "prompt"}]}]}
    (iset,) = parse_sets(good, entry, "f.toml")
    assert iset.interventions[0].sae_id == "tc_2"
    bad = {"sets": [{"name": "tc", "interventions": [{"site": "tc_2", "feature": 512}]}]}
    with pytest.raises(ListerError, match=r"field 'feature': 512 is out of range for tc_2; valid: 0..511"):
        parse_sets(bad, entry, "f.toml")
    with pytest.raises(ListerError, match=r"unknown site 'tc_9'.*tc_0, tc_1, tc_2, tc_3"):
        parse_sets({"sets": [{"name": "tc", "interventions": [{"site": "tc_9", "feature": 1}]}]}, entry, "f.toml")
