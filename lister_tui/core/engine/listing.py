"""The structure of a generated list, as token positions and as text metrics.

Token structure follows the study's code: an item runs from an item marker ("-")
to the next line break (list styles: "-" and "*" are one marker token; a numbered
"1." item opens at the dot token after a line's leading digit tokens); its last token is the one before the line break, or the
one before that when it is the filler blank. The attribution position is the last
item's last token. Text metrics follow the study: items are lines starting with
"-", repeated items are ``len(items) - len(set(items))``, and the Shannon index is
taken per generation (the code's) or pooled over a topic's generations (the post's).

**What is an item.** A line that starts with the list marker and has text after it (the
text stripped of spaces). A marker line with no text — a lone ``-``, or ``- `` with only a
blank, most often the last line before the end token (the model opened one more item and
then ended the list) — is *not* an item: ``n_items`` leaves it out, as the study's code
did. Such lines are counted on their own, in ``empty_items`` (the list metrics, the
session's tables, the sweep's generations table and the exports), so that a reader can see
them instead of finding that a list of "5 items" shows six markers. Sessions written before
that column existed get it from the saved tokens when read (a marker followed by nothing
but blank tokens up to the line break or the end).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from lister_tui.core.engine.token_ids import NUMBERED, TokenIds
from lister_tui.core.errors import ListerError

_NUMBERED_LINE = re.compile(r"^\d+\.(.*)$")


@dataclass(frozen=True)
class ItemSpan:
    index: int  # 0-based item number
    marker_pos: int  # the "-" that opens it
    newline_pos: int | None  # the line break that closes it; None when cut off
    last_token_pos: int  # its last token, skipping a trailing filler blank
    has_filler: bool


@dataclass(frozen=True)
class ListStructure:
    items: tuple[ItemSpan, ...]
    filler_positions: tuple[int, ...]  # positions of blanks that stand right before a line break
    end_pos: int | None  # position of the first stop token, if any
    attribution_pos: int | None  # the last complete item's last token

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def filler_items(self) -> tuple[int, ...]:
        return tuple(item.index for item in self.items if item.has_filler)


def empty_marker_lines(tokens: Sequence[int], ids: TokenIds, structure: ListStructure, first_marker_pos: int) -> int:
    """Marker lines with nothing but blank tokens after the marker, up to the line break or the
    end (``empty_items`` of a session saved before that column; see the module's item rule)."""
    stop_at = structure.end_pos if structure.end_pos is not None else len(tokens)
    count = 0
    line: list[int] = []
    for pos in range(first_marker_pos, stop_at + 1):
        tok = tokens[pos] if pos < stop_at else None
        if tok is None or tok == ids.newline:
            if line and line[0] == ids.item_marker and all(t == ids.blank for t in line[1:]):
                count += 1
            line = []
        else:
            line.append(tok)
    return count


def parse_structure(tokens: Sequence[int], ids: TokenIds, first_marker_pos: int) -> ListStructure:
    """Items, filler blanks and the end of the list in ``tokens`` (prompt + continuation).

    ``first_marker_pos`` is the position of the prompt's own final "-", where the
    first item starts; everything before it is the user's turn.
    """
    if not 0 <= first_marker_pos < len(tokens) or tokens[first_marker_pos] != ids.item_marker:
        # a ListerError (a ValueError): a session edited by hand or saved with another model's tokens
        raise ListerError(
            f"position {first_marker_pos} does not hold the item marker (token {ids.item_marker}): this list's tokens do not "
            "match the model's; the session was edited or saved with another model"
        )
    stops = set(ids.stops)
    end_pos = next((p for p in range(first_marker_pos, len(tokens)) if tokens[p] in stops), None)
    stop_at = end_pos if end_pos is not None else len(tokens)
    items: list[ItemSpan] = []
    fillers: list[int] = []
    marker: int | None = None
    numbered = ids.style == NUMBERED
    line_start: int | None = None  # numbered lists: where the current line began, while it may still open an item
    for pos in range(first_marker_pos, stop_at):
        tok = tokens[pos]
        if numbered and pos > first_marker_pos and marker is None and line_start is not None and tok != ids.newline:
            # a numbered item opens with digit tokens then the marker token ("12" "." or "1" "2" ".")
            if tok == ids.item_marker and pos > line_start and all(tokens[q] in ids.digit_ids for q in range(line_start, pos)):
                marker, line_start = pos, None
            elif tok not in ids.digit_ids:
                line_start = None  # this line is prose, not an item
        elif tok == ids.item_marker and marker is None and (not numbered or pos == first_marker_pos):
            marker = pos
        if tok == ids.newline:
            if marker is not None:
                has_filler = pos - 1 > marker and tokens[pos - 1] == ids.blank
                last = pos - 2 if has_filler else pos - 1
                if last > marker:  # an empty "-\n" line is no item
                    items.append(ItemSpan(len(items), marker, pos, last, has_filler))
                marker = None
            line_start = pos + 1
        if tok == ids.newline and pos > 0 and tokens[pos - 1] == ids.blank:
            fillers.append(pos - 1)
    if marker is not None and stop_at - 1 > marker:
        # a last item cut off by the token cap: counted, but it has no line break
        last = stop_at - 1
        items.append(ItemSpan(len(items), marker, None, last, False))
    complete = [i for i in items if i.newline_pos is not None]
    attribution_pos = complete[-1].last_token_pos if complete else None
    return ListStructure(tuple(items), tuple(fillers), end_pos, attribution_pos)


def _marker_lines(continuation: str, item_marker: str) -> list[str]:
    """The text after the marker of every line that starts with one (the prompt's final marker
    opens the first line), stripped."""
    text = ("1." if item_marker == NUMBERED else item_marker) + continuation
    names = []
    for line in text.split("\n"):
        if item_marker == NUMBERED:
            match = _NUMBERED_LINE.match(line)
            if match:
                names.append(match.group(1).strip())
        elif line.startswith(item_marker):
            names.append(line[len(item_marker) :].strip())
    return names


def items_from_text(continuation: str, item_marker: str = "-") -> list[str]:
    """Item names of a list, from the text after the prompt's final marker.

    ``item_marker`` is the list style: lines starting with it ("-", "*") are items;
    with "1." lines starting with a number and a dot are. A marker line with no text is
    no item (the module's item rule); :func:`empty_items_from_text` counts those."""
    return [name for name in _marker_lines(continuation, item_marker) if name]


def empty_items_from_text(continuation: str, item_marker: str = "-") -> int:
    """Marker lines with no text after the marker (a trailing ``- `` before the end): not items."""
    return sum(1 for name in _marker_lines(continuation, item_marker) if not name)


def shannon_index(names: Iterable[str]) -> float:
    """Shannon diversity -sum p ln p of item names (0 for an empty list)."""
    counts = Counter(names)
    total = sum(counts.values())
    if total == 0:
        return 0.0
    return -sum(c / total * math.log(c / total) for c in counts.values())


@dataclass(frozen=True)
class ListMetrics:
    n_items: int
    n_tokens: int  # generated tokens, the stop token included
    repeated_items: int
    diversity: float  # Shannon index of this generation's items
    filler_count: int
    filler_items: tuple[int, ...]
    reached_end: bool
    metric_at_attribution: float | None = None
    empty_items: int = 0  # marker lines with no text (not items; see the module's item rule)


def list_metrics(
    tokens: Sequence[int],
    prompt_len: int,
    ids: TokenIds,
    decode: Callable[[Sequence[int]], str],
    metric_at_attribution: float | None = None,
) -> ListMetrics:
    structure = parse_structure(tokens, ids, prompt_len - 1)
    stop_at = structure.end_pos if structure.end_pos is not None else len(tokens)
    text = decode(list(tokens[prompt_len:stop_at]))
    names = items_from_text(text, ids.style)
    return ListMetrics(
        n_items=len(names),
        n_tokens=len(tokens) - prompt_len,
        repeated_items=len(names) - len(set(names)),
        diversity=shannon_index(names),
        filler_count=len(structure.filler_positions),
        filler_items=structure.filler_items,
        reached_end=structure.end_pos is not None,
        metric_at_attribution=metric_at_attribution,
        empty_items=empty_items_from_text(text, ids.style),
    )


def topic_diversity(item_lists: Iterable[Sequence[str]]) -> float:
    """The post's diversity: Shannon index of all items pooled across a topic's generations."""
    return shannon_index(name for names in item_lists for name in names)
