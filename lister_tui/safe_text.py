"""One rule for untrusted text: shown as text, never as markup, with control characters made visible.

Strings from a session file, a sweep's shards, a model's vocabulary, a theme or settings file, or
the user's typing can carry terminal escape sequences (``ESC ] 52 ; c ; … BEL`` sets the
terminal's clipboard), Rich markup (``[/]`` raises, ``[link=…]`` styles), bidi overrides that
reorder what is shown, or lone surrogates that cannot be encoded. Every place that shows such a
string goes through :func:`visible` (a plain ``str`` with markers) or :func:`text` (a Rich ``Text``,
which never parses markup). The CLI, the explorer's notifications, dialogs and token view use it.

The markers extend the token view's whitespace vocabulary: C0 controls and DEL become their
Unicode Control Pictures (``␛`` for ESC, ``␇`` for BEL, ``␍`` for CR, ``␡`` for DEL); C1 controls,
bidi controls, line/paragraph separators, other invisible format characters (tag characters,
zero-width space; not the joiners) and lone surrogates become ``⟨U+XXXX⟩``.
"""

from __future__ import annotations

import unicodedata

from rich.text import Text

# The token view's whitespace markers (a token's own spaces matter there).
BLANK, NEWLINE, TAB, OTHER_SPACE, EMPTY = "·", "↵", "⇥", "⍽", "∅"
DEL_MARK = "\u2421"  # ␡

# Invisible characters that change how the text around them is shown: bidi embeddings,
# overrides and isolates (U+202A–202E, U+2066–2069), marks (U+200E/200F, U+061C), the line and
# paragraph separators (U+2028/2029), zero-width space and no-break space (U+200B, U+FEFF).
_FORMAT = frozenset(
    [0x061C, 0x200B, 0x200E, 0x200F, 0x2028, 0x2029, 0xFEFF]
    + list(range(0x202A, 0x202F))
    + list(range(0x2066, 0x206A))
)


_KEEP_FORMAT = frozenset([0x00AD, 0x200C, 0x200D])


def _code_mark(code: int) -> str:
    return f"⟨U+{code:04X}⟩"


def _control_mark(ch: str) -> str | None:
    """The marker for a character that must not reach the terminal as it is, else None."""
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ … ␟ (␛ for ESC)
    if code == 0x7F:
        return DEL_MARK
    if 0x80 <= code <= 0x9F or code in _FORMAT or 0xD800 <= code <= 0xDFFF:
        return _code_mark(code)
    # every other invisible format character (tag characters can hide text, U+2060.., U+FFF9..),
    # except the joiners that emoji and some scripts need and the soft hyphen
    if code > 0x7F and code not in _KEEP_FORMAT and unicodedata.category(ch) == "Cf":
        return _code_mark(code)
    return None


def visible(s: object, *, keep_newlines: bool = False) -> str:
    """``s`` as a string safe to print: every control or invisible format character becomes a marker.

    Ordinary spaces stay spaces (this is for names, messages and values). With
    ``keep_newlines`` a ``\\n`` stays a line break (multi-line messages); otherwise it is ``↵``."""
    s = str(s)
    out = []
    for ch in s:
        if ch == "\n":
            out.append("\n" if keep_newlines else NEWLINE)
        elif ch == "\t":
            out.append(TAB)
        else:
            mark = _control_mark(ch)
            out.append(ch if mark is None else mark)
    return "".join(out)


def visible_token(s: str) -> str:
    """A token's string with every whitespace and control character shown (the token view's rule)."""
    if s == "":
        return EMPTY
    out = []
    for ch in s:
        if ch == " ":
            out.append(BLANK)
        elif ch == "\n":
            out.append(NEWLINE)
        elif ch == "\t":
            out.append(TAB)
        else:
            mark = _control_mark(ch)
            if mark is not None:
                out.append(mark)
            elif ch.isspace():
                out.append(OTHER_SPACE)
            else:
                out.append(ch)
    return "".join(out)


def text(s: object, style: str = "", *, keep_newlines: bool = False) -> Text:
    """A Rich ``Text`` of ``visible(s)``: never parsed as markup."""
    return Text(visible(s, keep_newlines=keep_newlines), style=style)


def is_safe(s: str) -> bool:
    """True when ``s`` holds nothing :func:`visible` would mark (a newline counts as safe)."""
    return all(ch == "\n" or _control_mark(ch) is None for ch in s)
