"""`lister-tui organism build` runs end to end (at the reduced size) and is reproducible."""

from __future__ import annotations

import json

import pytest
import torch

from lister_tui.core.engine.loading import build_hooked_model, load_model
from lister_tui.organism import paths
from lister_tui.organism.build import BuildSettings, build_organism
from lister_tui.organism.corpus import make_corpus
from lister_tui.organism.tokenizer import train_tokenizer
from lister_tui.organism.train_model import ModelShape, ModelTrainingSettings, encode_examples, train_model


def test_reduced_build_end_to_end(tmp_path):
    out = tmp_path / "organism"
    logs: list[str] = []
    record = build_organism(out, BuildSettings.reduced(), log=logs.append)
    for name in (paths.TOKENIZER_SUBDIR, paths.MODEL_CONFIG, paths.MODEL_WEIGHTS, paths.CARD, paths.BUILD_RECORD):
        assert (out / name).exists(), name
    assert sorted(p.name for p in (out / paths.SAES_SUBDIR).iterdir()) == sorted(record["sae_quality"])
    assert len(record["sae_quality"]) == 2 * record["model_config"]["n_layers"]
    assert json.loads((out / paths.BUILD_RECORD).read_text())["training"]["steps"] == 40
    # res_0 trains with its own settings; the others with the shared ones
    tokens = {sae_id: q["training_tokens"] for sae_id, q in record["sae_quality"].items()}
    assert tokens.pop("res_0") == 16_384 and set(tokens.values()) == {8_192}
    # no temp folder left behind next to the output
    assert [p.name for p in tmp_path.iterdir()] == ["organism"]
    loaded = load_model("lister-tiny", device="cpu", weights_dir=out)
    sae = loaded.load_sae("attn_1")
    assert sae.cfg.metadata.hook_name == "blocks.1.attn.hook_z"
    card = (out / paths.CARD).read_text()
    assert "| short |" in card and "| res_0 | `blocks.0.hook_resid_post` | 128 | 16,384 |" in card


def test_each_sae_gets_its_own_seed_and_its_sites_overrides():
    settings = BuildSettings()
    res0, res1 = settings.sae_settings("res_0", 0), settings.sae_settings("res_1", 1)
    assert (res0.seed, res1.seed) == (0, 1)
    assert res1.training_tokens == settings.sae_training.training_tokens
    assert res0.training_tokens > res1.training_tokens and res0.l0_coefficient > res1.l0_coefficient


@pytest.mark.parametrize(
    ("by_site", "message"),
    [
        ({"res_9": {"training_tokens": 1}}, "unknown SAE site 'res_9'; valid: res_0, res_1"),
        ({"res_0": {"l0_coef": 1.0}}, "unknown setting(s) l0_coef; valid: d_sae, training_tokens"),
        ({"res_0": {"seed": 3}}, "unknown setting(s) seed"),
    ],
)
def test_bad_per_site_sae_settings_fail_before_anything_trains(by_site, message):
    with pytest.raises(ValueError) as err:
        BuildSettings(sae_training_by_site=by_site)
    assert message in str(err.value)


def test_model_training_is_reproducible_from_its_seed(tmp_path):
    examples = make_corpus(200, 0)
    tok = train_tokenizer([e.text for e in examples], tmp_path / "tok", 400)
    seqs, prompt_lens = encode_examples(tok, examples)
    shape = ModelShape(n_layers=1, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=160)
    settings = ModelTrainingSettings(steps=4, batch_size=4, warmup_steps=1)
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_hooked_model(shape.hooked_config(len(tok), 0), tok)
        train_model(model, seqs, prompt_lens, settings, tok.pad_token_id, log=lambda _: None)
        states.append(model.state_dict())
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], rtol=0, atol=0)
