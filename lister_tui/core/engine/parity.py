"""Parity at load: lister-tui's model and transformers' model, from the same folder, on one probe.

After a Hugging Face folder is converted to TransformerLens, one forward pass of a fixed probe
prompt runs through both; the largest |logit difference| over every position and vocabulary
entry is the figure. It is refused above a tolerance per dtype, relative to the logits' scale:

    tolerance = TOLERANCE[dtype] x max(1, largest |logit| of the transformers model)

float32 1e-4 (the two implementations agree to ~1e-6 there); float16 1e-2 and bfloat16 5e-2
(rounding: tiny random models of every supported architecture differ by 0.6-1.6 % of the logit
scale in bfloat16). A half-precision check therefore cannot see a small systematic error; the
float32 check (``lister-tui models NAME --check``, float32 on the CPU by default) can.

The result is cached per folder fingerprint and dtype (``<cache>/parity/``), so it costs once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lister_tui.core.engine.fingerprint import model_folder_key as folder_key
from lister_tui.core.errors import ListerError
from lister_tui.core.files.atomic import atomic_write_bytes
from lister_tui.core.files.locations import cache_dir

PROBE_TEXT = (
    "Provide me with a short list of Fruits. Just provide the names, no need for any other information.\n"
    "- Apple\n- Banana \n- Cherry\n-"
)
MAX_PROBE_TOKENS = 48
TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}
DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
_FORMAT = 1


@dataclass(frozen=True)
class Parity:
    """One parity check: the figure, what it is measured against, and whether it passes."""

    max_abs_diff: float
    logit_scale: float  # the largest |logit| of the transformers model on the probe
    tolerance: float  # absolute: TOLERANCE[dtype] x max(1, logit_scale)
    dtype: str
    n_tokens: int
    architecture: str
    fingerprint: str
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def record(self) -> dict:
        """JSON-ready, as session and sweep manifests keep it."""
        out = asdict(self)
        out["ok"] = self.ok
        return out

    def line(self) -> str:
        return (
            f"largest |logit difference| {self.max_abs_diff:.3g} over {self.n_tokens} probe tokens ({self.dtype}; "
            f"tolerance {self.tolerance:.3g} = {TOLERANCE[_dtype(self.dtype)]:g} x max(1, largest |logit| {self.logit_scale:.3g}))"
        )


def _dtype(name: str) -> torch.dtype:
    return {v: k for k, v in DTYPE_NAMES.items()}[name]


def _cache_file(key: str, dtype: torch.dtype) -> Path:
    return cache_dir() / "parity" / f"{key}-{DTYPE_NAMES[dtype]}.json"


def cached_parity(folder: Path, dtype: torch.dtype) -> Parity | None:
    """The parity measured before for this folder (same files) and dtype, else None."""
    path = _cache_file(folder_key(folder), dtype)
    try:
        data = json.loads(path.read_text())
        if data.pop("format", None) != _FORMAT:
            return None
        data.pop("ok", None)
        return Parity(**{**data, "cached": True})
    except (OSError, ValueError, TypeError):
        return None


def probe_ids(tokenizer) -> torch.Tensor:
    """The probe prompt's token ids (with the tokenizer's own special tokens), [1, n]."""
    ids = tokenizer(PROBE_TEXT, add_special_tokens=True)["input_ids"][:MAX_PROBE_TOKENS]
    if not ids:
        raise ListerError("the tokenizer makes no tokens of the parity probe; check tokenizer.json")
    return torch.tensor([ids], dtype=torch.long)


@torch.no_grad()
def measure_parity(tl_model, hf_model, tokenizer, folder: Path, dtype: torch.dtype, architecture: str) -> Parity:
    """One forward of the probe through both models (on the CPU, where both are); the figure, cached."""
    ids = probe_ids(tokenizer)
    hf_logits = hf_model(ids.to(hf_model.device)).logits.float().cpu()
    tl_logits = tl_model(ids.to(tl_model.cfg.device)).float().cpu()
    if hf_logits.shape[-1] != tl_logits.shape[-1]:
        n = min(hf_logits.shape[-1], tl_logits.shape[-1])
        hf_logits, tl_logits = hf_logits[..., :n], tl_logits[..., :n]
    diff = (hf_logits - tl_logits).abs()
    max_diff = float(diff.max()) if torch.isfinite(diff).all() else float("inf")
    scale = float(hf_logits.abs().max())
    parity = Parity(
        max_abs_diff=max_diff,
        logit_scale=scale,
        tolerance=TOLERANCE[dtype] * max(1.0, scale),
        dtype=DTYPE_NAMES[dtype],
        n_tokens=int(ids.shape[1]),
        architecture=architecture,
        fingerprint=folder_key(folder),
    )
    if max_diff != float("inf"):
        try:
            payload = {**parity.record(), "format": _FORMAT}
            _cache_file(parity.fingerprint, dtype).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(_cache_file(parity.fingerprint, dtype), json.dumps(payload, indent=1).encode())
        except OSError:
            pass  # a read-only cache costs a re-check next time, nothing else
    return parity


def refusal(parity: Parity, name: str, folder: Path) -> ListerError:
    """The error for a failed check: the figure, the tolerance and the likely cause."""
    return ListerError(
        f"model {name!r}: lister-tui's model and transformers' model from {folder} disagree: {parity.line()}. "
        f"Likely cause: a setting of its config.json ({parity.architecture}) that TransformerLens's conversion does not "
        "carry (attention or MLP biases, a rope or normalisation variant), or weights that do not fit the config. "
        f"The model is not loaded; `lister-tui models {name} --check` repeats the check"
        + ("." if parity.dtype == "float32" else " in float32.")
    )
