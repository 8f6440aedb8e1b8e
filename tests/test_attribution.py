"""One-pass attribution equals splice-one-SAE-alone attribution (REFERENCE §4)."""

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

from lister_tui.core.engine.attribution import SAEAttribution, attribute, attribute_integrated, metric_logit_diff
from lister_tui.core.errors import ListerError

BLANK_ID = 5
NEWLINE_ID = 11
LENGTHS = [12, 9, 7]
TARGETS = [11, 6, 3]


@pytest.fixture(scope="module")
def model():
    return build_model()


@pytest.fixture(scope="module")
def saes(model):
    return {
        "res1-standard": build_sae(model, RESID_HOOK, kind="standard", seed=1),
        "res0-jumprelu": build_sae(model, EARLY_RESID_HOOK, kind="jumprelu", seed=2),
        "att1-jumprelu": build_sae(model, ATTN_Z_HOOK, kind="jumprelu", seed=3),
        "att1-topk": build_sae(model, ATTN_Z_HOOK, kind="topk", seed=4),
    }


@pytest.fixture(scope="module")
def tokens():
    """Right-padded [3, 12] batch with real lengths LENGTHS (pad id 0)."""
    tokens = random_tokens(3, max(LENGTHS), seed=7)
    for b, length in enumerate(LENGTHS):
        tokens[b, length:] = 0
    return tokens


def spliced_reference(model, sae, tokens) -> tuple[torch.Tensor, torch.Tensor]:
    """(feature attribution [batch, pos, d_sae], error attribution [batch, pos]) with
    ``sae`` alone spliced in (error term kept), by backpropagating the metric.

    sae-lens computes the error under no_grad, so the error node's gradient is read
    at ``hook_sae_output`` (output = reconstruction + error).
    """
    hook = sae.cfg.metadata.hook_name
    saved: dict[str, torch.Tensor] = {}

    def keep(activation, hook):
        activation.retain_grad()
        saved[hook.name] = activation
        return activation

    def keep_value(activation, hook):
        saved[hook.name] = activation
        return activation

    with model.saes(saes=[sae], use_error_term=True):
        with model.hooks(
            fwd_hooks=[
                (f"{hook}.hook_sae_acts_post", keep),
                (f"{hook}.hook_sae_output", keep),
                (f"{hook}.hook_sae_error", keep_value),
            ]
        ):
            logits = model(tokens)
            metric = metric_logit_diff(logits, BLANK_ID, NEWLINE_ID)  # [batch, pos]
            metric[torch.arange(len(TARGETS)), torch.tensor(TARGETS)].sum().backward()
    model.zero_grad(set_to_none=True)  # the shared model must not carry weight grads
    acts = saved[f"{hook}.hook_sae_acts_post"]
    output = saved[f"{hook}.hook_sae_output"]
    error = saved[f"{hook}.hook_sae_error"]
    feature_attr = (acts * acts.grad).detach()
    error_attr = (error * output.grad).flatten(2).sum(-1).detach()
    return feature_attr, error_attr


def assert_matches(actual: torch.Tensor, expected: torch.Tensor) -> None:
    scale = expected.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * scale)


def test_metric_logit_diff_slices_two_columns():
    logits = torch.randn(2, 3, 50)
    expected = logits[..., 4] - logits[..., 9]
    torch.testing.assert_close(metric_logit_diff(logits, 4, 9), expected)


@pytest.mark.parametrize("sae_id", ["res1-standard", "res0-jumprelu", "att1-jumprelu", "att1-topk"])
def test_one_pass_equals_spliced_single_sae(model, saes, tokens, sae_id):
    sae = saes[sae_id]
    (result,) = attribute(
        model, tokens, TARGETS, [(sae_id, sae)], blank_id=BLANK_ID, newline_id=NEWLINE_ID, lengths=LENGTHS
    )
    feature_attr, error_attr = spliced_reference(model, sae, tokens)
    real = torch.arange(tokens.shape[1]) < torch.tensor(LENGTHS).unsqueeze(1)  # [batch, pos]
    feature_attr = feature_attr * real.unsqueeze(-1)
    error_attr = error_attr * real

    assert result.sae_id == sae_id and result.hook_name == sae.cfg.metadata.hook_name
    assert result.attribution.shape == (3, tokens.shape[1], sae.cfg.d_sae)
    assert result.attribution.dtype == torch.float32 and result.attribution.device.type == "cpu"
    # Non-trivial: several features fire and carry attribution before each target.
    assert (result.activation > 0).float().mean() > 0.05
    assert_matches(result.attribution, feature_attr)
    assert_matches(result.error_attribution, error_attr)
    # Causality: nothing after a sample's target position gets attribution.
    for b, target in enumerate(TARGETS):
        assert result.attribution[b, target + 1 :].abs().sum() == 0
        assert result.attribution[b, : target + 1].abs().max() > 0
    # Padding positions are zeroed.
    assert result.activation[2, LENGTHS[2] :].abs().sum() == 0


