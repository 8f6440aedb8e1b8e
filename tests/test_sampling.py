"""Batched KV-cached sampling: exactness, common random numbers, filtering, cancellation."""

from __future__ import annotations

import warnings

import pytest
import torch
from engine_fixtures import build_model, random_tokens
from sae_lens import HookedSAETransformer
from transformer_lens import HookedTransformerConfig

from lister_tui.core.errors import ListerError
from lister_tui.core.engine.sampling import Generation, generate, sample_next

N_NEW = 12


@pytest.fixture(scope="module")
def model():
    return build_model()


@pytest.fixture(scope="module")
def rotary_model():
    """Like the fixture model but with rotary positions (as Gemma), see the test below."""
    torch.manual_seed(0)
    cfg = HookedTransformerConfig(
        n_layers=3, d_model=64, n_heads=4, d_head=16, d_mlp=128, d_vocab=97, n_ctx=64,
        act_fn="gelu", normalization_type="LN", seed=0, positional_embedding_type="rotary",
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return HookedSAETransformer(cfg).eval()


def prompt(length: int, seed: int) -> list[int]:
    return random_tokens(1, length, seed)[0].tolist()


def greedy_full_forward(model, prompt_ids: list[int], n_new: int) -> list[int]:
    sequence = torch.tensor([prompt_ids])
    with torch.no_grad():
        for _ in range(n_new):
            next_id = model(sequence)[:, -1].argmax(-1, keepdim=True)
            sequence = torch.cat([sequence, next_id], dim=1)
    return sequence[0, len(prompt_ids) :].tolist()


def tl_generate(model, prompt_ids: list[int], n_new: int, use_past_kv_cache: bool) -> list[int]:
    output = model.generate(
        torch.tensor([prompt_ids]),
        max_new_tokens=n_new,
        do_sample=False,
        stop_at_eos=False,
        verbose=False,
        use_past_kv_cache=use_past_kv_cache,
    )
    return output[0, len(prompt_ids) :].tolist()


def test_greedy_equals_transformer_lens_generate(model, rotary_model):
    for prompt_ids in (prompt(7, 1), prompt(3, 2)):
        # Rotary model: TransformerLens's own KV-cached generate is right.
        (ours,) = generate(rotary_model, [prompt_ids], [0], temperature=0.0, max_new_tokens=N_NEW, stop_ids=[])
        assert ours.tokens == tl_generate(rotary_model, prompt_ids, N_NEW, use_past_kv_cache=True)
        # Absolute positions: TransformerLens 3.9's KV-cached generate (without a
        # tokenizer) gives new tokens the wrong position embedding, so compare with
        # its uncached generate and with a plain full forward per step.
        (ours,) = generate(model, [prompt_ids], [0], temperature=0.0, max_new_tokens=N_NEW, stop_ids=[])
        assert ours.tokens == tl_generate(model, prompt_ids, N_NEW, use_past_kv_cache=False)
        assert ours.tokens == greedy_full_forward(model, prompt_ids, N_NEW)
        assert not ours.stopped and ours.prompt == prompt_ids and ours.seed == 0


def test_stops_at_first_stop_id(model):
    prompt_ids = prompt(6, 3)
    reference = greedy_full_forward(model, prompt_ids, N_NEW)
    stop = reference[4]
    first = reference.index(stop)
    other_prompt = prompt(6, 4)
    stopped, other = generate(
        model, [prompt_ids, other_prompt], [0, 1], temperature=0.0, max_new_tokens=N_NEW, stop_ids=[stop, 1000]
    )
    assert stopped.tokens == reference[: first + 1] and stopped.stopped
    # The other row of the batch is unaffected by its neighbour stopping.
    other_reference = greedy_full_forward(model, other_prompt, N_NEW)
    if stop in other_reference:
        assert other.tokens == other_reference[: other_reference.index(stop) + 1] and other.stopped
    else:
        assert other.tokens == other_reference and not other.stopped


def test_same_seed_same_tokens_whatever_the_batch(model):
    target = prompt(8, 10)
    kwargs = dict(temperature=1.0, top_p=0.95, max_new_tokens=N_NEW, stop_ids=[])
    (alone,) = generate(model, [target], [1234], **kwargs)
    # Inside a batch of 5: two more prompts of the same length (same batch group) and
    # two of other lengths, with other seeds, the target in the middle.
    prompts = [prompt(5, 11), prompt(8, 12), target, prompt(8, 13), prompt(11, 14)]
    batch = generate(model, prompts, [1, 2, 1234, 3, 4], **kwargs)
    assert batch[2].tokens == alone.tokens
    assert [g.prompt for g in batch] == prompts  # input order is preserved
    # Split into batches of one: still the same.
    split = generate(model, prompts, [1, 2, 1234, 3, 4], max_batch_size=1, **kwargs)
    assert [g.tokens for g in split] == [g.tokens for g in batch]
    # Two runs with the same seeds are identical.
    assert generate(model, prompts, [1, 2, 1234, 3, 4], **kwargs) == batch


def test_a_long_prefix_stops_at_the_context_not_past_it(model):
    """A regeneration continues a sampled prefix: prefix + max_new_tokens may pass n_ctx (a list
    that cannot end under "ban end"); it stops at the context's end, whatever its batch."""
    n_ctx = model.cfg.n_ctx
    long = prompt(n_ctx - 5, 20)
    kwargs = dict(temperature=1.0, top_p=0.95, max_new_tokens=40, stop_ids=[])
    (alone,) = generate(model, [long], [7], **kwargs)
    assert len(alone.prompt) + len(alone.tokens) == n_ctx and not alone.stopped
    batch = generate(model, [prompt(8, 21), long, prompt(n_ctx, 22)], [1, 7, 2], **kwargs)
    assert batch[1].tokens == alone.tokens
    assert len(batch[0].tokens) == 40 and batch[2].tokens == []  # a full prefix leaves no room


def test_different_seeds_differ(model):
    target = prompt(8, 10)
    runs = generate(model, [target] * 4, [0, 1, 2, 3], temperature=1.0, max_new_tokens=N_NEW, stop_ids=[])
    assert len({tuple(g.tokens) for g in runs}) > 1


def test_top_k_one_and_tiny_top_p_are_greedy(model):
    target = prompt(8, 20)
    greedy = greedy_full_forward(model, target, N_NEW)
    (top1,) = generate(model, [target], [5], temperature=1.5, top_k=1, max_new_tokens=N_NEW, stop_ids=[])
    (tiny_p,) = generate(model, [target], [5], temperature=1.5, top_p=1e-6, max_new_tokens=N_NEW, stop_ids=[])
    assert top1.tokens == greedy and tiny_p.tokens == greedy


def allowed_sets(model, prompt_ids, tokens, temperature, top_k=None, top_p=1.0) -> list[set[int]]:
    """Per step, the token ids that the filter allows, from uncached full forwards."""
    allowed = []
    with torch.no_grad():
        for step in range(len(tokens)):
            logits = model(torch.tensor([prompt_ids + tokens[:step]]))[0, -1] / temperature
            order = logits.argsort(descending=True)
            probs = torch.softmax(logits, -1)
            keep = order[:top_k] if top_k else order
            kept_probs = probs[keep] / probs[keep].sum()
            mass_before = kept_probs.cumsum(0) - kept_probs
            keep = keep[mass_before < top_p]
            allowed.append(set(keep.tolist()))
    return allowed


@pytest.mark.parametrize(("top_k", "top_p"), [(3, 1.0), (None, 0.3), (5, 0.5)])
def test_top_k_and_top_p_restrict(model, top_k, top_p):
    prompts = [prompt(6, 30 + i) for i in range(4)]
    runs = generate(
        model, prompts, list(range(4)), temperature=2.0, top_k=top_k, top_p=top_p, max_new_tokens=8, stop_ids=[]
    )
    for prompt_ids, run in zip(prompts, runs):
        allowed = allowed_sets(model, prompt_ids, run.tokens, 2.0, top_k, top_p)
        assert all(token in ok for token, ok in zip(run.tokens, allowed))
    # At temperature 2 without filtering, tokens outside these sets do appear.
    free = generate(model, prompts, list(range(4)), temperature=2.0, max_new_tokens=8, stop_ids=[])
    outside = 0
    for prompt_ids, run in zip(prompts, free):
        allowed = allowed_sets(model, prompt_ids, run.tokens, 2.0, top_k, top_p)
        outside += sum(token not in ok for token, ok in zip(run.tokens, allowed))
    assert outside > 0


def test_sample_next_matches_the_filtered_distribution():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
    n = 4000
    generators = [torch.Generator().manual_seed(seed) for seed in range(n)]
    draws = sample_next(logits.expand(n, -1), generators, temperature=1.0, top_p=0.8)
    probs = torch.softmax(logits, -1)
    # probs ≈ .563 .207 .126 .076 .028: the smallest set reaching 0.8 is tokens 0-2
    mass_before = probs.cumsum(0) - probs
    kept = mass_before < 0.8
    assert kept.tolist() == [True, True, True, False, False]
    expected = torch.where(kept, probs, torch.zeros(())) / probs[kept].sum()
    observed = torch.bincount(draws, minlength=5).float() / n
    torch.testing.assert_close(observed, expected, atol=0.03, rtol=0)
    assert observed[~kept].sum() == 0


def _sample_next_by_stable_sort(logits, generators, *, temperature, top_p=1.0, top_k=None):
    """The sampler as first written (a stable torch.sort with indices): the token sequences of
    every saved session came from it, so the faster sampler must give the same ids."""
    scaled = logits.float() / temperature
    sorted_logits, sorted_ids = torch.sort(scaled, dim=-1, descending=True, stable=True)
    if top_k is not None and top_k < sorted_logits.shape[-1]:
        kth = sorted_logits[:, top_k - 1 : top_k]
        sorted_logits = sorted_logits.masked_fill(sorted_logits < kth, float("-inf"))
    probs = torch.softmax(sorted_logits, dim=-1)
    if top_p < 1.0:
        mass_before = probs.cumsum(dim=-1) - probs
        drop = mass_before >= top_p
        drop[:, 0] = False
        probs = probs.masked_fill(drop, 0.0)
    cdf = probs.double().cumsum(dim=-1)
    uniforms = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])
    targets = (uniforms * cdf[:, -1]).unsqueeze(1)
    last_kept = (probs > 0).sum(dim=-1, keepdim=True) - 1
    chosen = torch.minimum(torch.searchsorted(cdf, targets, right=True), last_kept)
    return sorted_ids.gather(1, chosen).squeeze(1)


