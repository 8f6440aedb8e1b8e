"""Your model is your model: a folder's config.json decides the architecture, and the loaded model
is checked against transformers' model from the same folder (offline, HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import json

import pytest
import torch

from lister_tui.core.errors import ListerError
from tests.own_models import ARCHITECTURE_OF, configs, folder_entry, write_model


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("LISTER_TUI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))


@torch.no_grad()
def _transformers_logits(folder, ids):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()(ids).logits


@pytest.mark.parametrize("name", list(ARCHITECTURE_OF))
def test_each_architecture_loads_from_its_folder_and_runs_as_transformers_does(tmp_path, name):
    from lister_tui.core.engine.pretrained import load_pretrained

    folder = write_model(tmp_path / name, name)
    model, _tokenizer, parity = load_pretrained(folder_entry(folder), "cpu", torch.float32)
    assert parity.ok and parity.architecture == ARCHITECTURE_OF[name] and parity.max_abs_diff <= parity.tolerance
    # beyond the load's own probe: another token sequence, 40 tokens (past the sliding windows of 5)
    ids = torch.randint(4, 2048, (2, 40), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ours = model(ids)
    theirs = _transformers_logits(folder, ids)
    assert (ours - theirs).abs().max().item() < 1e-4 * max(1.0, theirs.abs().max().item())
    cfg, hf = model.cfg, json.loads((folder / "config.json").read_text())
    assert cfg.d_vocab == 2048 and cfg.original_architecture == ARCHITECTURE_OF[name]
    if "head_dim" in hf:
        assert cfg.d_head == hf["head_dim"] == 16  # not hidden_size / heads (12)


@pytest.mark.parametrize("name", ["llama", "gemma2"])
def test_bfloat16_loads_within_its_tolerance_and_the_check_is_cached(tmp_path, name):
    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.engine.pretrained import load_pretrained

    folder = write_model(tmp_path / name, name)
    loaded = load_model(folder_entry(folder), device="cpu", dtype="bfloat16")
    parity = loaded.parity
    assert parity["ok"] and parity["dtype"] == "bfloat16" and not parity["cached"] and parity["max_abs_diff"] > 0
    _model, _tok, again = load_pretrained(folder_entry(folder), "cpu", torch.bfloat16)
    assert again.cached and again.max_abs_diff == parity["max_abs_diff"]
    (folder / "config.json").write_text((folder / "config.json").read_text() + "\n")  # another folder fingerprint
    _model, _tok, fresh = load_pretrained(folder_entry(folder), "cpu", torch.bfloat16)
    assert not fresh.cached


def test_a_model_transformer_lens_converts_wrongly_is_refused_with_the_figure(tmp_path):
    """Llama with attention biases: TransformerLens's Llama conversion drops them, so its logits differ."""
    import transformers as T

    from lister_tui.core.engine.loading import load_model

    config = T.LlamaConfig(vocab_size=2048, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
                           max_position_embeddings=128, attention_bias=True)  # fmt: skip
    folder = write_model(tmp_path / "biased", "llama", config=config)
    with pytest.raises(ListerError) as refused:
        load_model(folder_entry(folder), device="cpu", dtype="float32")
    message = str(refused.value)
    assert "largest |logit difference|" in message and "tolerance" in message and "LlamaForCausalLM" in message
    figure = float(message.split("largest |logit difference| ")[1].split()[0])
    assert figure > 0.01  # far above float32's tolerance (about 2e-4 here)


def test_an_architecture_that_cannot_be_mapped_is_refused_naming_it_and_the_list(tmp_path):
    from lister_tui.core.engine.hf_config import tl_config_dict

    folder = write_model(tmp_path / "gpt2", "gpt2")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["FalconForCausalLM"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ListerError, match="'FalconForCausalLM' cannot be mapped.*supported: GPT2LMHeadModel, GPTNeoXForCausalLM, LlamaForCausalLM"):
        tl_config_dict(folder)