def test_all_saes_from_one_pass_streamed(model, saes, tokens):
    """Given hook names up front, a lazy stream of SAEs is consumed one at a time."""
    loaded: list[str] = []

    def stream():
        for sae_id, sae in saes.items():
            loaded.append(sae_id)
            yield sae_id, sae

    hook_names = [sae.cfg.metadata.hook_name for sae in saes.values()]
    results = attribute(
        model, tokens, TARGETS, stream(), blank_id=BLANK_ID, newline_id=NEWLINE_ID, lengths=LENGTHS,
        hook_names=hook_names,
    )
    first = next(results)
    assert loaded == ["res1-standard"]  # the others are not loaded yet
    rest = list(results)
    assert [r.sae_id for r in [first, *rest]] == list(saes)
    for result in [first, *rest]:
        feature_attr, _ = spliced_reference(model, saes[result.sae_id], tokens)
        real = torch.arange(tokens.shape[1]) < torch.tensor(LENGTHS).unsqueeze(1)
        assert_matches(result.attribution, feature_attr * real.unsqueeze(-1))


def test_frozen_weights_and_inference_mode(model, saes, tokens):
    """Loaded models have requires_grad=False weights; callers may be in inference mode."""
    sae = saes["att1-jumprelu"]
    model.zero_grad(set_to_none=True)
    (expected,) = attribute(model, tokens, TARGETS, [("a", sae)], blank_id=BLANK_ID, newline_id=NEWLINE_ID)
    flags = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.inference_mode():
            inference_tokens = tokens.clone()
            (actual,) = attribute(
                model, inference_tokens, TARGETS, [("a", sae)], blank_id=BLANK_ID, newline_id=NEWLINE_ID
            )
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
    assert_matches(actual.attribution, expected.attribution)
    assert all(p.grad is None for p in model.parameters())


def test_top_pairs_orders_and_restricts():
    attribution = torch.zeros(2, 4, 3)
    attribution[0, 1, 2] = 3.0
    attribution[0, 3, 0] = 5.0
    attribution[0, 0, 1] = 4.0
    attribution[0, 2, 1] = -9.0
    attribution[1, 2, 2] = 1.0
    activation = attribution.abs() + 0.5
    result = SAEAttribution("s", "h", attribution, activation, torch.zeros(2, 4), torch.zeros(2))
    assert result.top_pairs(2) == [[(3, 0, 5.0, 5.5), (0, 1, 4.0, 4.5)], [(2, 2, 1.0, 1.5)]]
    # 0 < pos < max_pos[b]: positions 0 and >= 3 are excluded for sample 0.
    assert result.top_pairs(5, min_pos=1, max_pos=[3, 2]) == [[(1, 2, 3.0, 3.5)], []]
    with pytest.raises(ListerError, match="max_pos"):
        result.top_pairs(1, max_pos=[1])


def test_bad_inputs(model, saes, tokens):
    sae = saes["res1-standard"]
    with pytest.raises(ListerError, match="target position 12"):  # raised at the call, not on iteration
        attribute(model, tokens, [12, 0, 0], [("s", sae)], blank_id=1, newline_id=2, lengths=LENGTHS)
    with pytest.raises(ListerError, match="not among the hook names"):
        list(attribute(model, tokens, TARGETS, [("s", sae)], blank_id=1, newline_id=2, hook_names=[ATTN_Z_HOOK]))
    with model.saes(saes=[sae], use_error_term=True):
        with pytest.raises(ListerError, match="spliced"):
            attribute(model, tokens, TARGETS, [("s", sae)], blank_id=1, newline_id=2)


