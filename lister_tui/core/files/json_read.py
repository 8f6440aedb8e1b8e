"""Reading JSON that came from elsewhere (a session or sweep manifest, a shard): size and nesting
checked before parsing, so a damaged or hostile file gives a ListerError, not a RecursionError or a
runaway allocation."""

from __future__ import annotations

import json
import re
from typing import Any

from lister_tui.core.errors import ListerError

MAX_MANIFEST_BYTES = 64 << 20  # a v0 session manifest holds its samples inline
MAX_DEPTH = 64  # a session manifest nests 4 deep; json.loads recurses once per level
MAX_INT_DIGITS = 40  # every integer lister-tui writes (revisions, seeds, counts) has fewer digits
_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def parse_json(text: str, where: str) -> Any:
    """``text`` parsed, after its size and nesting depth are checked (a 100,000-deep manifest would
    otherwise exhaust the interpreter's recursion)."""
    if len(text) > MAX_MANIFEST_BYTES:
        raise ListerError(f"{where} is {len(text)} bytes; a manifest holds at most {MAX_MANIFEST_BYTES} (the file is damaged or not a manifest)")
    depth = deepest = 0
    for ch in re.findall(r"[\[\]{}]", _STRING_RE.sub('""', text)):
        depth += 1 if ch in "[{" else -1
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            raise ListerError(f"{where} nests deeper than {MAX_DEPTH} levels; it is damaged or not a lister-tui manifest")

    def bounded_int(digits: str) -> int:
        # Python refuses to convert integers of more than 4300 digits with a bare ValueError;
        # no number lister-tui writes comes near MAX_INT_DIGITS
        if len(digits.lstrip("-")) > MAX_INT_DIGITS:
            raise ListerError(
                f"{where} holds an integer of {len(digits.lstrip('-'))} digits ({digits[:12]}…); "
                f"its numbers have at most {MAX_INT_DIGITS} digits, so the file is damaged"
            )
        return int(digits)

    try:
        return json.loads(text, parse_int=bounded_int)
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise ListerError(f"{where} nests too deep to read; it is damaged") from None
