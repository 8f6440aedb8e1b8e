"""Table column names shared by the sweep's tables and a session's exports, and the
migration that reads tables written under an older name.

``plain_metric_at_last_item`` was called ``metric_at_attribution`` in tables (and in
every column built from it: ``…_change_mean``, ``base_…``, ``delta_…``). The old name
read as the ablation's effect on the metric; the value is the plain (unablated)
model's logit(blank) − logit(newline) at each list's *own* last complete item, so a
"change" compares two different lists at two different positions. The ablation's
effect on the metric at one fixed position is the faithfulness check's
``measured_metric_change`` (sweep) or ``direct_metric_change`` (explorer exports).
"""

from __future__ import annotations

import re
from typing import Mapping

import pandas as pd

PLAIN_METRIC = "plain_metric_at_last_item"
PLAIN_METRIC_DESCRIPTION = (
    "the plain (unablated) model's logit(blank) − logit(newline) at this list's own last complete item's last "
    "token (a filler blank skipped); for an ablated or baseline list it is read on that regenerated list without "
    "the ablation, so its change compares two lists at their own last items and is not the ablation's effect on "
    "the metric (that is measured_metric_change in faithfulness_pairs)"
)
ITEM_RULE = (
    "items are the lines of the continuation, up to the end token, that start with the list marker ('-'; '*' or "
    "'N.' for those list styles) and have text after it; a marker line with no text (a lone '-', e.g. one cut "
    "off by the token cap right after the marker) is not an item, while an item cut off by the cap after some "
    "text is counted; marker lines with no text are counted in empty_items"
)
EMPTY_ITEMS_OLD = "missing in tables written before the column existed (sessions read it from their saved tokens)"

# old name -> new name; a column holding the old name as a whole word part is renamed
OLD_NAMES: Mapping[str, str] = {"metric_at_attribution": PLAIN_METRIC}
_PATTERNS = [(re.compile(rf"(?<![A-Za-z]){re.escape(old)}(?=_|$)"), new) for old, new in OLD_NAMES.items()]


def current_name(column: str) -> str:
    """``column`` under today's name (``metric_at_attribution_change_mean`` →
    ``plain_metric_at_last_item_change_mean``); other names unchanged."""
    for pattern, new in _PATTERNS:
        column = pattern.sub(new, column)
    return column


def migrate_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A table read from a file, with old column names renamed (a column already present
    under the new name wins)."""
    renames = {c: current_name(c) for c in frame.columns if isinstance(c, str) and current_name(c) != c}
    renames = {old: new for old, new in renames.items() if new not in frame.columns}
    return frame.rename(columns=renames) if renames else frame


def migrate_row(row: dict) -> dict:
    """A row (as a dict) with old keys renamed, as :func:`migrate_frame`."""
    out = {}
    for key, value in row.items():
        new = current_name(key) if isinstance(key, str) else key
        out[new if new == key or new not in row else key] = value
    return out
