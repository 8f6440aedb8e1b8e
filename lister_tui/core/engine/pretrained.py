"""Pretrained models and SAEs, from the local Hugging Face cache (or local folders) only.

The model is built from the weights' own folder: its ``config.json`` mapped to TransformerLens's
config architecture by architecture (:mod:`lister_tui.core.engine.hf_config`, never a model
name's table), its weights converted by TransformerLens's conversions (no weight processing),
and one probe forward compared with the transformers model from the same folder
(:mod:`lister_tui.core.engine.parity`).

SAEs load through SAELens (``SAE.from_pretrained`` for a release, ``SAE.load_from_disk``
for a folder) with the hub set offline. Gemma Scope 2's SAELens loader asks the hub
for a file's tensor shapes over HTTP even when the file is cached; here it reads them
from the cached file instead, so those SAEs load offline too.

Long because it holds the whole pretrained path in one place (cache look-ups, the
download commands a missing file needs, model and SAE loading, cache sizes).
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from lister_tui.core.engine.entries import ModelEntry, SAESite
from lister_tui.core.errors import ListerError, ModelNotAvailable

if TYPE_CHECKING:
    import torch
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


def snapshot_folder(repo: str) -> Path | None:
    """The cached snapshot folder of ``repo`` (refs/main), also when its config.json is absent."""
    hit = cached_file(repo, "config.json")
    if hit is not None:
        return hit.parent
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        root = Path(HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
        revision = (root / "refs" / "main").read_text().strip()
    except (OSError, ImportError):
        return None
    folder = root / "snapshots" / revision
    return folder if folder.is_dir() else None


def model_folder(entry: ModelEntry) -> Path | None:
    """The folder holding the entry's HF weights: its local folder, or its cached snapshot (None: absent)."""
    if entry.hf_folder is not None:
        return Path(entry.hf_folder) if Path(entry.hf_folder).is_dir() else None
    return snapshot_folder(entry.hf_model_name) if entry.hf_model_name else None


def model_state(entry: ModelEntry) -> tuple[str, list[str]]:
    """``("yes" | "partial" | "no", problems)`` for the entry's model files (shipped entries: their folder)."""
    from lister_tui.core.engine.presence import folder_problems

    if entry.source == "shipped":
        return ("yes", []) if entry.weights_dir and Path(entry.weights_dir).is_dir() else ("no", [f"{entry.weights_dir}: no such folder"])
    folder = model_folder(entry)
    if folder is None:
        return "no", []
    problems = folder_problems(folder)
    return ("partial" if problems else "yes"), problems


def _release(site: SAESite):
    from lister_tui.core.engine.sae_directory import release as read_release

    release = read_release(site.release)  # the directory's file, without importing sae_lens
    if release is None:
        raise ListerError(f"SAE {site.id}: release {site.release!r} is not in the installed SAELens directory; check its name")
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
    if entry.source == "pretrained" and model_state(entry)[0] != "yes":
        missing.append(model_download_command(entry))
    for site in entry.sites if sites is None else sites:
        try:
            present = sae_files_present(site)
        except ListerError:
            present = False
        if not present:
            missing.append(sae_download_command(site))
    return missing


GATED_HINT = "gated repos (Gemma, Llama) need `hf auth login` (or HF_TOKEN set) after accepting the licence on huggingface.co"


