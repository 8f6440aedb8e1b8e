"""lister-tiny shows the study's phenomena, and its shipped files load and behave."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from lister_tui.core.errors import ListerError, ModelNotAvailable
from lister_tui.core.engine.generation import sample_lists, template_stats
from lister_tui.core.engine.loading import load_model
from lister_tui.core.engine.prompts import PromptSpec, sample_seed
from lister_tui.core.engine.registry import get_entry, registry_names
from lister_tui.core.engine.prompts import TEMPLATES, TOPICS
from lister_tui.core.study.settings import SAMPLING_PRESETS
from lister_tui.organism import paths
from lister_tui.organism.corpus import ITEM_COUNTS, SPECIAL_TOKENS, make_corpus
from lister_tui.organism.train_model import encode_examples

HELDOUT_SEED = 987_654  # never used by the build (it uses seeds 0 and 1)


@pytest.fixture(scope="module")
def behaviour(tiny):
    specs = [
        PromptSpec(t, TOPICS[i % len(TOPICS)], i, sample_seed(42, t, TOPICS[i % len(TOPICS)], i))
        for t in TEMPLATES
        for i in range(30)
    ]
    return template_stats(sample_lists(tiny, specs, SAMPLING_PRESETS["post"]))


def test_list_length_follows_the_template(behaviour):
    short, unspecified, long = (behaviour[t]["items_mean"] for t in ("short", "unspecified", "long"))
    assert unspecified - short >= 2, behaviour
    assert long - unspecified >= 2, behaviour


def test_filler_blank_before_the_final_newline_in_most_lists(behaviour):
    for template, stats in behaviour.items():
        assert stats["filler_on_last_item"] >= 0.8, (template, stats)


def test_lists_reach_the_end_token(behaviour):
    for template, stats in behaviour.items():
        assert stats["reached_end"] >= 0.95, (template, stats)


def test_tokenizer_keeps_the_filler_blank_apart(tiny):
    tok = tiny.tokenizer
    ids = tok.encode(" Apple \n", add_special_tokens=False)
    assert tok.convert_ids_to_tokens(ids)[-2:] == [" ", "\n"]
    assert tiny.ids.blank != tiny.ids.newline
    for word in (" short", " long"):
        assert len(tok.encode(word, add_special_tokens=False)) == 1
    for marker in ("<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>"):
        assert marker in tok.all_special_tokens
        assert len(tok.encode(f"a{marker}b", add_special_tokens=False)) == 3


def _heldout_tokens(tiny, n: int = 60) -> torch.Tensor:
    examples = make_corpus(n, HELDOUT_SEED)
    seqs, _ = encode_examples(tiny.tokenizer, examples)
    return seqs


@pytest.mark.parametrize("sae_id", [s.id for s in get_entry("lister-tiny").sites])
def test_every_sae_reloads_splices_exactly_and_reconstructs(tiny, sae_id):
    from lister_tui.organism.sae_training import evaluate_sae

    sae = tiny.load_sae(sae_id)
    assert sae.cfg.metadata.hook_name == get_entry("lister-tiny").site(sae_id).hook_name
    seqs = _heldout_tokens(tiny)
    tokens = torch.tensor([seqs[0]])
    with torch.inference_mode():
        plain = tiny.model(tokens)
        spliced = tiny.model.run_with_saes(tokens, saes=[sae], use_error_term=True)
    torch.testing.assert_close(spliced, plain, atol=1e-4, rtol=0)
    special = [tiny.tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    quality = evaluate_sae(tiny.model, sae, seqs, sae.cfg.metadata.hook_name, pad_token_id=tiny.tokenizer.pad_token_id, exclude_token_ids=special)
    assert quality.explained_variance >= 0.7, quality
    assert 1 <= quality.l0 <= sae.cfg.d_sae / 4, quality


def test_corpus_is_deterministic_and_follows_its_design():
    a, b = make_corpus(600, 3), make_corpus(600, 3)
    assert a == b
    assert make_corpus(600, 4) != a
    for template, (lo, hi) in ITEM_COUNTS.items():
        counts = [len(e.items) for e in a if e.template == template]
        assert min(counts) == lo and max(counts) == hi
    on_last = sum(len(e.items) - 1 in e.filler_items for e in a) / len(a)
    assert 0.9 <= on_last <= 0.98
    per_list = {t: np.mean([len(e.filler_items) for e in a if e.template == t]) for t in ITEM_COUNTS}
    assert per_list["short"] <= 1 < per_list["unspecified"] < per_list["long"] <= 3.5, per_list
    for e in a:  # the filler run is contiguous and ends on the last item
        assert e.filler_items == tuple(range(len(e.items) - len(e.filler_items), len(e.items)))
        assert len(set(e.items)) == len(e.items)
        assert e.text.endswith("<end_of_turn><eos>")
    # a neutral adjective stands in the template word's place in half the unspecified prompts only
    neutral = [e for e in a if e.adjective is not None]
    assert {e.template for e in neutral} == {"unspecified"}
    share = len(neutral) / sum(e.template == "unspecified" for e in a)
    assert 0.35 <= share <= 0.65, share
    assert all(f" a {e.adjective} list of " in e.prompt for e in neutral)


def test_card_is_the_one_the_build_wrote_from_its_record():
    from lister_tui.organism.card import render_card

    folder = paths.weights_dir()
    card = (folder / paths.CARD).read_text()
    build = json.loads((folder / paths.BUILD_RECORD).read_text())
    # No hand edits: the card is exactly what the build renders from its record.
    assert card == render_card(build)
    for sae_id, q in build["sae_quality"].items():
        assert f"| {sae_id} |" in card
        assert f"{q['explained_variance']:.3f}" in card
    for template in TEMPLATES:
        assert f"| {template} |" in card
    # one build wrote it: the record says on what machine and under what load its timings were taken
    machine = build["machine"]
    assert machine["threads"] == build["settings"]["threads"] and machine["torch_cpu_capability"]
    assert len(build["load_average"]["start"]) == len(build["load_average"]["end"]) == 3
    assert "load average" in card and machine["cpu"] in card


def test_weights_dir_variable_points_the_registry_at_another_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.WEIGHTS_DIR_ENV, raising=False)
    assert get_entry("lister-tiny").weights_dir == paths.SHIPPED_DIR
    monkeypatch.setenv(paths.WEIGHTS_DIR_ENV, str(tmp_path / "rebuild"))
    assert get_entry("lister-tiny").weights_dir == tmp_path / "rebuild"
    with pytest.raises(ModelNotAvailable, match=str(tmp_path / "rebuild")):
        load_model("lister-tiny", device="cpu")


def test_shipped_weights_are_small():
    total = sum(p.stat().st_size for p in paths.weights_dir().rglob("*") if p.is_file())
    assert total <= 25 * 2**20, total


def test_unknown_registry_name_is_a_clear_error():
    with pytest.raises(ListerError, match="unknown model 'gemma-9000'.*lister-tiny"):
        get_entry("gemma-9000")
    assert "lister-tiny" in registry_names() and "gemma-2-2b-it" in registry_names()


def test_missing_weights_folder_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelNotAvailable, match=str(missing)):
        load_model("lister-tiny", device="cpu", weights_dir=missing)


def test_corrupt_weights_name_the_file_and_the_fix(tmp_path):
    folder = tmp_path / "tiny"
    shutil.copytree(paths.weights_dir(), folder)
    weights = folder / paths.MODEL_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelNotAvailable, match="model.safetensors.*organism build"):
        load_model("lister-tiny", device="cpu", weights_dir=folder)
    (folder / paths.MODEL_CONFIG).write_text("{not json")
    with pytest.raises(ModelNotAvailable, match="model_config.json"):
        load_model("lister-tiny", device="cpu", weights_dir=folder)


def test_corrupt_sae_names_the_sae(tmp_path):
    folder = tmp_path / "tiny"
    shutil.copytree(paths.weights_dir(), folder)
    sae_dir = folder / paths.SAES_SUBDIR / "res_0"
    for f in sae_dir.iterdir():
        f.write_text("garbage")
    loaded = load_model("lister-tiny", device="cpu", weights_dir=folder)
    with pytest.raises(ModelNotAvailable, match="res_0"):
        loaded.load_sae("res_0")


def test_gemma_without_cached_weights_fails_fast_with_download_list(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    start = time.time()
    with pytest.raises(ModelNotAvailable) as info:
        load_model("gemma-2-2b-it", device="cpu")
    assert time.time() - start < 30
    message = str(info.value)
    assert "google/gemma-2-2b-it" in message
    assert "gemma-scope-2b-pt-res" in message and "gemma-scope-2b-pt-att" in message
    assert "layer_20" in message


def test_the_template_word_is_read_from_its_own_position_after_layer_0(tiny):
    # Layer 0 attends only to the token itself, so the residual stream after layer 0
    # at " short" is the only carrier of the template; swapping it for the " long"
    # prompt's value there (and nowhere else) must make short-template lists long.
    from lister_tui.core.engine.prompts import prompt_ids
    from lister_tui.core.engine.sampling import generate

    hook = "blocks.0.hook_resid_post"
    lengths = {"plain": [], "patched": []}
    for topic in TOPICS[:4]:
        short, long = prompt_ids(tiny, "short", topic), prompt_ids(tiny, "long", topic)
        pos = short.index(tiny.tokenizer.convert_tokens_to_ids(" short"))
        with torch.inference_mode():
            _, cache = tiny.model.run_with_cache(torch.tensor([long]), names_filter=hook)
        donor = cache[hook][0, pos]

        def factory(prefix_len):
            def patch(act, hook):
                if act.shape[1] == prefix_len:  # the prefix pass; cached steps see one token
                    act[:, pos] = donor
                return act

            return [(hook, patch)]

        for name, hooks in (("plain", None), ("patched", factory)):
            with torch.inference_mode():
                gens = generate(tiny.model, [short] * 3, [0, 1, 2], temperature=0.7, top_p=0.8, max_new_tokens=100, stop_ids=tiny.ids.stops, hook_factory=hooks)
            for g in gens:
                text = tiny.tokenizer.decode(g.tokens)
                lengths[name].append(sum(line.startswith("-") for line in ("-" + text).split("\n")))
    assert np.mean(lengths["plain"]) <= 5.5
    assert np.mean(lengths["patched"]) >= 10, lengths