def spliced_integrated_reference(model, sae, tokens, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(integrated gradients [batch, pos, d_sae], metric at the targets with every
    feature zeroed [batch]) by splicing ``sae`` in sae-lens (error term kept) and
    scaling its feature activations at ``hook_sae_acts_post``."""
    hook = sae.cfg.metadata.hook_name
    targets = (torch.arange(len(TARGETS)), torch.tensor(TARGETS))

    def run(alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        saved: dict[str, torch.Tensor] = {}

        def scale(activation, hook):
            saved["real"] = activation.detach().clone()
            scaled = alpha * activation
            scaled.retain_grad()
            saved["scaled"] = scaled
            return scaled

        with model.saes(saes=[sae], use_error_term=True):
            with model.hooks(fwd_hooks=[(f"{hook}.hook_sae_acts_post", scale)]):
                metric = metric_logit_diff(model(tokens), BLANK_ID, NEWLINE_ID)[targets]
                metric.sum().backward()
        model.zero_grad(set_to_none=True)
        return saved["real"], saved["scaled"].grad, metric.detach()

    grads = []
    for step in range(steps):
        acts, grad, _ = run((step + 0.5) / steps)
        grads.append(grad)
    _, _, zeroed = run(0.0)
    return acts * torch.stack(grads).mean(0), zeroed


@pytest.mark.parametrize("sae_id", ["res1-standard", "res0-jumprelu", "att1-jumprelu", "att1-topk"])
def test_integrated_gradients_equal_scaling_the_spliced_saes_features(model, saes, tokens, sae_id):
    sae = saes[sae_id]
    result = attribute_integrated(
        model, tokens, TARGETS, sae_id, sae, steps=4, blank_id=BLANK_ID, newline_id=NEWLINE_ID, lengths=LENGTHS
    )
    expected, _ = spliced_integrated_reference(model, sae, tokens, steps=4)
    real = torch.arange(tokens.shape[1]) < torch.tensor(LENGTHS).unsqueeze(1)
    assert_matches(result.attribution, expected * real.unsqueeze(-1))
    (first_order,) = attribute(
        model, tokens, TARGETS, [(sae_id, sae)], blank_id=BLANK_ID, newline_id=NEWLINE_ID, lengths=LENGTHS
    )
    # the path integral differs from the first-order estimate; activations and error node are shared
    assert not torch.allclose(result.attribution, first_order.attribution, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(result.activation, first_order.activation)
    torch.testing.assert_close(result.error_attribution, first_order.error_attribution)


def test_integrated_gradients_are_complete(model, saes, tokens):
    """Summed over every (position, feature), they give metric(real) − metric(every feature zeroed)."""
    sae = saes["res0-jumprelu"]
    result = attribute_integrated(
        model, tokens, TARGETS, "s", sae, steps=48, blank_id=BLANK_ID, newline_id=NEWLINE_ID, lengths=LENGTHS
    )
    _, zeroed = spliced_integrated_reference(model, sae, tokens, steps=1)
    change = result.metric - zeroed
    assert change.abs().min() > 0.05  # zeroing the features matters, so the check is not vacuous
    torch.testing.assert_close(result.attribution.sum(dim=(1, 2)), change, rtol=0.02, atol=0.01)


def test_integrated_gradients_reject_bad_steps(model, saes, tokens):
    for steps in (0, -1, 2.5, True):
        with pytest.raises(ListerError, match="steps must be an integer in \\[1, 1000\\]"):
            attribute_integrated(model, tokens, TARGETS, "s", saes["res1-standard"], steps=steps, blank_id=1, newline_id=2)


def test_a_loaded_hook_z_sae_is_freed_with_its_last_reference(tiny):
    """Streaming attribution frees each SAE when it moves on: SAELens's hook_z reshaping made a
    reference cycle that only the cycle collector freed (4 SAEs alive at once instead of 2).
    SAELens replaces its closure on the first forward call, so the SAE is checked both unused
    (the cycle's case) and after a call (the engine's reshaping must still work)."""
    import dataclasses
    import gc
    import weakref

    # a handle with nothing cached: an earlier test may have cached these SAEs on the shared `tiny`
    fresh = dataclasses.replace(tiny, _sae_cache={})
    gc.collect()
    gc.disable()
    try:
        for sae_id in ("attn_1", "res_1"):
            for called in (False, True):
                sae = fresh.load_sae(sae_id)
                freed = []
                weakref.finalize(sae, freed.append, sae_id)
                if called:
                    cfg = tiny.model.cfg
                    x = torch.randn(1, 3, cfg.n_heads, cfg.d_head) if sae_id.startswith("attn") else torch.randn(1, 3, cfg.d_model)
                    with torch.no_grad():
                        out = sae(x)
                    assert out.shape == x.shape
                del sae
                assert freed == [sae_id], f"{sae_id} ({'after a call' if called else 'unused'}) outlived its last reference"
    finally:
        gc.enable()
