"""Loading a registry entry: the model, its tokenizer, token ids and SAEs.

Loading never reaches a network: shipped weights come from the package, and
pretrained ones only from the local Hugging Face cache, failing fast with a
message that lists what to download when they are absent.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lister_tui.core.engine.registry import ModelEntry, SAESite, get_entry
from lister_tui.core.errors import ListerError, ModelNotAvailable

if TYPE_CHECKING:
    from sae_lens import SAE, HookedSAETransformer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None, entry: ModelEntry) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    name = dtype or entry.default_dtype
    if name not in DTYPES:
        raise ListerError(f"unknown dtype {name!r}; valid: {', '.join(DTYPES)}")
    return DTYPES[name]


def resolve_device(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ListerError(f"device {device!r} asked for, but torch sees no CUDA device; use --device cpu")
    return device


def single_token_id(tokenizer, text: str) -> int:
    """The id of ``text`` if the tokenizer makes it exactly one token, else a clear error."""
    vocab = tokenizer.get_vocab()
    if text in vocab and text in tokenizer.all_special_tokens:
        return vocab[text]
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise ListerError(
            f"token string {text!r} is {len(ids)} tokens ({pieces!r}) for this tokenizer; "
            "a metric or stop token must be exactly one token"
        )
    return ids[0]


@dataclass(frozen=True)
class TokenIds:
    blank: int
    newline: int
    item_marker: int
    stops: tuple[int, ...]
    bos: int | None


@dataclass
class LoadedModel:
    """A model ready for the engine: weights, tokenizer, resolved token ids, SAE access."""

    entry: ModelEntry
    model: "HookedSAETransformer"
    tokenizer: object
    device: str
    dtype: torch.dtype
    ids: TokenIds
    _sae_cache: dict = field(default_factory=dict, repr=False)

    def release_saes(self, keep: tuple[str, ...] = ()) -> None:
        """Drop cached SAEs except ``keep`` (a sweep worker holds one SAE at a time)."""
        for sae_id in [s for s in self._sae_cache if s not in keep]:
            del self._sae_cache[sae_id]

    def load_sae(self, sae_id: str, cache: bool = False) -> "SAE":
        """The SAE ``sae_id`` on the model's device and dtype (not cached unless asked)."""
        if sae_id in self._sae_cache:
            return self._sae_cache[sae_id]
        site = self.entry.site(sae_id)
        sae = _load_sae(self.entry, site, self.device)
        sae = sae.to(self.device, dtype=self.dtype)
        sae.eval()
        for p in sae.parameters():
            p.requires_grad_(False)
        if cache:
            self._sae_cache[sae_id] = sae
        return sae

    def to_str_tokens(self, ids) -> list[str]:
        return [self.tokenizer.decode([int(i)]) for i in ids]


def _resolve_ids(entry: ModelEntry, tokenizer) -> TokenIds:
    bos = tokenizer.convert_tokens_to_ids(entry.bos_token) if entry.bos_token else None
    return TokenIds(
        blank=single_token_id(tokenizer, entry.blank_token),
        newline=single_token_id(tokenizer, entry.newline_token),
        item_marker=single_token_id(tokenizer, entry.item_marker),
        stops=tuple(single_token_id(tokenizer, s) for s in entry.stop_tokens),
        bos=bos,
    )


def load_model(
    entry: ModelEntry | str,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    weights_dir: str | Path | None = None,
) -> LoadedModel:
    """Load a registry entry (by name or entry) for the engine."""
    if isinstance(entry, str):
        entry = get_entry(entry)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, entry)
    if entry.source == "shipped":
        folder = Path(weights_dir) if weights_dir is not None else entry.weights_dir
        if folder != entry.weights_dir:
            entry = _with_weights_dir(entry, folder)
        model, tokenizer = _load_shipped(folder)
    else:
        model, tokenizer = _load_pretrained(entry, device, torch_dtype)
    if entry.source == "shipped":
        # HookedTransformer.to takes a device or a dtype, one at a time
        model = model.to(device, print_details=False).to(torch_dtype, print_details=False)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(entry, model, tokenizer, device, torch_dtype, _resolve_ids(entry, tokenizer))


def _with_weights_dir(entry: ModelEntry, folder: Path) -> ModelEntry:
    from dataclasses import replace

    return replace(entry, weights_dir=folder)


# --- shipped (lister-tiny) ----------------------------------------------------------


def _rebuild_hint() -> str:
    return "reinstall lister-tui, or rebuild the organism with `lister-tui organism build`"


