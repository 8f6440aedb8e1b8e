"""A folder's ``config.json`` mapped to TransformerLens's config, architecture by architecture.

Every architecture setting comes from the folder (never from a model name): sizes, head dim,
attention scale, rope base and scaling, norm eps and kind, activation, tied embeddings,
positional embeddings, soft-capping and windowing. The config is read with transformers'
``AutoConfig`` from the folder alone (``local_files_only``), so its defaults are the ones the
transformers model runs with. The weights are then converted by TransformerLens's own
conversions (``get_pretrained_state_dict``), which read the architecture from
``cfg.original_architecture``.

An architecture not in :data:`ARCHITECTURES` is refused with its name and the list; so is a
setting TransformerLens cannot run (a rope type it lacks, a quantized folder).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from lister_tui.core.errors import ListerError

N_CTX_CAP = 8192  # context TransformerLens builds masks and rotary tables for (lists are short)


def _rope_parameters(hf, layer_type: str | None = None) -> dict:
    """The rope settings (``rope_theta``, ``rope_type``, factors) of one layer type."""
    params = getattr(hf, "rope_parameters", None) or {}
    if layer_type is not None and isinstance(params.get(layer_type), dict):
        params = params[layer_type]
    elif params and all(isinstance(v, dict) for v in params.values()):
        params = next(iter(params.values()))
    out = dict(params)
    legacy = getattr(hf, "rope_scaling", None)
    if legacy and "rope_type" not in out:
        out.update(legacy)
    if "rope_theta" not in out and getattr(hf, "rope_theta", None) is not None:
        out["rope_theta"] = hf.rope_theta
    out.setdefault("rope_theta", 10000.0)
    out["rope_type"] = out.get("rope_type") or out.get("type") or "default"
    return out


def _rope_settings(hf, where: str, attn_types: list[str] | None) -> dict:
    """TransformerLens's rope fields: base (and a local base), linear or Llama-3 scaling."""
    layer_kinds = sorted(set(attn_types or ["global"]))
    per = {k: _rope_parameters(hf, {"local": "sliding_attention", "global": "full_attention"}[k]) for k in layer_kinds}
    glob = per.get("global") or per["local"]
    out: dict = {"rotary_base": float(glob["rope_theta"])}
    if "local" in per and "global" in per and per["local"]["rope_theta"] != glob["rope_theta"]:
        out["rotary_base_local"] = float(per["local"]["rope_theta"])
    for kind, p in per.items():
        rope_type = p["rope_type"]
        if rope_type == "default":
            continue
        if rope_type == "linear" and (kind == "global" or "global" not in per):
            if kind == "local":
                raise ListerError(f"{where}: linear rope scaling on sliding-window layers is not supported by TransformerLens")
            out["rotary_scaling_factor"] = float(p.get("factor", 1.0))
        elif rope_type == "llama3" and "local" not in per:
            out.update(
                use_NTK_by_parts_rope=True,
                NTK_original_ctx_len=int(p.get("original_max_position_embeddings", getattr(hf, "max_position_embeddings", 8192))),
                NTK_by_parts_low_freq_factor=float(p.get("low_freq_factor", 1.0)),
                NTK_by_parts_high_freq_factor=float(p.get("high_freq_factor", 4.0)),
                NTK_by_parts_factor=float(p.get("factor", 1.0)),
            )
        else:
            raise ListerError(f"{where}: rope type {rope_type!r} is not supported here; supported: default, linear, llama3")
    return out


def _windowing(hf) -> dict:
    """Sliding-window attention: which layers, and the window (from ``layer_types`` or ``sliding_window``)."""
    layer_types = getattr(hf, "layer_types", None)
    window = getattr(hf, "sliding_window", None)
    if layer_types:
        attn_types = ["local" if "sliding" in str(t) else "global" for t in layer_types]
    elif window and getattr(hf, "use_sliding_window", True):
        attn_types = ["local"] * hf.num_hidden_layers
    else:
        attn_types = None
    if not attn_types or "local" not in attn_types or not window:
        return {"use_local_attn": False}
    return {"use_local_attn": True, "attn_types": attn_types, "window_size": int(window)}


