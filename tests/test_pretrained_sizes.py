"""The pretrained loader reads sizes from the weights' config.json; for the hub's own models that must
change nothing in TransformerLens's architecture table (values copied from each repo's config.json)."""

from __future__ import annotations

import pytest

HUB_CONFIGS = {
    # google/gemma-2-2b-it/config.json
    "google/gemma-2-2b-it": {"hidden_size": 2304, "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
                             "head_dim": 256, "intermediate_size": 9216, "vocab_size": 256000, "sliding_window": 4096},
    # google/gemma-3-1b-it/config.json
    "google/gemma-3-1b-it": {"hidden_size": 1152, "num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 1,
                             "head_dim": 256, "intermediate_size": 6912, "vocab_size": 262144, "sliding_window": 512},
}  # fmt: skip


@pytest.mark.parametrize("name", list(HUB_CONFIGS))
def test_hub_sizes_leave_transformer_lens_config_unchanged(name):
    from transformer_lens import loading_from_pretrained as tl_loading

    from lister_tui.core.engine.pretrained import config_with_sizes

    cfg = tl_loading.get_pretrained_model_config(name, fold_ln=False, device="cpu", default_prepend_bos=False)
    assert config_with_sizes(cfg, HUB_CONFIGS[name]).to_dict() == cfg.to_dict()


def test_shrunk_sizes_are_taken_and_layer_pattern_follows():
    from transformer_lens import loading_from_pretrained as tl_loading

    from lister_tui.core.engine.pretrained import config_with_sizes

    cfg = tl_loading.get_pretrained_model_config("google/gemma-2-2b-it", fold_ln=False, device="cpu", default_prepend_bos=False)
    small = config_with_sizes(cfg, {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
                                    "head_dim": 8, "intermediate_size": 64, "vocab_size": 300, "sliding_window": 8})  # fmt: skip
    assert (small.d_model, small.n_layers, small.n_heads, small.d_head, small.d_mlp, small.d_vocab, small.window_size) == (32, 3, 4, 8, 64, 300, 8)
    assert small.attn_types == ["local", "global", "local"] and small.d_vocab_out == 300
    assert small.output_logits_soft_cap == cfg.output_logits_soft_cap and small.original_architecture == "Gemma2ForCausalLM"
