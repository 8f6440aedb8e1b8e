"""Sampling settings and their bounds, apart from the sampler so that reading a manifest's
sampling values (`lister-tui sessions`, `open`, `export`) imports no torch."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lister_tui.core.errors import ListerError

# Stated bounds of a sampling setting (checked before any model runs).
from lister_tui.core.limits import MAX_NEW_TOKENS, MAX_TEMPERATURE, MAX_TOP_K  # noqa: E402  (the one home of the bounds)


def _number(name: str, value: object, *, integer: bool = False) -> float:
    """``value`` as a finite number (an int if ``integer``), else a ListerError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        raise ListerError(f"{name} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise ListerError(f"{name} must be a finite number, got {value!r}")
    return value


@dataclass(frozen=True)
class SamplingSettings:
    """How continuations are sampled. ``temperature == 0`` means greedy decoding."""

    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int | None = None
    max_new_tokens: int = 100

    def __post_init__(self) -> None:
        # Types are checked too: these values also come from a session's or a sweep's manifest.
        if not 0 <= _number("temperature", self.temperature) <= MAX_TEMPERATURE:
            raise ListerError(f"temperature must be in [0, {MAX_TEMPERATURE:g}] (0 = greedy), got {self.temperature}")
        if not 0 < _number("top_p", self.top_p) <= 1:
            raise ListerError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and not 1 <= _number("top_k", self.top_k, integer=True) <= MAX_TOP_K:
            raise ListerError(f"top_k must be in [1, {MAX_TOP_K}] or None, got {self.top_k}")
        if not 1 <= _number("max_new_tokens", self.max_new_tokens, integer=True) <= MAX_NEW_TOKENS:
            raise ListerError(f"max_new_tokens must be in [1, {MAX_NEW_TOKENS}], got {self.max_new_tokens}")
