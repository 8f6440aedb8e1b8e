"""Loading a registry entry: the model, its tokenizer, token ids and SAEs.

Loading never reaches a network: shipped weights come from the package, and
pretrained ones only from the local Hugging Face cache, failing fast with a
message that lists what to download when they are absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lister_tui.core.engine.entries import ModelEntry, SAESite
from lister_tui.core.engine.registry import get_entry
from lister_tui.core.engine.token_ids import NUMBERED, TokenIds  # noqa: F401  (re-exported; torch-free for manifests)
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


DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,3})?)$")
DEVICE_FORMS = "cpu, cuda, cuda:N, mps or auto"


def check_device_name(device: object) -> str:
    """Refuse a device that is not written as one of DEVICE_FORMS (no torch needed)."""
    if not isinstance(device, str) or not DEVICE_RE.match(device):
        raise ListerError(f"device {device!r} is not valid; use {DEVICE_FORMS}")
    return device


def resolve_device(device: str | None) -> str:
    """``device`` checked against this machine (cuda:N with N below the device count), "auto" resolved."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device_name(device)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ListerError(f"device {device!r} asked for, but torch sees no CUDA device; use --device cpu")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ListerError(f"device {device!r} does not exist: torch sees {torch.cuda.device_count()} CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ListerError("device 'mps' asked for, but torch sees no MPS device; use --device cpu")
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
    # a Hugging Face folder's parity check (parity.Parity.record()); None for shipped weights
    parity: dict | None = None

    def release_saes(self, keep: tuple[str, ...] = ()) -> None:
        """Drop cached SAEs except ``keep`` (a sweep worker holds one SAE at a time)."""
        for sae_id in [s for s in self._sae_cache if s not in keep]:
            del self._sae_cache[sae_id]

    def cached_sae(self, sae_id: str) -> "SAE | None":
        """The SAE ``sae_id`` if it is cached, else None (nothing is loaded)."""
        return self._sae_cache.get(sae_id)

    def load_sae(self, sae_id: str, cache: bool = False) -> "SAE":
        """The SAE ``sae_id`` on the model's device and dtype (not cached unless asked)."""
        if sae_id in self._sae_cache:
            return self._sae_cache[sae_id]
        site = self.entry.site(sae_id)
        from lister_tui.core.engine.transcoders import is_transcoder_site, load_transcoder, transcoder_set_of_site

        # Weights made under inference mode (a regeneration under an ablation loads its SAEs
        # inside torch.inference_mode) are inference tensors, which autograd refuses to save:
        # the next attribution with the cached SAE would fail. Load outside it, always.
        with torch.inference_mode(False):
            if is_transcoder_site(sae_id) and site not in self.entry.sites:  # layer L's transcoder (tc_L)
                sae = load_transcoder(self.entry, transcoder_set_of_site(self.entry, sae_id), site.layer, self.device, self.model)
            else:
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
    # the entry's bos token if the tokenizer has it, else the tokenizer's own (Llama's <|begin_of_text|>)
    vocab = tokenizer.get_vocab()
    bos = vocab[entry.bos_token] if entry.bos_token in vocab else getattr(tokenizer, "bos_token_id", None)
    numbered = entry.item_marker == NUMBERED
    digits: frozenset[int] = frozenset()
    if numbered:
        # every token whose text is digits only ("1", "12", "▁3" is not: items start at the line's start)
        digits = frozenset(i for t, i in tokenizer.get_vocab().items() if tokenizer.convert_tokens_to_string([t]).isdigit())
        if not digits:
            raise ListerError(f"model {entry.name!r}: list marker '1.' needs digit tokens, and this tokenizer has none")
    return TokenIds(
        blank=_metric_token(tokenizer, entry.blank_token, "blank (first metric token)", entry),
        newline=_metric_token(tokenizer, entry.newline_token, "newline (second metric token)", entry),
        item_marker=single_token_id(tokenizer, "." if numbered else entry.item_marker),
        stops=tuple(single_token_id(tokenizer, s) for s in entry.stop_tokens),
        bos=bos,
        style=entry.item_marker,
        digit_ids=digits,
    )


