"""Intervention kinds: exact against a splice-and-edit reference, and the identities a user relies on."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import ATTN_Z_HOOK, RESID_HOOK, build_model, build_sae, random_tokens, word_activations

from lister_tui.core.engine.generation import metric_curve_under, sample_lists
from lister_tui.core.engine.interventions import (
    Intervention,
    InterventionSet,
    intervention_hooks,
    resolve_relative,
    validate,
)
from lister_tui.core.engine.prompts import build_prompts, prompt_ids
from lister_tui.core.errors import ListerError
from lister_tui.core.study.settings import SAMPLING_PRESETS

SEQ_LEN = 10


@pytest.fixture(scope="module")
def model():
    return build_model()


@pytest.fixture(scope="module")
def saes(model):
    return {
        "res1": build_sae(model, RESID_HOOK, kind="standard", seed=1),
        "att1": build_sae(model, ATTN_Z_HOOK, kind="jumprelu", seed=3),
        "att1-topk": build_sae(model, ATTN_Z_HOOK, kind="topk", seed=4),
    }


@pytest.fixture(scope="module")
def tokens():
    return random_tokens(2, SEQ_LEN, seed=11)


def _active(model, sae, tokens, n):
    hook = sae.cfg.metadata.hook_name
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=hook)
        counts = (sae.encode(cache[hook]) > 0).sum(dim=(0, 1))
    return counts.topk(n).indices.tolist()


def _reference(model, saes, iset: InterventionSet, tokens, prompt_len):
    """Splice each SAE (error term kept) and edit hook_sae_acts_post: the obvious, slow way."""
    by_sae: dict[str, list[Intervention]] = {}
    for item in iset.interventions:
        by_sae.setdefault(item.sae_id, []).append(item)

    def editor(items):
        def edit(acts, hook):  # [batch, pos, d_sae]
            new = acts.clone()
            n = acts.shape[1]
            for it in items:
                m, b = it.coefficients()
                where = torch.zeros(n, dtype=torch.bool)
                if it.position == "all":
                    where[:] = True
                elif it.position == "prompt":
                    where[:prompt_len] = True
                elif it.position == "generated":
                    where[prompt_len:] = True
                else:
                    where[it.position] = True
                new[:, where, it.feature] = m * acts[:, where, it.feature] + b
            return new

        return edit

    hooks = [(f"{saes[s].cfg.metadata.hook_name}.hook_sae_acts_post", editor(items)) for s, items in by_sae.items()]
    with torch.no_grad(), model.saes(saes=[saes[s] for s in by_sae], use_error_term=True):
        return model.run_with_hooks(tokens, fwd_hooks=hooks)


CASES = {
    "scale-resid-all": ("res1", "scale", 2.5, "all"),
    "clamp-resid-prompt": ("res1", "clamp", 3.0, "prompt"),
    "steer-attn-generated": ("att1", "steer", -4.0, "generated"),
    "zero-attn-index": ("att1", "zero", 0.0, 6),
    "steer-topk-fallback": ("att1-topk", "steer", 2.0, "all"),
    "scale-topk-fallback": ("att1-topk", "scale", 0.5, "prompt"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hooks_equal_splice_and_edit(model, saes, tokens, case):
    sae_id, kind, value, position = CASES[case]
    feats = _active(model, saes[sae_id], tokens, 3)
    iset = InterventionSet(tuple(Intervention(sae_id, f, kind, value, position) for f in feats))
    prompt_len = 4
    expected = _reference(model, saes, iset, tokens, prompt_len)
    with torch.no_grad():
        actual = model.run_with_hooks(tokens, fwd_hooks=intervention_hooks(iset, saes, prompt_len))
        base = model(tokens)
    assert (expected - base).abs().max().item() > 1e-2, "the intervention must change the logits for this to mean anything"
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4)


def test_hooks_track_positions_through_kv_cached_steps(model, saes, tokens):
    """One full pass equals a prefix pass then one position at a time (the generation path)."""
    feats = _active(model, saes["res1"], tokens, 2)
    iset = InterventionSet(tuple(Intervention("res1", f, "steer", 3.0, "generated") for f in feats))
    hooks = intervention_hooks(iset, saes, 4)
    seen = []
    for name, hook in hooks:
        for start, n in ((0, 4), (4, 1), (5, 1)):
            x = torch.zeros(1, n, saes["res1"].cfg.d_in)
            seen.append(bool((hook(x, None) != 0).any()))
    assert seen == [False, True, True]


# --- on lister-tiny -------------------------------------------------------------------


@pytest.fixture(scope="module")
def specs():
    return build_prompts(["short"], ["Animals", "Fruits", "Countries"], samples_per_topic=2, base_seed=3)


@pytest.fixture(scope="module")
def short_features(tiny):
    """res_0's features active on the prompt's " short" token (found from activations, not hard-coded)."""
    return word_activations(tiny)


def _tokens(tiny, specs, iset):
    return [s.tokens for s in sample_lists(tiny, specs, SAMPLING_PRESETS["code"], interventions=iset)]


def test_zero_scale0_clamp0_are_token_identical_and_change_the_lists(tiny, specs, short_features):
    _, feats = short_features
    runs = {
        kind: _tokens(tiny, specs, InterventionSet(tuple(Intervention("res_0", f, kind, 0.0, "all") for f in feats)))
        for kind in ("zero", "scale", "clamp")
    }
    assert runs["zero"] == runs["scale"] == runs["clamp"]
    base = [s.tokens for s in sample_lists(tiny, specs, SAMPLING_PRESETS["code"])]
    assert runs["zero"] != base


def test_steer_zero_is_the_base_token_for_token(tiny, specs, short_features):
    _, feats = short_features
    base = [s.tokens for s in sample_lists(tiny, specs, SAMPLING_PRESETS["code"])]
    steered = _tokens(tiny, specs, InterventionSet(tuple(Intervention("res_0", f, "steer", 0.0, "all") for f in feats)))
    assert steered == base
    moved = _tokens(tiny, specs, InterventionSet(tuple(Intervention("res_0", f, "steer", 8.0, "all") for f in feats)))
    assert moved != base


def test_a_clamp_to_the_features_own_activation_changes_nothing(tiny, short_features):
    pos, feats = short_features
    ids = prompt_ids(tiny, "short", "Animals")
    base = metric_curve_under(tiny, ids, None, len(ids))
    same = InterventionSet(tuple(Intervention("res_0", f, "clamp", a, pos) for f, a in feats.items()))
    torch.testing.assert_close(metric_curve_under(tiny, ids, same, len(ids)), base, rtol=0, atol=1e-5)
    doubled = InterventionSet(tuple(Intervention("res_0", f, "clamp", 2 * a, pos) for f, a in feats.items()))
    assert (metric_curve_under(tiny, ids, doubled, len(ids)) - base).abs().max() > 1e-2


def test_relative_clamp_resolves_from_the_maximum_activation():
    iset = InterventionSet((Intervention("res_0", 5, "clamp", 0.5, "all", relative=True),))
    with pytest.raises(ListerError, match="resolve"):
        iset.interventions[0].coefficients()
    resolved = resolve_relative(iset, lambda sae, f: 8.0)
    assert resolved.interventions[0].value == 4.0 and not resolved.interventions[0].relative


@pytest.mark.parametrize(
    "item, message",
    [
        (Intervention("res_9", 1), "unknown site 'res_9'"),
        (Intervention("res_0", 64), r"out of range; valid: 0..63"),
        (Intervention("res_0", 1, "boost", 1.0), "unknown kind 'boost'; valid: zero, scale, clamp, steer"),
        (Intervention("res_0", 1, "scale", float("nan")), "finite number"),
        (Intervention("res_0", 1, "steer", 1e9), "finite number"),
        (Intervention("res_0", 1, "zero", 0.0, "middle"), "unknown position 'middle'"),
        (Intervention("res_0", 1, "zero", 0.0, -1), "out of range"),
        (Intervention("res_0", 1, "steer", 1.0, "all", relative=True), "only a clamp"),
    ],
)
def test_bad_interventions_are_refused_naming_the_field(item, message):
    with pytest.raises(ListerError, match=message):
        validate(InterventionSet((item,)), {"res_0": 64})


def test_an_explorer_run_with_kinds_scale0_equals_zero_and_steer0_equals_the_base(tiny, specs, short_features):
    from dataclasses import replace

    from lister_tui.core.sessions.runs import ablation_run
    from lister_tui.core.sessions.workspace import AblationChoice

    pos, feats = short_features
    sample = sample_lists(tiny, specs[:1], SAMPLING_PRESETS["code"])[0]
    zero = tuple(AblationChoice("res_0", f, pos, "every") for f in feats)
    plain = ablation_run(tiny, "k", sample, zero, "code", from_attribution_pos=False)
    scaled = ablation_run(tiny, "k", sample, tuple(replace(c, kind="scale", value=0.0) for c in zero), "code", from_attribution_pos=False)
    assert scaled.ablated.tokens == plain.ablated.tokens and scaled.base.tokens == plain.base.tokens
    assert scaled.metric_under_ablation == pytest.approx(plain.metric_under_ablation, abs=1e-5)
    steered = ablation_run(tiny, "k", sample, tuple(replace(c, kind="steer", value=0.0) for c in zero), "code", from_attribution_pos=False)
    assert steered.ablated.tokens == steered.base.tokens == sample.tokens
    assert steered.deltas()["n_items"][2] == 0
