"""Transcoder sets: registry entries, TOML sets, loading (shipped, local folders), ln2-gain folding."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lister_tui.core.engine.registry import get_entry
from lister_tui.core.engine.registry_file import parse_entry
from lister_tui.core.engine.transcoders import (
    download_lines,
    fold_ln_gain,
    is_transcoder_site,
    layer_of_site,
    load_transcoders,
    set_sites,
    site_id,
    transcoder_set,
)
from lister_tui.core.errors import ListerError, ModelNotAvailable


def random_transcoder(d_in: int = 16, d_sae: int = 24, d_out: int = 16, layer: int = 0, seed: int = 0):
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.transcoder import JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig

    cfg = JumpReLUSkipTranscoderConfig(
        d_in=d_in, d_sae=d_sae, d_out=d_out, apply_b_dec_to_input=False,
        metadata=SAEMetadata(hook_name=f"blocks.{layer}.ln2.hook_normalized", hook_name_out=f"blocks.{layer}.hook_mlp_out"),
    )  # fmt: skip
    tc = JumpReLUSkipTranscoder(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in tc.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        tc.threshold.fill_(0.05)
    return tc


def test_site_ids_name_a_layer():
    assert site_id(2) == "tc_2" and layer_of_site("tc_17") == 17
    assert is_transcoder_site("tc_0") and not is_transcoder_site("res_0") and not is_transcoder_site("tc_x")
    with pytest.raises(ListerError, match="tc_L"):
        layer_of_site("attn_2")


def test_builtin_entries_name_transcoder_sets_for_every_layer():
    tiny = transcoder_set(get_entry("lister-tiny"))
    assert tiny.layers == (0, 1, 2, 3) and tiny.release is None and tiny.path is None
    gemma2 = get_entry("gemma-2-2b-it")
    sites = set_sites(gemma2, transcoder_set(gemma2))
    assert [s.layer for s in sites] == list(range(26))
    # one 16k transcoder per layer, resolved in the installed SAELens directory (as circuit-tracer's set)
    assert all(re.fullmatch(rf"layer_{s.layer}/width_16k/average_l0_\d+", s.sae_id) for s in sites)
    assert {s.release for s in sites} == {"gemma-scope-2b-pt-transcoders"}
    assert transcoder_set(get_entry("gemma-2-2b-it-study")) == transcoder_set(gemma2)
    for name, n in (("gemma-3-1b-it", 26), ("gemma-3-4b-it", 34)):
        entry = get_entry(name)
        sites = set_sites(entry, transcoder_set(entry))
        assert [s.layer for s in sites] == list(range(n))
        assert sites[5].sae_id == "layer_5_width_16k_l0_small_affine"
        assert download_lines(entry, transcoder_set(entry)) == [
            f"  hf download google/gemma-scope-2-{name.split('-')[2]}-it --include 'transcoder_all/layer_*_width_16k_l0_small_affine/*'"
        ]


def test_an_entry_without_transcoders_is_refused_with_what_has_them():
    with pytest.raises(ListerError, match="names no transcoder set.*lister-tiny, gemma-2-2b-it"):
        load_transcoders("gemma-2-9b-it")
    with pytest.raises(ListerError, match="no transcoder set 'nope'; valid: lister-tiny"):
        load_transcoders("lister-tiny", "nope")
    with pytest.raises(ListerError, match="has no layer 7; layers: 0, 1, 2, 3"):
        load_transcoders("lister-tiny", layers=(7,))


def test_a_shipped_folder_without_transcoders_says_how_to_make_them(tmp_path):
    entry = replace(get_entry("lister-tiny"), weights_dir=tmp_path)
    with pytest.raises(ModelNotAvailable, match="missing at .*mlp_0; run `lister-tui organism transcoders`"):
        load_transcoders(entry, layers=(0,))


def _toml_entry(tmp_path: Path, body: str):
    import tomllib

    path = tmp_path / "registry.toml"
    path.write_text(body)
    data = tomllib.loads(body)
    name, table = next(iter(data["models"].items()))
    return parse_entry(name, table, path)


def test_a_toml_entry_loads_transcoders_from_a_local_folder(tmp_path):
    for layer in (0, 1):
        random_transcoder(layer=layer, seed=layer).save_model(tmp_path / "tcs" / f"layer{layer}")
    entry = _toml_entry(
        tmp_path,
        f"""