def _metric_token(tokenizer, text: str, role: str, entry: ModelEntry) -> int:
    try:
        return single_token_id(tokenizer, text)
    except ListerError as exc:
        raise ListerError(f"model {entry.name!r}, metric token {role}: {exc}; set metric_tokens in its registry entry") from exc


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
    parity = None
    if entry.source == "shipped":
        folder = Path(weights_dir) if weights_dir is not None else entry.weights_dir
        if folder != entry.weights_dir:
            entry = _with_weights_dir(entry, folder)
        model, tokenizer = _load_shipped(folder)
    else:
        from lister_tui.core.engine.pretrained import load_pretrained

        model, tokenizer, parity = load_pretrained(entry, device, torch_dtype)
    if entry.source == "shipped":
        # HookedTransformer.to takes a device or a dtype, one at a time
        model = model.to(device, print_details=False).to(torch_dtype, print_details=False)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    loaded = LoadedModel(entry, model, tokenizer, device, torch_dtype, _resolve_ids(entry, tokenizer))
    loaded.parity = None if parity is None else parity.record()
    return loaded


def _with_weights_dir(entry: ModelEntry, folder: Path) -> ModelEntry:
    from dataclasses import replace

    return replace(entry, weights_dir=folder)


# --- shipped (lister-tiny) ----------------------------------------------------------


def _rebuild_hint(folder: Path | None = None) -> str:
    from lister_tui.organism import paths

    if folder is not None and Path(folder).resolve() != paths.weights_dir().resolve():
        return f"fix or replace the files of {folder} (a lister-tiny style folder: `lister-tui organism build --out DIR` writes one)"
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
    from lister_tui.core.engine.folder_checks import model_config

    cfg_dict = model_config(folder, _rebuild_hint(folder))  # every size checked before anything is allocated
    try:
        model = build_hooked_model(cfg_dict, tokenizer)
    except (TypeError, ValueError, AssertionError, KeyError, AttributeError) as exc:  # a field of the wrong shape
        raise ModelNotAvailable(f"model config {cfg_path} cannot build a model ({type(exc).__name__}: {exc}); {_rebuild_hint(folder)}") from None
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

    if site.release is not None or site.path is not None:
        from lister_tui.core.engine.pretrained import load_pretrained_sae

        sae = load_pretrained_sae(entry, site, device)
    else:
        from lister_tui.organism import paths

        path = Path(entry.weights_dir) / paths.SAES_SUBDIR / site.id
        if not path.is_dir():
            raise ModelNotAvailable(f"SAE {site.id} of {entry.name} is missing at {path}; {_rebuild_hint(entry.weights_dir)}")
        from lister_tui.core.engine.folder_checks import sae_config

        sae_config(path, _rebuild_hint(entry.weights_dir))  # sizes checked before SAELens allocates them
        try:
            sae = SAE.load_from_disk(str(path), device=device)
        except Exception as exc:
            raise ModelNotAvailable(f"SAE {site.id} at {path} is unreadable ({exc}); {_rebuild_hint()}") from exc
    return _checked_site(sae, site, entry)


def _checked_site(sae: "SAE", site: SAESite, entry: ModelEntry) -> "SAE":
    """The SAE, made to read its site's hook the way the engine expects; a clear error if it reads another."""
    hook = sae.cfg.metadata.hook_name
    if hook != site.hook_name:
        raise ListerError(
            f"SAE {site.id} of {entry.name} ({site.source_text}) reads {hook!r}, but its site says {site.hook_name!r}; "
            "fix the site's hook (or kind and layer) in the registry entry"
        )
    if hook.endswith("hook_z") and sae.cfg.reshape_activations != "hook_z":
        # Gemma Scope 2's attention SAEs read attn.hook_z flattened over heads (o_proj's input)
        # but are loaded with reshape "none"; the engine and SAELens' splicing need "hook_z".
        sae.cfg.reshape_activations = "hook_z"
        sae.turn_on_forward_pass_hook_z_reshaping()
    return freed_when_released(sae)


def freed_when_released(sae: "SAE") -> "SAE":
    """``sae``, made free of SAELens's reference cycle, so that its memory goes when its last
    reference does.

    SAELens gives a hook_z SAE a ``reshape_fn_in`` closure over the SAE itself (it records
    ``d_head`` on the first call, then replaces itself): until then, a cycle freed only when
    Python's cycle collector next runs. Streaming attribution then held up to 4 SAEs at once
    instead of 2 (bench/memory.py); at Gemma Scope's width an attention SAE is hundreds of
    MB. The same function, with a weak reference to the SAE, breaks the cycle.
    """
    if not getattr(sae, "hook_z_reshaping_mode", False):
        return sae
    import weakref

    import einops

    owner = weakref.ref(sae)

    def reshape_fn_in(x):
        sae_now = owner()
        if sae_now is not None:
            sae_now.d_head = x.shape[-1]
        return einops.rearrange(x, "... n_heads d_head -> ... (n_heads d_head)")

    sae.reshape_fn_in = reshape_fn_in
    return sae
