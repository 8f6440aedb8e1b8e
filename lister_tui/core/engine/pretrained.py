"""Pretrained models and SAEs, from the local Hugging Face cache (or local folders) only.

The model is built the way ``HookedTransformer.from_pretrained_no_processing`` builds
it (TransformerLens's architecture table for the model's name, its HF-to-TransformerLens
weight conversion, no weight processing), with one difference: the sizes (layers,
widths, heads, vocabulary) are read from the weights' own ``config.json``. For the
hub's models they equal TransformerLens's table; a local folder of a resized model
of the same architecture (a pruned or distilled variant, or the small random models
the project's offline tests use) then loads too.

SAEs load through SAELens (``SAE.from_pretrained`` for a release, ``SAE.load_from_disk``
for a folder) with the hub set offline. Gemma Scope 2's SAELens loader asks the hub
for a file's tensor shapes over HTTP even when the file is cached; here it reads them
from the cached file instead, so those SAEs load offline too.

Long because it holds the whole pretrained path in one place (cache look-ups, the
download commands a missing file needs, model and SAE loading, cache sizes).
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lister_tui.core.engine.entries import ModelEntry, SAESite
from lister_tui.core.errors import ListerError, ModelNotAvailable

if TYPE_CHECKING:
    from sae_lens import SAE

LEGACY_HINT = "(huggingface_hub < 1.0 spells it `huggingface-cli download` with the same arguments)"


class offline:
    """Make hub clients read the local cache only, so a missing file fails at once."""

    def __enter__(self):
        self._old = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        try:
            import huggingface_hub.constants as c

            self._old_const = c.HF_HUB_OFFLINE
            c.HF_HUB_OFFLINE = True
        except Exception:
            self._old_const = None
        return self

    def __exit__(self, *exc):
        for k, v in self._old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if self._old_const is not None:
            import huggingface_hub.constants as c

            c.HF_HUB_OFFLINE = self._old_const
        return False


# --- the cache -------------------------------------------------------------------------


def cached_file(repo: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo, filename)
    return Path(hit) if isinstance(hit, str) else None


def model_folder(entry: ModelEntry) -> Path | None:
    """The folder holding the entry's HF weights: its local folder, or its cached snapshot."""
    if entry.hf_folder is not None:
        return Path(entry.hf_folder) if (Path(entry.hf_folder) / "config.json").is_file() else None
    hit = cached_file(entry.hf_model_name, "config.json")
    return hit.parent if hit is not None else None


def _release(site: SAESite):
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if site.release not in directory:
        raise ListerError(f"SAE {site.id}: release {site.release!r} is not in the installed SAELens directory; check its name")
    release = directory[site.release]
    if site.sae_id not in release.saes_map:
        raise ListerError(
            f"SAE {site.id}: release {site.release!r} has no sae_id {site.sae_id!r} "
            f"(e.g. {', '.join(list(release.saes_map)[:3])})"
        )
    return release


def _sae_key_file(release) -> str:
    """The file whose presence in the cache means the SAE is there (per the release's on-disk format)."""
    func = getattr(release, "conversion_func", None)
    return {"gemma_2": "params.npz", "gemma_2_transcoder": "params.npz", "gemma_3": "params.safetensors"}.get(func, "cfg.json")


def sae_files_present(site: SAESite) -> bool:
    if site.path is not None:
        return (Path(site.path) / "cfg.json").is_file()
    if site.release is None:
        return True  # shipped with the entry's folder
    release = _release(site)
    folder = release.saes_map[site.sae_id]
    return cached_file(release.repo_id, f"{folder}/{_sae_key_file(release)}") is not None


def sae_download_command(site: SAESite) -> str:
    if site.path is not None:
        return f"  (a SAELens folder with cfg.json and sae_weights.safetensors at {site.path})"
    try:
        release = _release(site)
        return f"  hf download {release.repo_id} --include '{release.saes_map[site.sae_id]}/*'"
    except ListerError as exc:
        return f"  ({exc})"


def model_download_command(entry: ModelEntry) -> str:
    if entry.hf_folder is not None:
        return f"  (a folder of Hugging Face weights with config.json at {entry.hf_folder})"
    return f"  hf download {entry.hf_model_name}"


