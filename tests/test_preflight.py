"""Every setup mistake of a run is named before its first sample: one clear error naming the file and
the field, exit 2, no traceback, no output folder (`lister-tui sweep` on a model folder of one's own)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lister_tui.cli import app
from tests.gemma_fixtures import write_saelens_folder


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LISTER_TUI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("LISTER_TUI_REGISTRY", raising=False)


@pytest.fixture(scope="module")
def list_writing_folder(tmp_path_factory):
    """A Gemma 2 architecture folder (26 layers, d_model 32) whose bigram path writes lists."""
    from tests.gemma_fixtures import build_family_tokenizer, write_hf_model

    folder = tmp_path_factory.mktemp("own") / "gemma2"
    write_hf_model(folder, "gemma2", build_family_tokenizer(folder, "gemma2"))
    return folder


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    """A 2-layer Gemma 2 folder (d_model 48): enough for mistakes found before any sample."""
    from tests.own_models import write_model

    return write_model(tmp_path_factory.mktemp("own") / "small", "gemma2")


def _run(tmp_path, folder, site_hook: str, sae_hook: str, d_in: int, cut_weights: bool = False) -> tuple:
    sae = tmp_path / "saes" / "res_1"
    write_saelens_folder(sae, sae_hook, d_in=d_in, d_sae=24)
    if cut_weights:
        weights = sae / "sae_weights.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    registry = tmp_path / "reg.toml"
    registry.write_text(
        f'[models.mine]\nfolder = "{folder}"\ndtype = "float32"\n'
        f'[[models.mine.sites]]\nid = "res_1"\npath = "{sae}"\nhook = "{site_hook}"\n'
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["--registry", str(registry), "sweep", "--model", "mine", "--sae", "res_1", "--topic", "Fruits",
                                      "--samples", "1", "--max-new-tokens", "24", "--device", "cpu", "--no-steering",
                                      "--no-restricted", "--no-faithfulness", "--out", str(out)], env={"COLUMNS": "200"})  # fmt: skip
    return result, out, sae


@pytest.mark.slow
def test_a_sound_setup_samples(tmp_path, list_writing_folder):
    result, out, _sae = _run(tmp_path, list_writing_folder, "blocks.1.hook_resid_post", "blocks.1.hook_resid_post", d_in=32)
    assert result.exit_code == 0, result.output
    assert (out / "manifest.json").is_file()
    import json

    parity = json.loads((out / "manifest.json").read_text())["model"]["parity"]
    assert parity["ok"] and parity["architecture"] == "Gemma2ForCausalLM" and parity["max_abs_diff"] <= parity["tolerance"]


@pytest.mark.parametrize(
    ("mistake", "expect"),
    [
        ("d_in", ["field 'd_in': 32", "width 48 (d_model)"]),
        ("hook", ["reads 'blocks.0.hook_resid_post'", "site says 'blocks.1.hook_resid_post'"]),
        ("unreadable", ["res_1", "unreadable"]),
        ("layer", ["layer 5 does not exist", "layers 0..1"]),
        ("chat_template", ["chat template", "field 'chat_template'"]),
    ],
)
def test_each_mistake_is_one_error_before_any_sample(tmp_path, small_folder, mistake, expect):
    from tests.own_models import write_model

    folder = small_folder
    site = sae_hook = "blocks.1.hook_resid_post"
    d_in = 48
    if mistake == "d_in":
        d_in = 32
    elif mistake == "hook":
        sae_hook = "blocks.0.hook_resid_post"
    elif mistake == "layer":
        site = sae_hook = "blocks.5.hook_resid_post"
    elif mistake == "chat_template":
        folder = write_model(tmp_path / "no_template", "gemma2", chat_template=False)
    result, out, _sae = _run(tmp_path, folder, site, sae_hook, d_in, cut_weights=mistake == "unreadable")
    assert result.exit_code == 2, result.output
    for piece in expect:
        assert piece in result.output.replace("\n", " "), (piece, result.output)
    assert "Traceback" not in result.output and not (out / "generations.parquet").exists()

