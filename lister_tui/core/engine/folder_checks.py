"""The config files of a lister-tiny style folder, checked field by field before anything is built.

A folder's ``model_config.json`` becomes a ``HookedTransformerConfig`` and each
``saes/<id>/cfg.json`` a SAELens config; both allocate whatever sizes they name. So every
size is checked as a whole number in a stated range, and against the shapes the weights files
themselves hold (read from the safetensors header, no tensor loaded): a config that says
``d_model`` 10⁹ beside a 128-wide weights file is damaged, and says so by file and field.
"""

from __future__ import annotations

from pathlib import Path

from lister_tui.core.errors import ModelNotAvailable
from lister_tui.core.files.json_read import parse_json

MAX_CONFIG_BYTES = 1 << 20
# (field, largest value): far above any model lister-tui runs, far below what exhausts memory
SIZE_FIELDS = {
    "n_layers": 1_000,
    "d_model": 65_536,
    "n_heads": 1_024,
    "d_head": 4_096,
    "d_mlp": 1 << 18,
    "n_ctx": 1 << 20,
    "d_vocab": 1 << 22,
    "d_vocab_out": 1 << 22,
    "n_key_value_heads": 1_024,
    "window_size": 1 << 20,
}
MAX_D_SAE = 1 << 22  # Gemma Scope's widest SAEs have 2^20 features
MAX_D_IN = 1 << 17


def _read(path: Path, what: str, hint: str) -> dict:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelNotAvailable(f"{what} {path} cannot be read ({exc.strerror or exc}); {hint}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ModelNotAvailable(f"{what} {path} is {len(raw):,} bytes, more than a config's {MAX_CONFIG_BYTES:,}; it is damaged; {hint}")
    try:
        data = parse_json(raw.decode("utf-8"), str(path))
    except UnicodeDecodeError as exc:
        raise ModelNotAvailable(f"{what} {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); {hint}") from None
    except ValueError as exc:  # JSONDecodeError, or parse_json's own ListerError
        raise ModelNotAvailable(f"{what} {path} is not valid JSON ({exc}); {hint}") from None
    if not isinstance(data, dict):
        raise ModelNotAvailable(f"{what} {path} holds a {type(data).__name__}, not a JSON object of fields; {hint}")
    return data


def _size(data: dict, field: str, path: Path, top: int, hint: str) -> int | None:
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "…"
        raise ModelNotAvailable(f"{path}: field {field} is {shown}; valid: a whole number 1..{top:,}; {hint}")
    return value


def _shapes(weights: Path, hint: str) -> dict[str, list[int]]:
    """Tensor name → shape from a safetensors header (no tensor is read)."""
    try:
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as f:
            return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise ModelNotAvailable(f"weights {weights} are unreadable ({exc}); {hint}") from None


def model_config(folder: Path, hint: str) -> dict:
    """``folder/model_config.json``, checked: a JSON object of HookedTransformerConfig fields, every
    size a whole number in range and equal to the shapes in ``model.safetensors``."""
    import dataclasses

    from transformer_lens import HookedTransformerConfig

    path = Path(folder) / "model_config.json"
    data = _read(path, "model config", hint)
    known = {f.name for f in dataclasses.fields(HookedTransformerConfig)}
    unknown = sorted(k for k in data if k not in known)
    if unknown:
        raise ModelNotAvailable(f"{path}: field {unknown[0]!r} is not a TransformerLens config field; {hint}")
    sizes = {f: _size(data, f, path, top, hint) for f, top in SIZE_FIELDS.items()}
    for field in ("n_layers", "d_model", "n_ctx", "d_vocab"):
        if sizes[field] is None:
            raise ModelNotAvailable(f"{path}: field {field} is missing; {hint}")
    if sizes["n_heads"] is None and sizes["d_head"] is None:
        raise ModelNotAvailable(f"{path}: field n_heads is missing; {hint}")
    shapes = _shapes(Path(folder) / "model.safetensors", hint)
    expected = {
        "embed.W_E": [sizes["d_vocab"], sizes["d_model"]],
        "unembed.W_U": [sizes["d_model"], sizes["d_vocab_out"] or sizes["d_vocab"]],
        "pos_embed.W_pos": [sizes["n_ctx"], sizes["d_model"]],
        "blocks.0.attn.W_Q": [sizes["n_heads"], sizes["d_model"], sizes["d_head"]],
        "blocks.0.mlp.W_in": [sizes["d_model"], sizes["d_mlp"]],
    }
    for name, shape in expected.items():
        if name in shapes and None not in shape and shapes[name] != shape:
            fields = {"embed.W_E": "d_vocab, d_model", "unembed.W_U": "d_model, d_vocab", "pos_embed.W_pos": "n_ctx, d_model",
                      "blocks.0.attn.W_Q": "n_heads, d_model, d_head", "blocks.0.mlp.W_in": "d_model, d_mlp"}[name]  # fmt: skip
            raise ModelNotAvailable(
                f"{path}: fields {fields} say {shape}, but model.safetensors holds {name} of shape {shapes[name]}; {hint}"
            )
    layers = {int(k.split(".")[1]) for k in shapes if k.startswith("blocks.") and k.split(".")[1].isdigit()}
    if layers and layers != set(range(sizes["n_layers"])):
        raise ModelNotAvailable(f"{path}: field n_layers is {sizes['n_layers']}, but model.safetensors holds {len(layers)} layers; {hint}")
    return data


def sae_config(sae_folder: Path, hint: str) -> dict:
    """``saes/<id>/cfg.json``, checked: a JSON object whose ``d_in`` and ``d_sae`` are whole numbers in
    range and equal to ``W_enc``'s shape in ``sae_weights.safetensors`` (when that file is there)."""
    path = Path(sae_folder) / "cfg.json"
    data = _read(path, "SAE config", hint)
    d_sae = _size(data, "d_sae", path, MAX_D_SAE, hint)
    d_in = _size(data, "d_in", path, MAX_D_IN, hint)
    if d_sae is None or d_in is None:
        raise ModelNotAvailable(f"{path}: field {'d_sae' if d_sae is None else 'd_in'} is missing; {hint}")
    weights = Path(sae_folder) / "sae_weights.safetensors"
    if weights.is_file():
        shape = _shapes(weights, hint).get("W_enc")
        if shape is not None and shape != [d_in, d_sae]:
            raise ModelNotAvailable(f"{path}: fields d_in, d_sae say {[d_in, d_sae]}, but {weights.name} holds W_enc of shape {shape}; {hint}")
    return data
