"""The real pretrained path, offline: a local Hugging Face cache (hub layout) of small random Gemma 2,
Gemma 3 and Llama 3.2 models with SAEs in Gemma Scope's, Gemma Scope 2's and SAELens' own formats,
loaded and swept through `lister-tui sweep` exactly as on a GPU server (HF_HUB_OFFLINE=1).

It runs in one fresh process (tests/pretrained_cache_run.py) so that HF_HOME is set before any hub
client reads it; building the cache and the three sweeps take about 40 s of CPU (imports included).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("hfcache")
    env = {**os.environ, "HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "LISTER_TUI_CONFIG_DIR": str(root / "config"), "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    env.pop("LISTER_TUI_REGISTRY", None)
    done = subprocess.run([sys.executable, str(HERE / "pretrained_cache_run.py"), str(root)], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (root / "hf" / "hub" / "models--google--gemma-2-2b-it" / "refs" / "main").is_file()
    return json.loads((root / "report.json").read_text())


def _sweep_ok(run: dict) -> dict:
    assert run["exit_code"] == 0, run["output"]
    out = Path(run["out"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True
    generations = pd.read_parquet(out / "generations.parquet")
    base = generations[generations["condition"] == "base"]
    assert len(base) == 2 and base["n_items"].gt(0).all()  # the random models write lists
    return manifest


def test_gemma_2_with_gemma_scope_npz_saes(report):
    run = report["gemma-2-2b-it"]
    manifest = _sweep_ok(run)
    loaded = run["loaded"]
    # TransformerLens's Gemma 2 architecture, with the cached config.json's sizes
    assert loaded["architecture"] == "Gemma2ForCausalLM" and loaded["n_layers"] == 26 and loaded["d_model"] == 32
    assert loaded["n_key_value_heads"] == 2
    # params.npz read by SAELens' Gemma Scope loader, sized from the file
    assert loaded["saes"]["res_0"] == {"class": "JumpReLUSAE", "hook": "blocks.0.hook_resid_post", "d_in": 32, "d_sae": 48, "reshape": "none"}
    assert loaded["saes"]["attn_2"]["hook"] == "blocks.2.attn.hook_z" and loaded["saes"]["attn_2"]["reshape"] == "hook_z"
    sites = {s["id"]: s for s in manifest["model"]["entry"]["sites"]}
    assert sites["res_0"]["release"] == "gemma-scope-2b-pt-res-canonical" and sites["res_0"]["sae_id"] == "layer_0/width_16k/canonical"
    assert pd.read_parquet(Path(run["out"]) / "by_condition.parquet")["condition"].tolist() == ["ablate res_0", "ablate attn_2"]


def test_gemma_3_with_gemma_scope_2_saes(report):
    run = report["gemma-3-1b-it"]
    _sweep_ok(run)
    loaded = run["loaded"]
    assert loaded["architecture"] == "Gemma3ForCausalLM" and loaded["n_layers"] == 26 and loaded["n_key_value_heads"] == 1
    assert loaded["saes"]["res_7"]["hook"] == "blocks.7.hook_resid_post" and loaded["saes"]["res_7"]["d_sae"] == 48
    # Gemma Scope 2's attention SAEs read attn.hook_z flattened over heads
    assert loaded["saes"]["attn_13"] == {"class": "JumpReLUSAE", "hook": "blocks.13.attn.hook_z", "d_in": 32, "d_sae": 48, "reshape": "hook_z"}


def test_llama_from_a_toml_entry_with_saelens_folders_numbered_lists_and_an_adhoc_sae(report):
    run = report["tiny-llama"]
    manifest = _sweep_ok(run)
    loaded = run["loaded"]
    assert loaded["architecture"] == "LlamaForCausalLM" and loaded["n_layers"] == 4 and loaded["style"] == "1."
    assert loaded["saes"]["mlp_2"]["hook"] == "blocks.2.hook_mlp_out"
    assert loaded["saes"]["res_3"]["hook"] == "blocks.3.hook_resid_post"  # the ad-hoc --sae folder
    assert manifest["settings"]["saes"] == ["mlp_2", "res_1", "res_3"]
    sites = {s["id"]: s for s in manifest["model"]["entry"]["sites"]}
    assert set(sites) == {"res_1", "mlp_2", "res_3"} and "sha256" in sites["res_3"]["fingerprint"]
    assert manifest["model"]["entry"]["list_marker"] == "1."


@pytest.mark.parametrize(
    ("name", "cls", "download"),
    [
        ("gemma-2-2b-it", "JumpReLUTranscoder", "hf download google/gemma-scope-2b-pt-transcoders --include 'layer_*/width_16k/average_l0_*/*'"),
        ("gemma-3-1b-it", "JumpReLUSkipTranscoder", "hf download google/gemma-scope-2-1b-it --include 'transcoder_all/layer_*_width_16k_l0_small_affine/*'"),
    ],
)
def test_gemma_transcoder_sets_load_from_the_cache_for_every_layer(report, name, cls, download):
    seen = report["transcoders"][name]
    assert seen["layers"] == list(range(26)) and seen["classes"] == [cls]
    assert seen["hooks"] == ["blocks.25.ln2.hook_normalized", "blocks.25.hook_mlp_out"]
    assert seen["shape"] == [32, 40, 32] and seen["dtype"] == "torch.float32"
    # ln2's gain folded in: the loaded transcoder reads hook_normalized as the hub's reads ln2's output
    assert seen["gain_matters"] > 1e-3 and seen["fold_error"] < 1e-5
    assert "; here" in seen["models_output"] and download in seen["models_output"]
