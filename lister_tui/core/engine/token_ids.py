"""The token ids a model's list structure is read with, apart from loading so that reading a
session's manifest (`lister-tui sessions`, `open`, `export`) imports no torch."""

from __future__ import annotations

from dataclasses import dataclass

NUMBERED = "1."  # the numbered list style


@dataclass(frozen=True)
class TokenIds:
    blank: int
    newline: int
    item_marker: int  # the marker token ("-", "*"; for numbered lists the dot after the number)
    stops: tuple[int, ...]
    bos: int | None
    style: str = "-"  # the list style: "-", "*" or "1."
    digit_ids: frozenset[int] = frozenset()  # numbered lists: the tokens made of digits only
