"""Headers that fit their width by dropping whole parts, never by cutting a phrase in two.

A header is a list of parts, each with a rank: 0 for the key figures (kept to the last), higher
for what can go first. When the parts do not fit, the highest-ranked part goes, then the next,
until the rest fits; only the key figures alone are ever cut (with an ellipsis), at a width where
nothing else is left. Parts are Rich ``Text`` or ``str`` (our own literals); untrusted strings
are passed through :func:`lister_tui.safe_text.visible` by the caller before they get here.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from lister_tui.safe_text import visible

SEPARATOR = " · "


@dataclass(frozen=True)
class Part:
    text: Text | str
    rank: int = 0  # 0: a key figure, kept longest; higher ranks are dropped first
    style: str = ""


def fit(parts: list[Part], width: int, style: str = "") -> Text:
    """The parts that fit ``width`` cells, in their order, joined by " · "."""
    kept = list(parts)

    def join(chosen: list[Part]) -> Text:
        out = Text(style=style, no_wrap=True, overflow="ellipsis")
        for i, part in enumerate(chosen):
            if i:
                out.append(SEPARATOR)
            if isinstance(part.text, Text):
                out.append_text(part.text)  # safe-text: a Text the caller built by visible()/text()
            else:
                out.append(Text(visible(part.text), style=part.style))
        return out

    line = join(kept)
    while line.cell_len > width and any(p.rank > 0 for p in kept):
        worst = max(p.rank for p in kept)
        drop = max(i for i, p in enumerate(kept) if p.rank == worst)  # the last of the highest rank first
        kept.pop(drop)
        line = join(kept)
    line.truncate(max(width, 1), overflow="ellipsis")
    return line
