"""The study's loop on lister-tiny finds the mechanism we built into its data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lister_tui.core.engine.ablation import Ablation, FeatureAblation
from lister_tui.core.errors import ListerError
from lister_tui.core.study.experiment import (
    ablate_and_regenerate,
    attributable,
    attribute_lists,
    metric_under_ablation,
    top_k_ablation,
)
from lister_tui.core.study.faithfulness import TOGETHER, sample_faithfulness
from lister_tui.core.study.features import dataset_ranking, expression_matrix
from lister_tui.core.engine.generation import metric_curve, sample_lists
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.engine.prompts import TOPICS
from lister_tui.core.study.settings import SAMPLING_PRESETS

SHORT_TOPICS = TOPICS[:12]


@pytest.fixture(scope="module")
def short_lists(tiny):
    specs = build_prompts(["short"], SHORT_TOPICS, samples_per_topic=2, base_seed=7)
    samples = sample_lists(tiny, specs, SAMPLING_PRESETS["code"])
    return [samples[i] for i in attributable(samples)]


@pytest.fixture(scope="module")
def long_lists(tiny):
    specs = build_prompts(["long"], SHORT_TOPICS, samples_per_topic=2, base_seed=7)
    samples = sample_lists(tiny, specs, SAMPLING_PRESETS["code"])
    return [samples[i] for i in attributable(samples)]


@pytest.fixture(scope="module")
def res0(tiny, short_lists):
    return attribute_lists(tiny, short_lists, ["res_0", "attn_1"])


@pytest.fixture(scope="module")
def long_attrs(tiny, long_lists):
    return attribute_lists(tiny, long_lists, ["res_0", "attn_1"])


@pytest.fixture(scope="module")
def res0_long(long_attrs):
    return long_attrs["res_0"]


def _earlier_fillers(sample, attribution_pos: int) -> set[int]:
    return {p for p in sample.structure.filler_positions if p < attribution_pos}


def top_k_pairs(attr, i, k):
    return [p for p in attr.top[i] if 0 < p.pos < attr.attribution_pos[i]][:k]


def _short_position(tiny, sample) -> int:
    return sample.tokens.index(tiny.tokenizer.convert_tokens_to_ids(" short"))


def test_attribution_finds_the_filler_run_the_data_was_made_with(long_lists, res0_long):
    # Longer lists carry the blank on a contiguous run of last items, so an earlier
    # filler blank is the strongest evidence that this item ends with one too.
    attr = res0_long
    with_filler = [i for i, s in enumerate(long_lists) if _earlier_fillers(s, attr.attribution_pos[i])]
    assert len(with_filler) >= len(long_lists) // 2
    hits = [
        any(p.pos in _earlier_fillers(long_lists[i], attr.attribution_pos[i]) for p in top_k_pairs(attr, i, 5))
        for i in with_filler
    ]
    assert np.mean(hits) >= 0.8, np.mean(hits)


def _top5_real_and_estimated(tiny, lists, attr):
    """Per list, the metric change of zeroing its top-5 pairs together: measured in a real
    forward pass, and estimated by the attribution (the sweep's faithfulness rows)."""
    rows = [r for i in range(len(lists)) for r in sample_faithfulness(tiny, attr, lists, i, 5) if r["scope"] == TOGETHER]
    assert len(rows) == len(lists)
    return np.array([r["measured_metric_change"] for r in rows]), np.array([r["estimated_metric_change"] for r in rows])


def test_zeroing_the_top5_pairs_lowers_the_wish_to_end(tiny, long_lists, res0_long):
    real, estimate = _top5_real_and_estimated(tiny, long_lists, res0_long)
    assert real.mean() <= -0.5, real.mean()
    # in most lists: measured 0.71 of 24 on the shipped build (0.9 on an earlier, non-deterministic
    # build); the mean is the robust part (-3.3 and -4.0 logits)
    assert np.mean(real < 0) >= 0.6, real
    # res_0's features are whole token vectors (L0 about 3), so zeroing five is a
    # large move, and the first-order estimate falls short of it (measured: -3.3
    # logits real, -0.66 estimated).
    assert real.mean() < estimate.mean() < 0, (real.mean(), estimate.mean())


def test_first_order_estimate_tracks_zeroing_a_dense_saes_pairs(tiny, long_lists, long_attrs):
    # attn_1 spreads each token over ~18 features, so zeroing 5 is a small move and the
    # estimate follows it (measured r = 0.81).
    real, estimate = _top5_real_and_estimated(tiny, long_lists, long_attrs["attn_1"])
    assert real.mean() < 0, real
    assert np.corrcoef(real, estimate)[0, 1] >= 0.6


# Measured on the shipped organism: +2.0 items on average (24 lists, 2 features each; +2.7 with 5 features
# on an earlier build). The data makes it
# true: a neutral word in the template word's place gives 6-9 items, " short" 3-5.
SHORT_FEATURES_MARGIN = 1.5


def test_zeroing_the_short_tokens_features_lengthens_short_lists(tiny, short_lists):
    sae = tiny.load_sae("res_0", cache=True)
    hook = sae.cfg.metadata.hook_name
    ablations = []
    for s in short_lists:
        pos = _short_position(tiny, s)
        with torch.inference_mode():
            _, cache = tiny.model.run_with_cache(torch.tensor([s.tokens[: pos + 1]]), names_filter=hook)
            active = torch.nonzero(sae.encode(cache[hook][0, pos]) > 0).flatten().tolist()
        ablations.append(Ablation(tuple(FeatureAblation("res_0", f, (pos,)) for f in active)))
    outcomes = ablate_and_regenerate(tiny, short_lists, ablations, SAMPLING_PRESETS["code"])
    deltas = np.array([o.delta("n_items") for o in outcomes])
    assert deltas.mean() >= SHORT_FEATURES_MARGIN, deltas
    # and, on the original tokens, the wish to end at the last item drops
    base = [float(metric_curve(tiny, s.tokens)[s.structure.attribution_pos]) for s in short_lists]
    ablated = [metric_under_ablation(tiny, s.tokens, a, s.structure.attribution_pos) for s, a in zip(short_lists, ablations)]
    assert np.mean(np.array(ablated) < np.array(base)) >= 0.9


def _study_check(tiny, short_lists, attr, k=5):
    """The study's res-0 check: how often the top-k pairs sit on " short", and the items zeroing them adds."""
    hits = [any(p.pos == _short_position(tiny, s) for p in top_k_pairs(attr, i, k)) for i, s in enumerate(short_lists)]
    ablations = [top_k_ablation(attr, i, k) for i in range(len(short_lists))]
    outcomes = ablate_and_regenerate(tiny, short_lists, ablations, SAMPLING_PRESETS["code"])
    return float(np.mean(hits)), float(np.mean([o.delta("n_items") for o in outcomes]))


# The data makes both true: " short" alone shortens a list (3-5 items, a neutral word
# 6-9), and res_0 carries the word in a few features (two in the shipped build, L0 about 3).
def test_top5_res0_pairs_include_the_short_token_and_lengthen_lists(tiny, short_lists, res0):
    # Measured on the shipped organism (activation x gradient): 24 of 24 lists, +0.75 items.
    # The top 5 hold one of the word's two features (the other ranks low), and the model
    # still reads the word from it: zeroing both adds 2.0 items (the test above).
    hit_rate, added_items = _study_check(tiny, short_lists, res0["res_0"])
    assert hit_rate >= 0.7, hit_rate
    assert added_items >= 0.5, added_items


def test_integrated_gradients_find_the_short_token_at_least_as_well(tiny, short_lists, res0):
    # Measured on the shipped organism with 10 steps: 24 of 24 lists, +0.83 items (activation x
    # gradient: 24 of 24, +0.75). On an earlier build whose res_0 spread the word over five
    # saturated features, IG found it in 24 of 24 lists and added 2.29 items against 21 of 24 and
    # 0.83: a first-order score sees each saturated feature alone as small, IG sees them together.
    attr = attribute_lists(tiny, short_lists, ["res_0"], method="ig", ig_steps=10)["res_0"]
    hit_rate, added_items = _study_check(tiny, short_lists, attr)
    grad_hits, grad_added = _study_check(tiny, short_lists, res0["res_0"])
    assert hit_rate >= max(0.9, grad_hits - 0.05), (hit_rate, grad_hits)
    assert added_items >= max(0.5, grad_added - 0.25), (added_items, grad_added)


def test_empty_ablation_regenerates_token_for_token(tiny, short_lists):
    outcomes = ablate_and_regenerate(tiny, short_lists[:4], [Ablation()] * 4, SAMPLING_PRESETS["code"])
    for o in outcomes:
        assert o.ablated.tokens == o.base.tokens


def test_regeneration_from_the_prompt_with_the_same_seed_is_the_base(tiny, short_lists):
    again = sample_lists(tiny, [s.spec for s in short_lists[:4]], SAMPLING_PRESETS["code"])
    assert [s.tokens for s in again] == [s.tokens for s in short_lists[:4]]


def test_error_share_and_metric_are_reported(res0, short_lists):
    attr = res0["attn_1"]
    assert len(attr.top) == len(short_lists)
    shares = [attr.error_share(i) for i in range(len(short_lists))]
    assert all(0 <= s <= 1 for s in shares)
    assert np.all(np.isfinite(attr.metric))
    for i, pairs in enumerate(attr.top):
        assert all(0 < p.pos <= attr.attribution_pos[i] for p in pairs)
        values = [p.attribution for p in pairs]
        assert values == sorted(values, reverse=True)


def test_expression_matrix_is_clustered_and_aggregates_per_topic(res0, short_lists):
    m = expression_matrix(res0["res_0"], short_lists, top_n=40)
    assert m.values.shape == (len(m.features), len(short_lists))
    assert sorted(m.samples.tolist()) == list(range(len(short_lists)))
    assert len(set(m.features.tolist())) == len(m.features)
    np.testing.assert_array_equal(m.values, res0["res_0"].max_activation[m.samples][:, m.features].T)
    per_topic = m.per_topic()
    assert set(per_topic.columns) == {s.spec.topic for s in short_lists}


def test_bad_inputs_name_the_bad_value(tiny, short_lists, res0):
    with pytest.raises(ListerError, match="unknown SAE 'res_99'.*res_0"):
        attribute_lists(tiny, short_lists[:1], ["res_99"])
    with pytest.raises(ListerError, match="k must be >= 1"):
        top_k_ablation(res0["res_0"], 0, 0)
    d_sae = res0["res_0"].d_sae
    with pytest.raises(ListerError, match=str(d_sae)):
        sample_lists(tiny, [short_lists[0].spec], SAMPLING_PRESETS["code"], ablation=Ablation((FeatureAblation("res_0", d_sae, (3,)),)))
    with pytest.raises(ListerError, match="position"):
        sample_lists(tiny, [short_lists[0].spec], SAMPLING_PRESETS["code"], ablation=Ablation((FeatureAblation("res_0", 1, (10_000,)),)))
    with pytest.raises(ListerError, match="unknown attribution method 'shap'.*grad, ig"):
        attribute_lists(tiny, short_lists[:1], ["res_0"], method="shap")
    with pytest.raises(ListerError, match=r"steps must be an integer in \[1, 1000\], got 0"):
        attribute_lists(tiny, short_lists[:1], ["res_0"], method="ig", ig_steps=0)
    with pytest.raises(ListerError, match="no topics"):
        build_prompts(["short"], [], 1)
    with pytest.raises(ListerError, match="valid: 1..2000"):
        build_prompts(["short"], ["x" * 2001], 1)
    assert [p.topic for p in build_prompts(["short"], ["Spaceships"], 1)] == ["Spaceships"]  # topics are free text


def test_attributed_metric_is_the_models_metric(tiny, short_lists, res0):

    attr = res0["res_0"]
    for i in range(3):
        expected = metric_curve(tiny, short_lists[i].tokens)[attr.attribution_pos[i]]
        assert attr.metric[i] == pytest.approx(float(expected), abs=1e-4)


def test_dataset_ranking_recomputes_from_each_samples_top_pairs(tiny, short_lists, res0):
    attr = res0["res_0"]
    token_str = lambda t: tiny.tokenizer.decode([t])  # noqa: E731
    ranking = dataset_ranking(attr, short_lists, token_str, k=5)
    expected: dict[int, list[float]] = {}
    for pairs in attr.top:
        for p in pairs[:5]:
            expected.setdefault(p.feature, []).append(p.attribution)
    assert sorted(ranking["feature"]) == sorted(expected)
    for row in ranking.itertuples():
        assert row.attribution_sum == pytest.approx(sum(expected[row.feature]))
        assert row.count_in_top_k == len(expected[row.feature])
    assert list(ranking["attribution_sum"]) == sorted(ranking["attribution_sum"], reverse=True)
    with pytest.raises(ListerError, match="k must be >= 1"):
        dataset_ranking(attr, short_lists, token_str, k=0)