def _act(name, where: str) -> str:
    from transformer_lens.utilities.activation_functions import SUPPORTED_ACTIVATIONS

    if name not in SUPPORTED_ACTIVATIONS:
        raise ListerError(f"{where}: activation {name!r} is not one TransformerLens runs; supported: {', '.join(SUPPORTED_ACTIVATIONS)}")
    return str(name)


def _head_dim(hf) -> int:
    head_dim = getattr(hf, "head_dim", None)
    return int(head_dim) if head_dim else hf.hidden_size // hf.num_attention_heads


def _n_ctx(hf) -> int:
    return min(int(getattr(hf, "max_position_embeddings", None) or N_CTX_CAP), N_CTX_CAP)


def _gpt2(hf, where: str) -> dict:
    return {
        "d_model": hf.n_embd, "n_heads": hf.n_head, "d_head": hf.n_embd // hf.n_head,
        "d_mlp": hf.n_inner or 4 * hf.n_embd, "n_layers": hf.n_layer, "n_ctx": hf.n_positions,
        "eps": hf.layer_norm_epsilon, "act_fn": _act(hf.activation_function, where),
        "use_attn_scale": bool(getattr(hf, "scale_attn_weights", True)),
        "scale_attn_by_inverse_layer_idx": bool(getattr(hf, "scale_attn_by_inverse_layer_idx", False)),
        "normalization_type": "LN", "positional_embedding_type": "standard",
    }  # fmt: skip


def _neox(hf, where: str) -> dict:
    d_head = hf.hidden_size // hf.num_attention_heads
    rope = _rope_parameters(hf)
    factor = rope.get("partial_rotary_factor", getattr(hf, "rotary_pct", 1.0))
    return {
        "d_model": hf.hidden_size, "n_heads": hf.num_attention_heads, "d_head": d_head, "d_mlp": hf.intermediate_size,
        "n_layers": hf.num_hidden_layers, "n_ctx": _n_ctx(hf), "eps": hf.layer_norm_eps, "act_fn": _act(hf.hidden_act, where),
        "parallel_attn_mlp": bool(getattr(hf, "use_parallel_residual", True)), "normalization_type": "LN",
        "positional_embedding_type": "rotary", "rotary_adjacent_pairs": False, "rotary_dim": int(d_head * factor),
        **_rope_settings(hf, where, None),
    }  # fmt: skip


def _llama_like(hf, where: str, always_kv: bool, qk_norm: bool = False, act: str = "hidden_act") -> dict:
    window = _windowing(hf)
    kv = hf.num_key_value_heads or hf.num_attention_heads
    return {
        "d_model": hf.hidden_size, "n_heads": hf.num_attention_heads, "d_head": _head_dim(hf), "d_mlp": hf.intermediate_size,
        "n_layers": hf.num_hidden_layers, "n_ctx": _n_ctx(hf), "eps": hf.rms_norm_eps, "act_fn": _act(getattr(hf, act), where),
        "n_key_value_heads": kv if always_kv or kv != hf.num_attention_heads else None,
        "normalization_type": "RMS", "final_rms": True, "gated_mlp": True, "positional_embedding_type": "rotary",
        "rotary_adjacent_pairs": False, "rotary_dim": _head_dim(hf), "use_qk_norm": qk_norm,
        **window, **_rope_settings(hf, where, window.get("attn_types")),
    }  # fmt: skip


def _gemma(hf, where: str, generation: int) -> dict:
    act = "hidden_activation" if getattr(hf, "hidden_activation", None) else "hidden_act"
    out = _llama_like(hf, where, always_kv=True, qk_norm=generation == 3, act=act)
    out["attn_scale"] = float(getattr(hf, "query_pre_attn_scalar", None) or out["d_head"]) ** 0.5
    if generation >= 2:
        out["use_normalization_before_and_after"] = True
        for hf_key, tl_key in (("attn_logit_softcapping", "attn_scores_soft_cap"), ("final_logit_softcapping", "output_logits_soft_cap")):
            if getattr(hf, hf_key, None):
                out[tl_key] = float(getattr(hf, hf_key))
    return out


