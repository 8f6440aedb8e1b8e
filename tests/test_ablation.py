"""Cheap zero-ablation hooks equal splice-and-zero, in a forward pass and in generation."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import (
    ATTN_Z_HOOK,
    EARLY_RESID_HOOK,
    RESID_HOOK,
    build_model,
    build_sae,
    random_tokens,
)

from lister_tui.core.engine.ablation import (
    EVERY_POSITION,
    Ablation,
    FeatureAblation,
    ablation_hooks,
    validate,
)
from lister_tui.core.errors import ListerError
from lister_tui.core.engine.sampling import generate

SEQ_LEN = 10


@pytest.fixture(scope="module")
def model():
    return build_model()


@pytest.fixture(scope="module")
def saes(model):
    return {
        "res1": build_sae(model, RESID_HOOK, kind="standard", seed=1),
        "res0": build_sae(model, EARLY_RESID_HOOK, kind="jumprelu", seed=2),
        "att1": build_sae(model, ATTN_Z_HOOK, kind="jumprelu", seed=3),
        "att1-topk": build_sae(model, ATTN_Z_HOOK, kind="topk", seed=4),
    }


@pytest.fixture(scope="module")
def tokens():
    return random_tokens(2, SEQ_LEN, seed=11)  # [2, SEQ_LEN]


def active_features(model, sae, tokens, n: int) -> list[int]:
    """The ``n`` features that fire most often on ``tokens`` (so ablating them matters)."""
    hook = sae.cfg.metadata.hook_name
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=hook)
        counts = (sae.encode(cache[hook]) > 0).sum(dim=(0, 1))  # [d_sae]
    return counts.topk(n).indices.tolist()


def splice_and_zero_logits(model, saes, ablation: Ablation, tokens) -> torch.Tensor:
    """Logits with every ablated SAE spliced (error term kept) and its features zeroed
    at ``hook_sae_acts_post``: the slow, obviously-correct reference."""
    by_sae: dict[str, list[FeatureAblation]] = {}
    for item in ablation.features:
        by_sae.setdefault(item.sae_id, []).append(item)

    def zeroer(items: list[FeatureAblation]):
        def zero(acts, hook):  # [batch, pos, d_sae]
            acts = acts.clone()
            for item in items:
                if item.positions == EVERY_POSITION:
                    acts[:, :, item.feature] = 0
                else:
                    acts[:, list(item.positions), item.feature] = 0
            return acts

        return zero

    spliced = [saes[sae_id] for sae_id in by_sae]
    hooks = [(f"{saes[sid].cfg.metadata.hook_name}.hook_sae_acts_post", zeroer(items)) for sid, items in by_sae.items()]
    with torch.no_grad(), model.saes(saes=spliced, use_error_term=True):
        return model.run_with_hooks(tokens, fwd_hooks=hooks)


def fast_logits(model, saes, ablation: Ablation, tokens) -> torch.Tensor:
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=ablation_hooks(ablation, saes, tokens.shape[1]))


def make_ablation(model, saes, tokens, spec: dict[str, object], n_features: int = 3) -> Ablation:
    return Ablation(
        tuple(
            FeatureAblation(sae_id, feature, positions)  # type: ignore[arg-type]
            for sae_id, positions in spec.items()
            for feature in active_features(model, saes[sae_id], tokens, n_features)
        )
    )


CASES = {
    "resid-explicit": {"res1": (1, 4, 7)},
    "resid-every": {"res1": EVERY_POSITION},
    "attn-z-explicit": {"att1": (2, 3, 8)},
    "attn-z-every": {"att1": EVERY_POSITION},
    "two-saes-mixed": {"res0": (1, 5), "att1": EVERY_POSITION},
    "topk-fallback": {"att1-topk": (0, 6)},
}


@pytest.mark.parametrize("case", list(CASES))
def test_fast_hooks_equal_splice_and_zero(model, saes, tokens, case):
    ablation = make_ablation(model, saes, tokens, CASES[case])
    expected = splice_and_zero_logits(model, saes, ablation, tokens)
    actual = fast_logits(model, saes, ablation, tokens)
    with torch.no_grad():
        base = model(tokens)
    effect = (expected - base).abs().max().item()
    assert effect > 1e-2, "the ablation should change the logits for the test to mean anything"
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4)


def test_thresholds_are_nontrivial(model, saes, tokens):
    """The JumpReLU fixture has thresholds that both pass and block positive pre-activations."""
    sae = saes["att1"]
    assert sae.threshold.min() > 0
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=ATTN_Z_HOOK)
        x = cache[ATTN_Z_HOOK].flatten(-2) - sae.b_dec
        pre = x @ sae.W_enc + sae.b_enc
    blocked = ((pre > 0) & (pre <= sae.threshold)).float().mean()
    passed = (pre > sae.threshold).float().mean()
    assert blocked > 0.05 and passed > 0.1


def greedy_reference(model, saes, ablation: Ablation, prompt: list[int], n_new: int) -> list[int]:
    """Greedy decoding with no KV cache: a full splice-and-zero forward per step."""
    sequence = torch.tensor([prompt])
    for _ in range(n_new):
        logits = splice_and_zero_logits(model, saes, ablation, sequence) if not ablation.is_empty() else model(sequence)
        sequence = torch.cat([sequence, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return sequence[0, len(prompt) :].tolist()


# Strong enough (many features, late prefix positions) to change greedy continuations.
GENERATION_CASES = {
    "resid-explicit": {"res1": (5, 7, 8)},
    "attn-z-every": {"att1": EVERY_POSITION},
    "two-saes-mixed": {"res0": (6, 8), "att1": EVERY_POSITION},
    "topk-fallback": {"att1-topk": (6, 7, 8)},
}


@pytest.mark.parametrize("case", list(GENERATION_CASES))
def test_kv_cached_generation_equals_uncached_reference(model, saes, tokens, case):
    ablation = make_ablation(model, saes, tokens, GENERATION_CASES[case], n_features=24)
    prompts = [tokens[0].tolist(), tokens[1, :9].tolist()]  # two lengths: two batch groups
    n_new = 8
    generations = generate(
        model,
        prompts,
        seeds=[0, 1],
        temperature=0.0,
        max_new_tokens=n_new,
        stop_ids=[],
        hook_factory=lambda prefix_len: ablation_hooks(ablation, saes, prefix_len),
    )
    base = generate(model, prompts, seeds=[0, 1], temperature=0.0, max_new_tokens=n_new, stop_ids=[])
    for prompt, generation in zip(prompts, generations):
        assert generation.tokens == greedy_reference(model, saes, ablation, prompt, n_new)
    # At least one continuation must change, or the comparison proves little.
    assert any(g.tokens != b.tokens for g, b in zip(generations, base))


def test_empty_ablation_is_the_base_model(model, saes, tokens):
    empty = Ablation()
    assert empty.is_empty() and ablation_hooks(empty, saes, SEQ_LEN) == []
    prompts = [tokens[0].tolist(), tokens[1, :7].tolist()]
    kwargs = dict(seeds=[3, 4], temperature=1.0, top_p=0.9, max_new_tokens=10, stop_ids=[])
    base = generate(model, prompts, **kwargs)
    with_empty = generate(model, prompts, hook_factory=lambda n: ablation_hooks(empty, saes, n), **kwargs)
    assert [g.tokens for g in base] == [g.tokens for g in with_empty]


def test_duplicate_features_are_ablated_once(model, saes, tokens):
    feature = active_features(model, saes["res1"], tokens, 1)[0]
    once = Ablation((FeatureAblation("res1", feature, (1, 2, 3)),))
    split = Ablation((FeatureAblation("res1", feature, (1, 2)), FeatureAblation("res1", feature, (2, 3))))
    torch.testing.assert_close(fast_logits(model, saes, split, tokens), fast_logits(model, saes, once, tokens))


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (FeatureAblation("res1", 96, (1,)), r"feature 96 .* valid: 0\.\.95"),
        (FeatureAblation("res1", -1, (1,)), r"feature -1 .* valid: 0\.\.95"),
        (FeatureAblation("res1", 3, (SEQ_LEN,)), rf"position {SEQ_LEN} .* valid: 0\.\.{SEQ_LEN - 1}"),
        (FeatureAblation("res1", 3, (-2,)), r"position -2 .* out of range"),
        (FeatureAblation("res1", 3, ()), r"no positions"),
        (FeatureAblation("res1", 3, "all"), r"'all' .* not valid"),  # type: ignore[arg-type]
        (FeatureAblation("nope", 3, (1,)), r"unknown SAE 'nope'.*valid: att1"),
    ],
)
def test_validate_rejects_bad_input(saes, item, message):
    with pytest.raises(ListerError, match=message):
        validate(Ablation((item,)), saes, SEQ_LEN)
    with pytest.raises(ListerError):
        ablation_hooks(Ablation((item,)), saes, SEQ_LEN)


def test_validate_accepts_good_input(saes):
    edges = Ablation((FeatureAblation("res1", 95, (0, SEQ_LEN - 1)), FeatureAblation("att1", 0, "every")))
    validate(edges, saes, SEQ_LEN)
    validate(Ablation((FeatureAblation("res1", 0, (500,)),)), saes, None)  # no length known: any position >= 0