@pytest.mark.parametrize(("temperature", "top_p", "top_k"), [(1.0, 1.0, None), (0.8, 0.9, None), (0.7, 0.8, 40), (2.0, 1.0, 3)])
def test_sample_next_gives_the_stable_sorts_tokens_with_ties(temperature, top_p, top_k):
    # Coarse logits make many exact ties (the case where only a stable order fixes the id),
    # with banned (-inf) tokens and both signs of zero, as the decoder can produce.
    torch.manual_seed(0)
    rows, vocab = 64, 300
    logits = torch.randint(-6, 7, (rows, vocab)).float() / 2
    logits[:, 5::17] = float("-inf")
    logits[::2, 0] = -0.0
    logits[1::3, 1:4] = logits[1::3, 10:11]  # a tie across the top of the row
    for seed in range(5):
        ours = sample_next(logits, [torch.Generator().manual_seed(seed * rows + r) for r in range(rows)], temperature=temperature, top_p=top_p, top_k=top_k)
        reference = _sample_next_by_stable_sort(
            logits, [torch.Generator().manual_seed(seed * rows + r) for r in range(rows)], temperature=temperature, top_p=top_p, top_k=top_k
        )
        assert ours.tolist() == reference.tolist()
    # the ties matter: tokens drawn from inside a run of equal logits other than the run's first
    assert any(int(torch.nonzero(logits[r] == logits[r, t])[0]) != t for r, t in enumerate(reference.tolist()))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_sample_next_names_rows_whose_logits_are_not_finite(bad):
    logits = torch.randn(3, 50)
    logits[1, 7] = bad
    generators = [torch.Generator().manual_seed(i) for i in range(3)]
    with pytest.raises(ListerError, match=r"batch row\(s\) \[1\]: the model's next-token logits are not finite"):
        sample_next(logits, generators, temperature=0.8, top_p=0.9)


