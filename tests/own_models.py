"""Tiny random Hugging Face models of every supported architecture, saved with transformers'
``save_pretrained`` (non-default head dim, rope base and eps; tied and untied embeddings), with
lister-tiny's tokenizer and Gemma's chat template: a researcher's own model folder in miniature."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch

from tests.gemma_fixtures import GEMMA_CHAT_TEMPLATE

VOCAB = 2048  # lister-tiny's tokenizer
_COMMON = dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=128)


def configs() -> dict:
    import transformers as T

    return {
        "gpt2": T.GPT2Config(vocab_size=VOCAB, n_embd=48, n_layer=2, n_head=4, n_positions=64, layer_norm_epsilon=1e-4, bos_token_id=2, eos_token_id=1,
                             activation_function="gelu_new"),
        "neox": T.GPTNeoXConfig(**{**_COMMON, "hidden_size": 64}, layer_norm_eps=1e-4, rope_theta=5000.0, partial_rotary_factor=0.5),
        "llama": T.LlamaConfig(**_COMMON, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-4, rope_theta=5e5, tie_word_embeddings=True,
                               rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                             "original_max_position_embeddings": 64}),
        "mistral": T.MistralConfig(**_COMMON, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-4, rope_theta=2e4, sliding_window=5),
        "qwen2": T.Qwen2Config(**_COMMON, num_key_value_heads=2, rms_norm_eps=1e-4, rope_theta=3e4, tie_word_embeddings=True),
        "qwen3": T.Qwen3Config(**_COMMON, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-4, rope_theta=3e4),
        "gemma": T.GemmaConfig(**_COMMON, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-4, rope_theta=3e4),
        "gemma2": T.Gemma2Config(**_COMMON, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-4, rope_theta=3e4, query_pre_attn_scalar=24,
                                 sliding_window=5, final_logit_softcapping=3.0, attn_logit_softcapping=5.0, tie_word_embeddings=False),
        "gemma3": T.Gemma3TextConfig(**_COMMON, num_key_value_heads=1, head_dim=16, rms_norm_eps=1e-4, query_pre_attn_scalar=24, sliding_window=5,
                                     layer_types=["sliding_attention", "full_attention"],
                                     rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 7000.0},
                                                      "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 2e5}}),
    }  # fmt: skip


ARCHITECTURE_OF = {
    "gpt2": "GPT2LMHeadModel", "neox": "GPTNeoXForCausalLM", "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM", "gemma3": "Gemma3ForCausalLM",
}  # fmt: skip


@torch.no_grad()
def write_model(folder: Path, name: str, config=None, seed: int = 0, chat_template: bool = True, max_shard_size: str = "5GB") -> Path:
    """A random model of architecture ``name`` saved to ``folder`` with a tokenizer (weights perturbed off their init)."""
    from transformers import AutoModelForCausalLM

    from lister_tui.organism.paths import weights_dir

    config = config if config is not None else configs()[name]
    config.architectures = [ARCHITECTURE_OF[name]]
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_config(config)
        for p in model.parameters():  # norms and biases start at 1 / 0: move them so every weight matters
            p.add_(torch.randn_like(p) * 0.05)
        model.save_pretrained(str(folder), max_shard_size=max_shard_size)
    shutil.copytree(weights_dir() / "tokenizer", folder, dirs_exist_ok=True)
    import json

    tok_cfg = json.loads((folder / "tokenizer_config.json").read_text())
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"  # as saved, not the model type's own class (Qwen2's splits " ")
    if chat_template:
        tok_cfg["chat_template"] = GEMMA_CHAT_TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    return folder


def folder_entry(folder: Path, name: str = "mine", **kw):
    """A registry entry for a local folder, as a TOML file with ``folder = …`` makes it."""
    from lister_tui.core.engine.entries import ModelEntry

    return ModelEntry(name=name, description="test", source="pretrained", sites=(), hf_folder=Path(folder), default_dtype="float32",
                      stop_tokens=("<end_of_turn>", "<eos>"), use_tokenizer_chat_template=True, **kw)  # fmt: skip