[models.mine]
model = "gpt2"
[[models.mine.transcoders]]
id = "local"
layers = 2
path = "{tmp_path / 'tcs'}"
folder = "layer{{layer}}"
""",
    )
    loaded = load_transcoders(entry)
    assert sorted(loaded) == [0, 1]
    tc = loaded[1]
    assert type(tc).__name__ == "JumpReLUSkipTranscoder" and not tc.training and tc.W_enc.dtype == torch.float32
    assert not any(p.requires_grad for p in tc.parameters())
    assert (tc.cfg.metadata.hook_name, tc.cfg.metadata.hook_name_out) == ("blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out")
    # the saved weights, not fresh ones
    torch.testing.assert_close(tc.W_skip, random_transcoder(layer=1, seed=1).W_skip)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('id = "a"\nlayers = 0\npath = "x"', "'transcoders[0].layers': must be the number of layers"),
        ('id = "a"\nlayers = 2', "'transcoders[0].path': give either path"),
        ('id = "a"\nlayers = 2\npath = "x"\nfolder = "mlp"', "'transcoders[0].folder': must be text holding {layer}"),
        ('id = "a"\nlayers = 2\npath = "x"\nwidth = 3', "'transcoders[0].width': unknown; valid:"),
        ('id = "a"\nlayers = 2\nrelease = "r"', "'transcoders[0].sae_id': release and sae_id go together"),
    ],
)
def test_bad_transcoder_tables_name_the_field(tmp_path, table, message):
    with pytest.raises(ListerError) as err:
        _toml_entry(tmp_path, f'[models.mine]\nmodel = "gpt2"\n[[models.mine.transcoders]]\n{table}\n')
    assert message in str(err.value)


def test_a_set_that_is_not_a_transcoder_is_refused(tmp_path):
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    JumpReLUSAE(JumpReLUSAEConfig(d_in=8, d_sae=4, metadata=SAEMetadata(hook_name="blocks.0.hook_mlp_out"))).save_model(tmp_path / "mlp_0")
    entry = _toml_entry(tmp_path, f'[models.m]\nmodel = "gpt2"\n[[models.m.transcoders]]\nid = "a"\nlayers = 1\npath = "{tmp_path}"\n')
    with pytest.raises(ListerError, match="is a JumpReLUSAE, not a SAELens transcoder"):
        load_transcoders(entry)


def test_folding_ln2_gain_and_bias_reads_the_normalised_input():
    tc = random_transcoder()
    g = torch.Generator().manual_seed(1)
    gain, bias = torch.rand(16, generator=g) + 0.5, torch.randn(16, generator=g)
    x = torch.randn(6, 16, generator=g)
    expected = tc(x * gain + bias)
    folded = fold_ln_gain(tc, gain, bias)
    torch.testing.assert_close(folded(x), expected, rtol=1e-5, atol=1e-5)


# --- the shipped transcoders ------------------------------------------------------------


def test_shipped_transcoders_load_and_predict_their_mlps():
    from lister_tui.core.engine.loading import load_model
    from lister_tui.organism.corpus import make_corpus
    from lister_tui.organism.train_model import encode_examples

    lab = load_model("lister-tiny", device="cpu")
    transcoders = load_transcoders(lab)
    assert sorted(transcoders) == [0, 1, 2, 3]
    example = make_corpus(3, 7)  # lists the transcoders never saw (seed 7)
    seqs, _ = encode_examples(lab.tokenizer, example)
    tokens = torch.tensor([seqs[0]])
    names = [f"blocks.{l}.{h}" for l in range(4) for h in ("ln2.hook_normalized", "hook_mlp_out")]
    _, cache = lab.model.run_with_cache(tokens, names_filter=names)
    for layer, tc in transcoders.items():
        assert type(tc).__name__ == "JumpReLUSkipTranscoder" and not tc.training and tc.cfg.d_sae <= 512
        assert tc.cfg.metadata.hook_name == f"blocks.{layer}.ln2.hook_normalized"
        x, y = cache[f"blocks.{layer}.ln2.hook_normalized"][0], cache[f"blocks.{layer}.hook_mlp_out"][0]
        with torch.no_grad():
            y_hat, acts = tc.forward_with_activations(x)
        explained = 1 - (y - y_hat).pow(2).sum() / (y - y.mean(0)).pow(2).sum()
        assert explained > 0.9, (layer, float(explained))
        assert 0 < (acts > 0).sum(-1).float().mean() < 40  # sparse
    # the same transcoder through the feature-card path (site tc_2)
    assert lab.entry.site("tc_2").hook_name == "blocks.2.ln2.hook_normalized"
    torch.testing.assert_close(lab.load_sae("tc_2").W_enc, transcoders[2].W_enc)


def test_a_transcoder_card_cache_key_changes_with_its_weights():
    from lister_tui.core.engine.fingerprint import weights_fingerprint

    files = weights_fingerprint(get_entry("lister-tiny"), ["tc_1"])["sha256"]
    assert "transcoders/mlp_1/sae_weights.safetensors" in files


def test_the_shipped_card_is_the_record_rendered():
    import json

    from lister_tui.organism import paths
    from lister_tui.organism.card import render_card

    record = json.loads((paths.SHIPPED_DIR / paths.BUILD_RECORD).read_text())
    assert render_card(record) == (paths.SHIPPED_DIR / paths.CARD).read_text()
    assert set(record["transcoder_quality"]) == {"tc_0", "tc_1", "tc_2", "tc_3"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tc_2", "512"], "feature 512 is out of range for tc_2; valid: 0..511"),
        (["tc_9", "1"], "transcoders tc_L for layers 0, 1, 2, 3"),
    ],
)
def test_feature_refuses_a_bad_transcoder_site_before_loading(args, message, monkeypatch):
    from typer.testing import CliRunner

    from lister_tui.cli import app
    from lister_tui.core.engine import loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model loaded"))
    result = CliRunner().invoke(app, ["feature", *args, "--device", "cpu"])
    assert result.exit_code == 2 and message in " ".join(result.output.split())