def test_on_step_streams_and_cancels(model):
    prompts = [prompt(5, 40), prompt(5, 41), prompt(9, 42)]
    seen: list[tuple[int, list[int]]] = []

    def on_step(step: int, tokens: list[list[int]]) -> bool:
        seen.append((step, [len(t) for t in tokens]))
        return step == 3

    runs = generate(model, prompts, [0, 1, 2], temperature=1.0, max_new_tokens=N_NEW, stop_ids=[], on_step=on_step)
    assert [s for s, _ in seen] == [1, 2, 3]
    assert seen[-1][1] == [3, 3, 0]  # the first batch group (length 5) ran 3 steps
    assert [len(g.tokens) for g in runs] == [3, 3, 0]
    assert not any(g.stopped for g in runs)
    # Without cancellation the same seeds give the same first tokens.
    full = generate(model, prompts, [0, 1, 2], temperature=1.0, max_new_tokens=N_NEW, stop_ids=[])
    assert [g.tokens[:3] for g in full[:2]] == [g.tokens for g in runs[:2]]


def test_generation_is_a_plain_record():
    g = Generation(prompt=[1, 2], tokens=[3], seed=7, stopped=True)
    assert g == Generation([1, 2], [3], 7, True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(seeds=[0, 1]), "1 prompts but 2 seeds"),
        (dict(temperature=-1.0), "temperature -1.0"),
        (dict(top_p=0.0), "top_p 0.0"),
        (dict(top_k=0), "top_k 0"),
        (dict(max_new_tokens=-1), "max_new_tokens -1"),
    ],
)
def test_bad_arguments(model, kwargs, message):
    arguments = dict(seeds=[0], temperature=1.0, max_new_tokens=2, stop_ids=[]) | kwargs
    with pytest.raises(ListerError, match=message):
        generate(model, [prompt(4, 0)], **arguments)