# The architectures a folder may have (config.json's "architectures"), and their mapping.
ARCHITECTURES = {
    "GPT2LMHeadModel": _gpt2,
    "GPTNeoXForCausalLM": _neox,
    "LlamaForCausalLM": lambda hf, where: _llama_like(hf, where, always_kv=False),
    "MistralForCausalLM": lambda hf, where: _llama_like(hf, where, always_kv=True),
    "Qwen2ForCausalLM": lambda hf, where: _llama_like(hf, where, always_kv=True),
    "Qwen3ForCausalLM": lambda hf, where: _llama_like(hf, where, always_kv=False, qk_norm=True),
    "GemmaForCausalLM": lambda hf, where: _gemma(hf, where, 1),
    "Gemma2ForCausalLM": lambda hf, where: _gemma(hf, where, 2),
    "Gemma3ForCausalLM": lambda hf, where: _gemma(hf, where, 3),
    "Gemma3ForConditionalGeneration": lambda hf, where: _gemma(hf, where, 3),
}


def read_hf_config(folder: Path):
    """The folder's config (transformers' ``AutoConfig``, from the folder alone) and its architecture name."""
    from transformers import AutoConfig

    path = Path(folder) / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ListerError(f"{path}: not a readable JSON config ({exc}); download the model again") from exc
    if not isinstance(raw, dict):
        raise ListerError(f"{path}: not a JSON object; download the model again")
    architectures = raw.get("architectures")
    if not (isinstance(architectures, list) and architectures and isinstance(architectures[0], str)):
        raise ListerError(f"{path}, field 'architectures': missing; it names the model class (e.g. [\"LlamaForCausalLM\"]); supported: {', '.join(ARCHITECTURES)}")
    arch = architectures[0]
    if arch not in ARCHITECTURES:
        raise ListerError(f"{path}: architecture {arch!r} cannot be mapped to TransformerLens here; supported: {', '.join(ARCHITECTURES)}")
    if raw.get("quantization_config") or (raw.get("text_config") or {}).get("quantization_config"):
        raise ListerError(f"{path}, field 'quantization_config': quantized weights are not supported; use the unquantized model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            hf = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:  # transformers raises ValueError / KeyError / OSError for a bad config
            raise ListerError(f"{path}: transformers cannot read it ({type(exc).__name__}: {exc})") from exc
    return hf, arch


def tl_config_dict(folder: Path) -> dict:
    """The HookedTransformerConfig fields for the model in ``folder`` (no dtype or device yet)."""
    hf, arch = read_hf_config(folder)
    text = getattr(hf, "text_config", None) if arch == "Gemma3ForConditionalGeneration" else None
    where = f"{Path(folder) / 'config.json'} ({arch})"
    try:
        values = ARCHITECTURES[arch](text or hf, where)
    except AttributeError as exc:
        raise ListerError(f"{where}: a field the architecture needs is missing ({exc})") from exc
    values.update(
        d_vocab=int((text or hf).vocab_size),
        original_architecture=arch,
        tie_word_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
        default_prepend_bos=False,  # our prompts carry their own <bos> as text
        model_name=Path(folder).name,
    )
    return values


def tl_config(folder: Path, device: str, dtype):
    """The folder's model as a HookedTransformerConfig on ``device`` in ``dtype``."""
    from transformer_lens import HookedTransformerConfig

    values = tl_config_dict(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return HookedTransformerConfig(**values, device=device, dtype=dtype)
        except (AssertionError, ValueError, TypeError) as exc:
            raise ListerError(f"{Path(folder) / 'config.json'}: TransformerLens refuses its settings ({exc})") from exc
