"""The Gemma preset end to end, on a random model of the Gemma-2 architecture (no real weights).

`lister-tui sweep --model gemma-2-2b-it` runs through the registry entry (chat
template, token ids and stop tokens from the tokenizer, the study's SAE sites);
only `load_model` is replaced, by a random Gemma-2-architecture model and random
JumpReLU SAEs of the Gemma Scope kinds (tests/gemma_fixtures.py).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from lister_tui.cli import app

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def gemma_like(tmp_path_factory):
    from gemma_fixtures import build_loaded

    return build_loaded(tmp_path_factory.mktemp("gemma"), sae_sites=("res_0", "attn_2"))


def test_the_random_model_has_gemma_2s_architecture(gemma_like):
    from sae_lens import JumpReLUSAE

    cfg = gemma_like.model.cfg
    assert cfg.n_layers == 26 and cfg.n_key_value_heads < cfg.n_heads and cfg.gated_mlp
    assert cfg.normalization_type == "RMS" and cfg.use_normalization_before_and_after
    assert cfg.attn_scores_soft_cap == 50.0 and cfg.output_logits_soft_cap == 30.0
    assert cfg.attn_types[:2] == ["local", "global"]
    for sae_id, hook, reshape in (("res_0", "blocks.0.hook_resid_post", "none"), ("attn_2", "blocks.2.attn.hook_z", "hook_z")):
        sae = gemma_like.load_sae(sae_id)
        assert type(sae) is JumpReLUSAE and sae.cfg.metadata.hook_name == hook and sae.cfg.reshape_activations == reshape
    tok = gemma_like.tokenizer
    assert [tok.convert_ids_to_tokens(i) for i in (0, 1, 2)] == ["<pad>", "<eos>", "<bos>"]
    assert gemma_like.ids.stops == (tok.convert_tokens_to_ids("<end_of_turn>"), tok.convert_tokens_to_ids("<eos>"))


def test_sweep_runs_end_to_end_on_the_gemma_preset(gemma_like, tmp_path, monkeypatch):
    import lister_tui.core.engine.loading as loading

    calls = []

    def fake_load_model(entry, device=None, dtype=None, weights_dir=None):
        calls.append((entry.name, device, dtype))
        return gemma_like

    monkeypatch.setattr(loading, "load_model", fake_load_model)
    out = tmp_path / "out"
    args = ["sweep", "--model", "gemma-2-2b-it", "--sae", "res_0,attn_2", "--topic", "Fruits", "--samples", "1",
            "--max-new-tokens", "30", "--device", "cpu", "--dtype", "float32", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert calls == [("gemma-2-2b-it", "cpu", "float32")]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert manifest["model"]["name"] == "gemma-2-2b-it" and manifest["model"]["n_layers"] == 26
    assert manifest["model"]["saes"] == {"res_0": "blocks.0.hook_resid_post", "attn_2": "blocks.2.attn.hook_z"}
    assert manifest["settings"]["steering_layer"] == 0  # the entry's earliest residual SAE
    by_condition = pd.read_parquet(out / "by_condition.parquet")
    assert by_condition["condition"].tolist() == ["ablate res_0", "ablate attn_2", "ban blank+end", "ban end", "steer layer 0 x8"]
    generations = pd.read_parquet(out / "generations.parquet")
    assert set(generations["condition"]) == {"base", *by_condition["condition"]}
    assert generations["n_items"].gt(0).all()
    faithfulness = pd.read_parquet(out / "faithfulness_by_sae.parquet")
    assert faithfulness["sae"].tolist() == ["res_0", "attn_2"]
    for name in ("by_condition_and_topic", "by_topic", "faithfulness_pairs"):
        assert len(pd.read_csv(out / f"{name}.csv")) > 0
