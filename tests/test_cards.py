"""Feature cards: the corpus pass, its cache, the card's figures, and ground truth on lister-tiny.

Ground truth (lister-tiny's data says what its features must be, lister_tui/organism/corpus.py):
the res_0 feature that fires most on " short" has " short" as its top contexts; the
res_0 feature that ranks top on an earlier filler blank fires on the lone blank before
a line break. The lists attributed here are held-out organism lists read by the model
(teacher forcing), so the test needs no sampling.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lister_tui.core.engine.generation import make_sample
from lister_tui.core.engine.prompts import PromptSpec, prompt_ids
from lister_tui.core.errors import ListerError
from lister_tui.core.study import corpus as corpus_mod
from lister_tui.core.study.cards import feature_card, logit_effects, residual_direction
from lister_tui.core.study.corpus import (
    Corpus,
    PassCancelled,
    corpus_activations,
    default_corpus,
    part_from_file,
    part_from_texts,
    reference_part,
)
from lister_tui.core.study.experiment import attribute_lists
from lister_tui.organism.corpus import make_corpus


@pytest.fixture(scope="module")
def reference(tiny):
    return Corpus((reference_part(tiny),))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("card-cache")


@pytest.fixture(scope="module")
def held_out_lists(tiny):
    """24 held-out organism lists (8 per template) as the model reads them, attributed on three SAEs."""
    examples = [e for e in make_corpus(24, seed=1)]
    samples = []
    for i, ex in enumerate(examples):
        ids = tiny.tokenizer(ex.text, add_special_tokens=False)["input_ids"]
        prompt_len = len(tiny.tokenizer(ex.prompt, add_special_tokens=False)["input_ids"])
        samples.append(make_sample(tiny, PromptSpec(ex.template, ex.topic, i, 0), prompt_len, tuple(ids), True))
    return samples, attribute_lists(tiny, samples, ["res_0", "res_3", "attn_3"], keep=50)


def encode_all(tiny, sae_id, part):
    """Every token's activations by brute force: [n_tokens, d_sae] (BOS rows zero)."""
    site = tiny.entry.site(sae_id)
    sae = tiny.load_sae(sae_id)
    rows = []
    with torch.inference_mode():
        for doc in part.docs:
            _, c = tiny.model.run_with_cache(torch.tensor([doc]), names_filter=[site.hook_name])
            acts = sae.encode(c[site.hook_name])[0]
            acts[torch.tensor(doc) == tiny.ids.bos] = 0
            rows.append(acts)
    return torch.cat(rows).numpy()


def test_the_reference_corpus_is_fixed_held_out_text_of_about_50k_tokens(tiny, reference):
    part = reference.parts[0]
    assert 50_000 <= part.n_tokens < 50_200
    assert part.digest == reference_part(tiny).digest  # the same text every time
    assert all(doc[0] == tiny.ids.bos for doc in part.docs) and "held-out #0" in part.sources[0]


def test_the_card_matches_a_brute_force_encoding(tiny, cache):
    part = part_from_texts(tiny, "few", [e.text for e in make_corpus(15, seed=1)], [f"doc {i}" for i in range(15)])
    dense = encode_all(tiny, "res_1", part)
    feature = int(np.argmax((dense > 0).sum(0)))  # a feature that fires often
    card = feature_card(tiny, "res_1", feature, Corpus((part,)), k=5, cache=cache)
    column = dense[:, feature]
    assert card.n_firing == int((column > 0).sum())
    assert card.n_tokens == len(column) - sum(doc.count(tiny.ids.bos) for doc in part.docs)
    assert card.density == pytest.approx(card.n_firing / card.n_tokens)
    # the strongest firings, one line per distinct window: every firing looked at is one of them or a repeat
    strongest = np.sort(column)[::-1][: sum(c.repeats for c in card.contexts)]
    assert card.contexts[0].activation == pytest.approx(strongest[0], rel=1e-5)
    assert all(np.isclose(strongest, c.activation, rtol=1e-5).any() for c in card.contexts)
    assert len({(c.tokens, c.index) for c in card.contexts}) == len(card.contexts) == 5
    assert sum(card.histogram_counts) == card.n_firing
    # each context's token is the token at its position in its document, highlighted in its window
    for c in card.contexts:
        doc = part.docs[part.sources.index(c.source.split(": ", 1)[1])]
        assert c.token == tiny.to_str_tokens([doc[c.position]])[0]
        assert c.window_activations[c.index] == pytest.approx(c.activation)
    # interval samples lie inside their interval and are not among the top contexts
    for g in card.intervals:
        assert all(g.low < c.activation <= g.high + 1e-6 for c in g.contexts)
    assert 0 < sum(g.share for g in card.intervals) <= 1


