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
    try:
        return json.loads(text)
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise ListerError(f"{where} nests too deep to read; it is damaged") from None