def not_available_message(entry: ModelEntry, missing: list[str]) -> str:
    where = os.environ.get("HF_HOME", "~/.cache/huggingface")
    _state, problems = model_state(entry) if entry.source == "pretrained" else ("", [])
    found = "".join(f"\n  {model_folder(entry)}: {p}" for p in problems)
    sae_lines = [line for line in missing if not line.startswith("  (a folder of Hugging Face weights")]
    if entry.hf_folder is not None and (problems or not Path(entry.hf_folder).is_dir()):
        return (
            f"{entry.name}: its model folder {entry.hf_folder} is not complete:{found or ' no such folder'}\n"
            "A folder needs config.json, the weights (model.safetensors, or every shard of its index) and the tokenizer "
            "(model.save_pretrained and tokenizer.save_pretrained write them)."
            + ("\nAlso missing:\n" + "\n".join(sae_lines) if sae_lines else "")
        )
    return (
        f"{entry.name} needs files that are not here (Hugging Face cache: {where}).{found}\nDownload them on a machine "
        f"with access{' (' + entry.needs + ')' if entry.needs else ''}:\n" + "\n".join(missing) + f"\n{LEGACY_HINT}\n({GATED_HINT})"
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

def load_pretrained(entry: ModelEntry, device: str, dtype: torch.dtype):
    """The entry's HookedSAETransformer, tokenizer and parity check, from its local folder or the local cache.

    The architecture and every setting come from the folder's config.json (:mod:`hf_config`);
    TransformerLens converts the weights; one probe forward through both models checks the result
    (:mod:`parity`), unless this folder and dtype passed before."""
    from lister_tui.core.engine.hf_config import tl_config
    from lister_tui.core.engine.parity import cached_parity, measure_parity, refusal

    missing = missing_pretrained_files(entry)
    if missing:
        raise ModelNotAvailable(not_available_message(entry, missing))
    folder = model_folder(entry)
    cfg = tl_config(folder, device, dtype)  # refused here, before any weights are read
    from sae_lens import HookedSAETransformer
    from transformer_lens import loading_from_pretrained as tl_loading
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    tokenizer = load_folder_tokenizer(folder)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars: the explorer and the CLI say what loads
    with offline(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = AutoModelForImageTextToText if cfg.original_architecture == "Gemma3ForConditionalGeneration" else AutoModelForCausalLM
        try:
            hf_model = auto.from_pretrained(str(folder), dtype=dtype)
        except Exception as exc:  # transformers raises OSError, ValueError, safetensors errors for a bad folder
            raise ModelNotAvailable(f"model {entry.name!r}: transformers cannot read the weights in {folder} "
                                    f"({type(exc).__name__}: {str(exc)[:300]})") from exc  # fmt: skip
        hf_model.eval()
        try:
            state_dict = tl_loading.get_pretrained_state_dict(str(folder), cfg, hf_model, dtype=dtype)
        except Exception as exc:  # the conversion asserts or misses a module for a config it does not handle
            raise ListerError(f"model {entry.name!r}: TransformerLens cannot convert the {cfg.original_architecture} weights in "
                              f"{folder} ({type(exc).__name__}: {str(exc)[:300]})") from exc  # fmt: skip
        model = HookedSAETransformer(cfg, tokenizer, move_to_device=False, default_padding_side="right")
        model.load_and_process_state_dict(
            state_dict, fold_ln=False, center_writing_weights=False, center_unembed=False,
            fold_value_biases=False, refactor_factored_attn_matrices=False,
        )  # fmt: skip
        del state_dict
        model.eval()
        parity = cached_parity(folder, dtype)
        if parity is None or not parity.ok:
            try:
                parity = measure_parity(model, hf_model, tokenizer, folder, dtype, cfg.original_architecture)
            except ListerError:
                raise
            except Exception as exc:  # a forward that TransformerLens cannot run for this config
                raise ListerError(f"model {entry.name!r}: the parity probe failed to run on {folder} ({type(exc).__name__}: "
                                  f"{str(exc)[:300]}); TransformerLens cannot run this {cfg.original_architecture} config") from exc  # fmt: skip
        del hf_model
        if not parity.ok:
            raise refusal(parity, entry.name, folder)
        model.move_model_modules_to_device()
    return model, tokenizer, parity


def load_folder_tokenizer(folder: Path):
    """The tokenizer of a model folder, offline; a clear error naming the folder when it is absent or broken."""
    from transformers import AutoTokenizer

    with offline(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return AutoTokenizer.from_pretrained(str(folder))
        except Exception as exc:  # transformers raises OSError/ValueError/ImportError (sentencepiece advice) here
            raise ModelNotAvailable(
                f"the tokenizer in {folder} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
                "it needs tokenizer.json (or tokenizer.model) and tokenizer_config.json from the model's repository"
            ) from exc


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