def test_the_pass_is_cached_and_read_back_without_the_model(tiny, cache, monkeypatch):
    part = part_from_texts(tiny, "tiny text", ["<bos>- Apple\n- Pear \n"], ["t"])
    first = corpus_activations(tiny, "res_2", part, cache=cache)
    files = list((cache / "activations").glob("lister-tiny-res_2-*.npz"))
    assert len(files) == 1

    def no_pass(*a, **k):
        raise AssertionError("the cached pass was recomputed")

    monkeypatch.setattr(corpus_mod, "run_pass", no_pass)
    again = corpus_activations(tiny, "res_2", part, cache=cache)
    np.testing.assert_array_equal(again.values, first.values)
    np.testing.assert_array_equal(again.positions, first.positions)
    other = part_from_texts(tiny, "tiny text", ["<bos>- Apple\n- Plum \n"], ["t"])
    with pytest.raises(AssertionError, match="recomputed"):
        corpus_activations(tiny, "res_2", other, cache=cache)  # another corpus: another key


def test_a_cancelled_pass_writes_nothing(tiny, tmp_path):
    part = part_from_texts(tiny, "some", [e.text for e in make_corpus(40, seed=1)], [str(i) for i in range(40)])
    seen = []
    with pytest.raises(PassCancelled):
        corpus_activations(tiny, "res_0", part, cache=tmp_path, on_progress=lambda done, total: seen.append((done, total)) or True)
    assert seen and seen[0][1] == part.n_tokens
    assert not (tmp_path / "activations").exists() or not any((tmp_path / "activations").iterdir())


def test_bad_sae_or_feature_is_refused_with_the_valid_range(tiny, reference):
    with pytest.raises(ListerError, match=r"valid: 0\.\.511"):
        feature_card(tiny, "res_0", 512, reference, cache=False)
    with pytest.raises(ListerError, match="valid: res_0"):
        feature_card(tiny, "res_9", 1, reference, cache=False)