# The hub's config.json of three models (copied from each repo): the folder's mapping must give
# TransformerLens's own table for them, setting by setting (the reference).
HUB_CONFIGS = {
    "google/gemma-2-2b-it": {
        "architectures": ["Gemma2ForCausalLM"], "attention_bias": False, "attn_logit_softcapping": 50.0, "bos_token_id": 2,
        "eos_token_id": [1, 107], "final_logit_softcapping": 30.0, "head_dim": 256, "hidden_act": "gelu_pytorch_tanh",
        "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 2304, "initializer_range": 0.02, "intermediate_size": 9216,
        "max_position_embeddings": 8192, "model_type": "gemma2", "num_attention_heads": 8, "num_hidden_layers": 26,
        "num_key_value_heads": 4, "pad_token_id": 0, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
        "sliding_window": 4096, "vocab_size": 256000,
    },
    "google/gemma-3-1b-it": {
        "architectures": ["Gemma3ForCausalLM"], "attention_bias": False, "attn_logit_softcapping": None, "bos_token_id": 2,
        "eos_token_id": [1, 106], "final_logit_softcapping": None, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": 1152, "initializer_range": 0.02, "intermediate_size": 6912, "max_position_embeddings": 32768,
        "model_type": "gemma3_text", "num_attention_heads": 4, "num_hidden_layers": 26, "num_key_value_heads": 1, "pad_token_id": 0,
        "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000, "rope_scaling": None,
        "rope_theta": 1000000, "sliding_window": 512, "sliding_window_pattern": 6, "vocab_size": 262144,
    },
    "meta-llama/Llama-3.2-1B-Instruct": {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
        "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048, "intermediate_size": 8192, "max_position_embeddings": 131072,
        "mlp_bias": False, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192, "rope_type": "llama3"}, "rope_theta": 500000.0, "tie_word_embeddings": True,
        "vocab_size": 128256,
    },
}  # fmt: skip
SETTINGS = (
    "d_model", "n_layers", "n_heads", "d_head", "d_mlp", "d_vocab", "n_key_value_heads", "eps", "act_fn", "normalization_type",
    "positional_embedding_type", "rotary_dim", "rotary_base", "rotary_base_local", "rotary_adjacent_pairs", "use_attn_scale",
    "attn_scale", "use_local_attn", "window_size", "attn_types", "attn_scores_soft_cap", "output_logits_soft_cap", "gated_mlp",
    "final_rms", "use_normalization_before_and_after", "use_qk_norm", "use_NTK_by_parts_rope", "NTK_by_parts_factor",
    "NTK_by_parts_low_freq_factor", "NTK_by_parts_high_freq_factor", "NTK_original_ctx_len", "rotary_scaling_factor",
)  # fmt: skip


@pytest.mark.parametrize("repo", list(HUB_CONFIGS))
def test_the_hub_configs_map_to_transformer_lens_own_table(tmp_path, repo):
    from transformer_lens import loading_from_pretrained as tl_loading

    from lister_tui.core.engine.hf_config import tl_config

    (tmp_path / "config.json").write_text(json.dumps(HUB_CONFIGS[repo]))
    ours = tl_config(tmp_path, "cpu", torch.float32).to_dict()
    table = tl_loading.get_pretrained_model_config(repo, fold_ln=False, device="cpu", default_prepend_bos=False).to_dict()
    differ = {k: (ours[k], table[k]) for k in SETTINGS if float_or(ours[k]) != float_or(table[k])}
    assert differ == {}


def float_or(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def test_a_folder_named_after_a_hub_model_keeps_its_own_settings(tmp_path):
    """The issue's case: a Llama-style folder named after Llama-3.2-1B gets the folder's scale, rope and eps."""
    from lister_tui.core.engine.hf_config import tl_config

    mine = dict(HUB_CONFIGS["meta-llama/Llama-3.2-1B-Instruct"], head_dim=16, hidden_size=64, num_attention_heads=4,
                num_key_value_heads=2, rope_theta=10000.0, rope_scaling=None, rms_norm_eps=1e-4)  # fmt: skip
    folder = tmp_path / "Llama-3.2-1B-Instruct"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(mine))
    cfg = tl_config(folder, "cpu", torch.float32)
    assert (cfg.d_head, cfg.attn_scale, cfg.rotary_base, cfg.eps, cfg.use_NTK_by_parts_rope) == (16, 4.0, 10000.0, 1e-4, False)


def test_a_session_records_the_parity_of_its_model(tmp_path):
    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.sessions.schema import ModelInfo

    folder = write_model(tmp_path / "llama", "llama")
    loaded = load_model(folder_entry(folder), device="cpu", dtype="float32")
    info = ModelInfo.from_loaded(loaded)
    recorded = json.loads(json.dumps(info.to_dict()))["parity"]
    assert recorded == loaded.parity and recorded["ok"] and recorded["architecture"] == "LlamaForCausalLM"
    assert ModelInfo.from_dict(json.loads(json.dumps(info.to_dict()))).parity == recorded


def test_a_multimodal_gemma_3_folder_loads_its_text_model_as_transformers_runs_it(tmp_path):
    """Gemma3ForConditionalGeneration (Gemma 3 4B and up): the text model, its config under text_config."""
    import shutil

    import transformers as T

    from lister_tui.core.engine.pretrained import load_pretrained
    from lister_tui.organism.paths import weights_dir

    text = T.Gemma3TextConfig(vocab_size=2048, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=24, sliding_window=5,
                              layer_types=["sliding_attention", "full_attention"], max_position_embeddings=128)  # fmt: skip
    vision = T.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14)
    config = T.Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4,
                            image_token_index=7, boi_token_index=8, eoi_token_index=9)  # fmt: skip
    config.architectures = ["Gemma3ForConditionalGeneration"]
    torch.manual_seed(0)
    model = T.Gemma3ForConditionalGeneration(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    folder = tmp_path / "gemma3mm"
    model.save_pretrained(str(folder))
    shutil.copytree(weights_dir() / "tokenizer", folder, dirs_exist_ok=True)
    ours, _tok, parity = load_pretrained(folder_entry(folder), "cpu", torch.float32)
    assert parity.ok and parity.architecture == "Gemma3ForConditionalGeneration" and ours.cfg.d_model == 48