def _load_shipped(folder: Path):
    from lister_tui.organism import paths

    folder = Path(folder)
    if not folder.is_dir():
        raise ModelNotAvailable(f"lister-tiny weights folder {folder} does not exist; {_rebuild_hint()}")
    tok_dir = folder / paths.TOKENIZER_SUBDIR
    cfg_path = folder / paths.MODEL_CONFIG
    weights_path = folder / paths.MODEL_WEIGHTS
    for p in (tok_dir, cfg_path, weights_path):
        if not p.exists():
            raise ModelNotAvailable(f"lister-tiny file {p} is missing; {_rebuild_hint()}")
    try:
        tokenizer = load_tokenizer(tok_dir)
    except Exception as exc:  # tokenizers raises several types for a bad file
        raise ModelNotAvailable(f"lister-tiny tokenizer in {tok_dir} is unreadable ({exc}); {_rebuild_hint()}") from exc
    try:
        cfg_dict = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelNotAvailable(f"lister-tiny model config {cfg_path} is corrupt ({exc}); {_rebuild_hint()}") from exc
    model = build_hooked_model(cfg_dict, tokenizer)
    try:
        from safetensors.torch import load_file

        state = load_file(str(weights_path))
        model.load_state_dict(state, strict=False)
    except Exception as exc:  # safetensors raises its own error types for a truncated file
        raise ModelNotAvailable(f"lister-tiny weights {weights_path} are corrupt ({exc}); {_rebuild_hint()}") from exc
    return model, tokenizer


def load_tokenizer(folder: Path):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(folder))


def build_hooked_model(cfg_dict: dict, tokenizer=None) -> "HookedSAETransformer":
    """A HookedSAETransformer from a plain config dict (no network)."""
    import warnings

    from sae_lens import HookedSAETransformer
    from transformer_lens import HookedTransformerConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = HookedTransformerConfig(**cfg_dict)
        # default_prepend_bos is off: our prompts carry their own <bos> as text.
        model = HookedSAETransformer(cfg, tokenizer=tokenizer, default_padding_side="right")
    return model


def _load_sae(entry: ModelEntry, site: SAESite, device: str) -> "SAE":
    from sae_lens import SAE

    if entry.source == "shipped":
        from lister_tui.organism import paths

        path = Path(entry.weights_dir) / paths.SAES_SUBDIR / site.id
        if not path.is_dir():
            raise ModelNotAvailable(f"SAE {site.id} of {entry.name} is missing at {path}; {_rebuild_hint()}")
        try:
            return SAE.load_from_disk(str(path), device=device)
        except Exception as exc:
            raise ModelNotAvailable(f"SAE {site.id} at {path} is unreadable ({exc}); {_rebuild_hint()}") from exc
    with _offline():
        try:
            return SAE.from_pretrained(site.release, site.sae_id, device=device)
        except Exception as exc:
            raise ModelNotAvailable(
                f"SAE {site.release} / {site.sae_id} is not in the local Hugging Face cache ({type(exc).__name__}). "
                f"Download it on a machine with access:\n{sae_download_hint(site)}"
            ) from exc


# --- pretrained (Gemma) --------------------------------------------------------------


class _offline:
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


def sae_download_hint(site: SAESite) -> str:
    try:
        from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

        release = get_pretrained_saes_directory()[site.release]
        repo = release.repo_id
        path = release.saes_map[site.sae_id]
        return f"  huggingface-cli download {repo} --include '{path}/*'"
    except Exception:
        return f"  SAELens release {site.release}, sae_id {site.sae_id}"


def missing_pretrained_files(entry: ModelEntry) -> list[str]:
    """Download commands for whatever of ``entry`` is absent from the local cache."""
    from huggingface_hub import try_to_load_from_cache

    missing = []
    if not isinstance(try_to_load_from_cache(entry.hf_model_name, "config.json"), str):
        missing.append(f"  huggingface-cli download {entry.hf_model_name}")
    for site in entry.sites:
        try:
            from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

            release = get_pretrained_saes_directory()[site.release]
            path = release.saes_map[site.sae_id]
            hit = try_to_load_from_cache(release.repo_id, f"{path}/params.npz")
            if not isinstance(hit, str):
                missing.append(sae_download_hint(site))
        except Exception:
            missing.append(sae_download_hint(site))
    return missing


def _load_pretrained(entry: ModelEntry, device: str, dtype: torch.dtype):
    missing = missing_pretrained_files(entry)
    if missing:
        raise ModelNotAvailable(
            f"{entry.name} needs weights that are not in the local Hugging Face cache "
            f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}). Download them on a machine with access "
            "(the Gemma licence must be accepted first):\n" + "\n".join(missing)
        )
    import warnings

    from sae_lens import HookedSAETransformer
    from transformers import AutoTokenizer

    with _offline(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = AutoTokenizer.from_pretrained(entry.hf_model_name)
        model = HookedSAETransformer.from_pretrained_no_processing(
            entry.name, device=device, dtype=dtype, tokenizer=tokenizer, default_prepend_bos=False
        )
    return model, tokenizer