def test_corpus_files_text_and_jsonl(tiny, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("Provide me with a short list of Fruits.\n\n- Apple\n- Pear\n")
    part = part_from_file(tiny, text)
    assert len(part.docs) == 2 and part.sources == ("notes.txt line 1", "notes.txt line 3")
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text(json.dumps({"text": "a short list"}) + "\n\n" + json.dumps({"text": "- Apple"}) + "\n")
    assert part_from_file(tiny, jsonl).sources == ("c.jsonl line 1", "c.jsonl line 3")
    jsonl.write_text('{"txt": "x"}\n')
    with pytest.raises(ListerError, match="line 1: no string field 'text'"):
        part_from_file(tiny, jsonl)
    with pytest.raises(ListerError, match="does not exist"):
        part_from_file(tiny, tmp_path / "missing.txt")
    # with a file, the file replaces the held-out text; the session's samples are added
    assert [p.name for p in default_corpus(tiny, file=text).parts] == ["notes.txt"]


def test_attention_directions_reach_the_residual_through_W_O(tiny):
    """Adding a hook_z feature's decoder row to the heads' outputs changes attn_out by its residual direction."""
    site = tiny.entry.site("attn_1")
    sae = tiny.load_sae("attn_1")
    feature = 7
    tokens = torch.tensor([prompt_ids(tiny, "long", "Fruits")])
    add = sae.W_dec[feature].reshape(tiny.model.cfg.n_heads, tiny.model.cfg.d_head)

    def bump(z, hook):
        z[:, -1] += add
        return z

    with torch.inference_mode():
        _, plain = tiny.model.run_with_cache(tokens, names_filter=["blocks.1.hook_attn_out"])
        with tiny.model.hooks(fwd_hooks=[(site.hook_name, bump)]):
            _, bumped = tiny.model.run_with_cache(tokens, names_filter=["blocks.1.hook_attn_out"])
    change = (bumped["blocks.1.hook_attn_out"] - plain["blocks.1.hook_attn_out"])[0, -1]
    torch.testing.assert_close(change, residual_direction(tiny, "attn_1", feature), rtol=1e-4, atol=1e-5)


def test_ground_truth_the_short_feature_fires_on_short(tiny, reference, cache):
    ids = prompt_ids(tiny, "short", "Animals")
    pos = tiny.to_str_tokens(ids).index(" short")
    site = tiny.entry.site("res_0")
    with torch.inference_mode():
        _, c = tiny.model.run_with_cache(torch.tensor([ids]), names_filter=[site.hook_name])
        feature = int(tiny.load_sae("res_0").encode(c[site.hook_name])[0, pos].argmax())
    card = feature_card(tiny, "res_0", feature, reference, cache=cache)
    tokens = [c.token for c in card.contexts[:10]]
    assert tokens.count(" short") >= 9, tokens


def test_ground_truth_earlier_filler_blank_features_fire_on_the_lone_blank(tiny, reference, cache, held_out_lists):
    samples, attrs = held_out_lists
    top_at_filler = set()
    for i, s in enumerate(samples):
        earlier = {p for p in s.structure.filler_positions if p < s.structure.attribution_pos}
        pairs = [p for p in attrs["res_0"].top[i] if p.pos in earlier]
        if pairs:
            top_at_filler.add(pairs[0].feature)
    assert top_at_filler, "no list had an attributed feature on an earlier filler blank"
    for feature in top_at_filler:
        card = feature_card(tiny, "res_0", feature, reference, k=10, cache=cache)
        for c in card.contexts:
            following = c.tokens[c.index + 1] if c.index + 1 < len(c.tokens) else None
            assert (c.token, following) == (" ", "\n"), (feature, c.text)


@pytest.mark.parametrize(
    "sae_id",
    [
        pytest.param(
            "res_0",
            marks=pytest.mark.xfail(
                strict=True,
                reason="measured: the sign agrees for 15 of these 24 lists' top res_0 features (for res_3 and attn_3, every "
                "one): res_0 acts through later layers, e.g. the filler-blank feature's direct effect favours the "
                "newline it precedes (-2.3) while its attribution at the attribution position is positive",
            ),
        ),
        "res_3",
        "attn_3",
    ],
)
def test_ground_truth_metric_direct_sign_agrees_with_attribution_where_top(tiny, held_out_lists, sae_id):
    samples, attrs = held_out_lists
    attr = attrs[sae_id]
    disagree = []
    for i in range(len(samples)):
        if attr.top[i]:
            top = attr.top[i][0]
            direct = logit_effects(tiny, sae_id, top.feature).metric_direct
            if (direct > 0) != (top.attribution > 0):
                disagree.append((i, top.feature, round(top.attribution, 3), round(direct, 3)))
    assert disagree == []


def test_the_sample_strip_and_rank(tiny, reference, cache, held_out_lists):
    samples, attrs = held_out_lists
    from lister_tui.core.study.experiment import select_samples

    s = samples[0]
    one = select_samples(attrs["res_0"], [0])
    top = one.top[0][0]
    card = feature_card(tiny, "res_0", top.feature, reference, cache=cache, sample=("k", s.tokens, one))
    trace = card.sample
    assert len(trace.activations) == len(s.tokens) and trace.rank == 1 and trace.position == top.pos
    assert trace.activations[top.pos] == pytest.approx(top.activation, rel=1e-4)
    data = card.to_dict()
    assert set(data["contexts"][0]) >= {"token", "activation", "text", "source"}
    assert set(data["logit_effects"]) >= {"promoted", "suppressed", "metric_direct"}
    json.dumps(data)  # JSON-ready


def test_the_same_code_runs_on_a_gemma_2_architecture_model(tmp_path):
    from gemma_fixtures import build_loaded

    lab = build_loaded(tmp_path, sae_sites=("res_0", "attn_2"))
    texts = ["List some fruits.\n- Apple \n- Mango\n", "- Kiwi\n- Plum \n- Peach\n"] * 3
    corpus = Corpus((part_from_texts(lab, "fruit", texts, [f"t{i}" for i in range(len(texts))]),))
    for sae_id in ("res_0", "attn_2"):
        dense = encode_all(lab, sae_id, corpus.parts[0])
        feature = int(dense.max(0).argmax())
        card = feature_card(lab, sae_id, feature, corpus, k=3, cache=tmp_path)
        assert card.contexts[0].activation == pytest.approx(float(dense[:, feature].max()), rel=1e-4)
        assert len(card.logit_effects.promoted) == 10 and np.isfinite(card.logit_effects.metric_direct)
        assert card.link and "neuronpedia" in card.link
    # random weights with no cached revision cannot be told apart: nothing is cached for them
    assert not (tmp_path / "activations").exists()


def test_a_sessions_own_lists_are_part_of_the_corpus(tiny, cache, held_out_lists):
    samples, attrs = held_out_lists
    lists = {f"key-{i}": s for i, s in enumerate(samples[:3])}
    corpus = default_corpus(tiny, lists)
    assert [p.name for p in corpus.parts] == ["lister-tiny held-out text (seed 1)", "session samples"]
    own = Corpus((corpus.parts[1],))
    top = attrs["res_0"].top[0][0]
    card = feature_card(tiny, "res_0", top.feature, own, k=50, cache=cache)
    assert {c.source for c in card.contexts} <= {f"session samples: key-{i}" for i in range(3)}
    assert any(c.source == "session samples: key-0" and c.position == top.pos for c in card.contexts)


def test_identical_windows_show_once_with_their_count_so_distinct_contexts_appear(tiny, cache):
    """A token-level feature fires on the same window in every copy of a text: 20 identical lines
    told nothing; now each window shows once with ×N and the other contexts get their lines."""
    from lister_tui.tui.card_render import contexts_lines, top_title

    texts = [e.text for e in make_corpus(4, seed=3)]
    part = part_from_texts(tiny, "copies", [texts[0]] * 12 + texts[1:], [f"doc {i}" for i in range(15)])
    dense = encode_all(tiny, "res_0", part)
    first_doc = len(part.docs[0])
    feature = int(np.argmax(dense[:first_doc].max(0)))  # the strongest feature of the copied text
    card = feature_card(tiny, "res_0", feature, Corpus((part,)), k=6, cache=cache)
    windows = [(c.tokens, c.index) for c in card.contexts]
    assert len(set(windows)) == len(windows)  # no two lines alike
    assert card.contexts[0].repeats >= 12  # the copied text's window, once, with its count
    assert sum(c.repeats for c in card.contexts) > len(card.contexts)
    shown = contexts_lines(card.contexts, top_title(card.contexts), 120).plain
    assert f"×{card.contexts[0].repeats}" in shown and "distinct contexts" in shown