def missing_pretrained_files(entry: ModelEntry, sites: tuple[SAESite, ...] | None = None) -> list[str]:
    """Download commands (one per line) for whatever of ``entry`` is absent."""
    missing = []
    if entry.source == "pretrained" and model_folder(entry) is None:
        missing.append(model_download_command(entry))
    for site in entry.sites if sites is None else sites:
        try:
            present = sae_files_present(site)
        except ListerError:
            present = False
        if not present:
            missing.append(sae_download_command(site))
    return missing


def not_available_message(entry: ModelEntry, missing: list[str]) -> str:
    where = os.environ.get("HF_HOME", "~/.cache/huggingface")
    return (
        f"{entry.name} needs files that are not here (Hugging Face cache: {where}). Download them on a machine "
        f"with access{' (' + entry.needs + ')' if entry.needs else ''}:\n" + "\n".join(missing) + f"\n{LEGACY_HINT}"
    )


def folder_size(path: Path) -> int:
    """Bytes under ``path``, following the cache's snapshot links to their blobs."""
    total = 0
    for p in Path(path).rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            continue
    return total


def cached_size(entry: ModelEntry) -> int | None:
    """Bytes of the entry's weights and SAEs present here; None when the model's weights are absent."""
    if entry.source == "shipped":
        return folder_size(entry.weights_dir) if entry.weights_dir and Path(entry.weights_dir).is_dir() else None
    folder = model_folder(entry)
    if folder is None:
        return None
    size = folder_size(folder)
    for site in entry.sites:
        try:
            if site.path is not None and Path(site.path).is_dir():
                size += folder_size(site.path)
            elif site.release is not None and sae_files_present(site):
                release = _release(site)
                key = cached_file(release.repo_id, f"{release.saes_map[site.sae_id]}/{_sae_key_file(release)}")
                size += folder_size(key.parent)
        except ListerError:
            continue
    return size


# --- the model -------------------------------------------------------------------------

_SIZE_FIELDS = {
    "hidden_size": "d_model",
    "num_hidden_layers": "n_layers",
    "num_attention_heads": "n_heads",
    "num_key_value_heads": "n_key_value_heads",
    "head_dim": "d_head",
    "intermediate_size": "d_mlp",
    "vocab_size": "d_vocab",
    "sliding_window": "window_size",
}


def config_with_sizes(cfg, hf_config: dict):
    """TransformerLens's config for the architecture, with the sizes of ``hf_config`` (a config.json)."""
    from transformer_lens import HookedTransformerConfig

    hf = hf_config.get("text_config") or hf_config  # multimodal Gemma 3 keeps the text model's sizes there
    values = dict(cfg.to_dict())  # to_dict hands out the config's own dict
    old_d_head, old_layers = values["d_head"], values["n_layers"]
    for hf_key, tl_key in _SIZE_FIELDS.items():
        if hf.get(hf_key) is not None and (tl_key != "window_size" or values.get("use_local_attn")):
            values[tl_key] = int(hf[hf_key])
    if hf.get("head_dim") is None:
        values["d_head"] = values["d_model"] // values["n_heads"]
    if values.get("rotary_dim") == old_d_head:
        values["rotary_dim"] = values["d_head"]
    if values.get("attn_types") and values["n_layers"] != old_layers:
        layer_types = hf.get("layer_types")
        if layer_types and len(layer_types) == values["n_layers"]:
            values["attn_types"] = ["local" if "sliding" in t else "global" for t in layer_types]
        else:
            pattern = values["attn_types"]
            values["attn_types"] = [pattern[i % len(pattern)] for i in range(values["n_layers"])]
    values["d_vocab_out"] = -1
    values["n_params"] = None
    return HookedTransformerConfig.from_dict(values)


