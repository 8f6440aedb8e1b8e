"""Hostile values generated from the input formats' own schemas (a plain module for the fuzz tests).

Fields are never listed by hand: a session's table columns come from ``schema.SCHEMAS``, a manifest's,
a theme's, a settings file's and a registry file's fields from walking a valid file of that kind, the
subcommands and their options from the Typer app. A new column, key, screen or option is fuzzed
without anyone remembering it.

``LISTER_TUI_FUZZ=full`` tries every hostile value on every field (minutes); by default each field
gets one value, the values taken in turn across fields, so that every value and every field is
covered in about a minute.
"""

from __future__ import annotations

import copy
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

FULL = os.environ.get("LISTER_TUI_FUZZ") == "full"

C0 = "".join(chr(c) for c in range(0x20) if c != 0x0A) + "\x7f"
C1 = "".join(chr(c) for c in range(0x80, 0xA0))
# clipboard (OSC 52), a hyperlink (OSC 8), clear screen and home (CSI), a DCS query, their 8-bit forms
ESCAPES = "\x1b]52;c;QUFBQQ==\x07\x1b]8;;http://e.invalid\x1b\\link\x1b]8;;\x1b\\\x1b[2J\x1b[H\x1bP1$r\x1b\\\x9b2J\x9d52;c;AA\x9c"
BIDI = "a\u202eb\u2066c\u2067d\u2068e\u2069f\u202ag\u202bh\u202ci\u202dj\u200ek\u200fl\u061cm"
INVISIBLE = "a\u2028b\u2029c\u200bd\ufeffe\U000e0041f\u2060g"
MARKUP = "[/][bold red]x[link=http://e.invalid]y[/link][$text-success]z[/"

HOSTILE_STRINGS: dict[str, str] = {
    "markup": MARKUP,
    "c0": "c0" + C0,
    "c1": "c1" + C1,
    "escapes": ESCAPES,
    "bidi": BIDI,
    "invisible": INVISIBLE,
    "empty": "",
    "1MB": "[" + "x" * (1 << 20),
}

HOSTILE_INTS = {"minus one": -1, "int64 max": 2**63 - 1, "int64 min": -(2**63), "zero": 0}
HOSTILE_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "huge": -1e308}


def nested(depth: int):
    out: list = []
    for _ in range(depth):
        out = [out]
    return out


# values of any type for a JSON or TOML field (a wrong type is as hostile as a wrong value)
HOSTILE_JSON: dict[str, object] = {
    **{f"str {k}": v for k, v in HOSTILE_STRINGS.items()},
    "null": None,
    "minus one": -1,
    "a 400-digit int": int("9" * 400),
    "nan": math.nan,
    "a list": [MARKUP, 1],
    "an object": {"x": MARKUP},
    "nested 300 deep": nested(300),
    "true": True,
}


def pick(values: dict, index: int) -> dict:
    """All of ``values`` (full run), else the ``index``-th in turn: each field one value, every value used."""
    if FULL:
        return values
    names = list(values)
    name = names[index % len(names)]
    return {name: values[name]}


def json_leaves(obj, path: tuple = ()) -> list[tuple]:
    """Every path to a field of ``obj``: each value in a dict or a list, leaves and inner nodes."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append(path + (k,))
            out += json_leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            out.append(path + (i,))
            out += json_leaves(v, path + (i,))
    return out


def with_leaf(obj, path: tuple, value):
    new = copy.deepcopy(obj)
    at = new
    for key in path[:-1]:
        at = at[key]
    at[path[-1]] = value
    return new


def byte_damage(data: bytes, seed: int) -> dict[str, bytes]:
    """A file truncated, emptied, with flipped bytes, or of another shape."""
    rng = random.Random(seed)
    out = {
        "truncated to half": data[: len(data) // 2],
        "last byte cut": data[:-1],
        "emptied": b"",
        "a JSON list": b"[]",
        "invalid UTF-8": b"\xff\xfe\x00" + data[:20],
    }
    if data:
        flipped = bytearray(data)
        for _ in range(3):
            i = rng.randrange(len(flipped))
            flipped[i] ^= 1 << rng.randrange(8)
        out["3 bits flipped"] = bytes(flipped)
    return out


def raw_unsafe(output: str) -> list[str]:
    """Characters in raw terminal output that must never be there: ESC and every other C0 control but
    newline (a tab is tolerated from Rich's own layout), C1 controls, bidi and invisible format characters."""
    from lister_tui.safe_text import is_safe

    return sorted({ch for ch in output if ch != "\t" and not is_safe(ch)})


@dataclass
class Tally:
    """What a fuzzer tried: cases (fields or files) × inputs, and the breaks it met."""

    cases: set = field(default_factory=set)
    runs: int = 0
    breaks: list = field(default_factory=list)

    def add(self, case, ok: bool, what: str = "") -> None:
        self.cases.add(case)
        self.runs += 1
        if not ok:
            self.breaks.append((case, what))

    def line(self, name: str) -> str:
        return f"{name}: {len(self.cases)} cases, {self.runs} inputs, {len(self.breaks)} breaks"


def report(line: str) -> None:
    """Append a fuzzer's counts to $LISTER_TUI_FUZZ_REPORT (the docs quote them), if set."""
    target = os.environ.get("LISTER_TUI_FUZZ_REPORT")
    if target:
        with Path(target).open("a", encoding="utf-8") as f:
            f.write(line + "\n")


def toml_text(data: dict) -> str:
    """``data`` as TOML (enough for the fuzzers: tables, arrays of tables, strings, numbers, lists)."""
    import json as _json

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if v != v else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            # a JSON string is a TOML basic string once DEL is escaped too
            return _json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{_json.dumps(str(k))} = {value(x)}" for k, x in v.items()) + "}"
        if v is None:
            return '""'  # TOML has no null: the closest wrong value
        raise TypeError(type(v))

    lines: list[str] = []

    def table(prefix: list[str], d: dict) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict) and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))}
        if prefix:
            lines.append("[" + ".".join(_json.dumps(p) for p in prefix) + "]")
        lines.extend(f"{_json.dumps(str(k))} = {value(v)}" for k, v in scalars.items())
        for k, v in d.items():
            if isinstance(v, dict):
                table(prefix + [str(k)], v)
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                for item in v:
                    lines.append("[[" + ".".join(_json.dumps(p) for p in prefix + [str(k)]) + "]]")
                    lines.extend(f"{_json.dumps(str(a))} = {value(b)}" for a, b in item.items())

    table([], data)
    return "\n".join(lines) + "\n"