def load_pretrained(entry: ModelEntry, device: str, dtype: torch.dtype):
    """The entry's HookedSAETransformer and tokenizer, from its local folder or the local cache."""
    missing = missing_pretrained_files(entry)
    if missing:
        raise ModelNotAvailable(not_available_message(entry, missing))
    from sae_lens import HookedSAETransformer
    from transformer_lens import loading_from_pretrained as tl_loading
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    folder = model_folder(entry)
    try:
        official = tl_loading.get_official_model_name(entry.tl_name)
    except ValueError as exc:
        raise ListerError(
            f"model {entry.name!r}: {entry.tl_name!r} is not a TransformerLens model name; set model to one "
            "(TransformerLens' list: transformer_lens.loading_from_pretrained.OFFICIAL_MODEL_NAMES)"
        ) from exc
    hf_config = json.loads((folder / "config.json").read_text())
    with offline(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        cfg = tl_loading.get_pretrained_model_config(
            official, fold_ln=False, device=device, dtype=dtype, default_prepend_bos=False
        )
        cfg = config_with_sizes(cfg, hf_config)
        auto = AutoModel if cfg.original_architecture == "Gemma3ForConditionalGeneration" else AutoModelForCausalLM
        hf_model = auto.from_pretrained(str(folder), dtype=dtype)
        state_dict = tl_loading.get_pretrained_state_dict(official, cfg, hf_model, dtype=dtype)
        del hf_model
        model = HookedSAETransformer(cfg, tokenizer, move_to_device=False, default_padding_side="right")
        model.load_and_process_state_dict(
            state_dict, fold_ln=False, center_writing_weights=False, center_unembed=False,
            fold_value_biases=False, refactor_factored_attn_matrices=False,
        )  # fmt: skip
        model.move_model_modules_to_device()
    return model, tokenizer


# --- SAEs ------------------------------------------------------------------------------

_SHAPES_LOCK = threading.Lock()


def _cached_tensor_shapes(repo_id: str, filename: str) -> dict[str, list[int]]:
    """Tensor shapes of a safetensors file of the local cache (SAELens asks the hub over HTTP)."""
    from huggingface_hub import hf_hub_download
    from safetensors import safe_open

    path = hf_hub_download(repo_id, filename)
    with safe_open(path, framework="pt") as f:
        return {name: list(f.get_slice(name).get_shape()) for name in f.keys()}


def _gemma_3_local_loader(repo_id, folder_name, device="cpu", force_download=False, cfg_overrides=None):
    from sae_lens.loading import pretrained_sae_loaders as loaders

    with _SHAPES_LOCK:
        original = loaders.get_safetensors_tensor_shapes
        loaders.get_safetensors_tensor_shapes = _cached_tensor_shapes
        try:
            return loaders.gemma_3_sae_huggingface_loader(repo_id, folder_name, device, force_download, cfg_overrides)
        finally:
            loaders.get_safetensors_tensor_shapes = original


def _sized_from_weights(loader):
    """A SAELens loader whose config takes d_in and d_sae from the weights it read.

    Gemma Scope's loader sets them from the release's names (width_16k, "2b" -> 2304);
    for the hub's files the numbers agree, and a resized copy (the offline tests') loads too.
    """

    def load(repo_id, folder_name, device="cpu", force_download=False, cfg_overrides=None):
        cfg, state_dict, sparsity = loader(repo_id, folder_name, device, force_download, cfg_overrides)
        w_enc = state_dict.get("W_enc")
        if w_enc is not None and w_enc.ndim == 2:
            cfg["d_in"], cfg["d_sae"] = int(w_enc.shape[0]), int(w_enc.shape[1])
        w_dec = state_dict.get("W_dec")
        if "d_out" in cfg and w_dec is not None and w_dec.ndim == 2:  # a transcoder's output width
            cfg["d_out"] = int(w_dec.shape[1])
        return cfg, state_dict, sparsity

    return load


def load_pretrained_sae(entry: ModelEntry, site: SAESite, device: str) -> "SAE":
    from sae_lens import SAE

    if site.path is not None:
        if not sae_files_present(site):
            raise ModelNotAvailable(f"SAE {site.id} of {entry.name}: no SAELens folder (cfg.json) at {site.path}")
        try:
            return SAE.load_from_disk(str(site.path), device=device)
        except Exception as exc:
            raise ModelNotAvailable(f"SAE {site.id} at {site.path} is unreadable ({type(exc).__name__}: {exc})") from exc
    release = _release(site)
    if not sae_files_present(site):
        raise ModelNotAvailable(not_available_message(entry, [sae_download_command(site)]))
    from sae_lens.loading.pretrained_sae_loaders import NAMED_PRETRAINED_SAE_LOADERS, get_conversion_loader_name

    if getattr(release, "conversion_func", None) == "gemma_3":
        converter = _gemma_3_local_loader
    else:
        converter = _sized_from_weights(NAMED_PRETRAINED_SAE_LOADERS[get_conversion_loader_name(site.release)])
    with offline(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return SAE.from_pretrained(site.release, site.sae_id, device=device, converter=converter)
        except Exception as exc:
            raise ModelNotAvailable(
                f"SAE {site.release} / {site.sae_id} could not be read from the local Hugging Face cache "
                f"({type(exc).__name__}: {exc}). Download it again:\n{sae_download_command(site)}\n{LEGACY_HINT}"
            ) from exc
