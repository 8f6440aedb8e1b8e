"""A features x samples heatmap with a cell cursor, column labels and a colour legend (the expression matrix).

The cells share the width left by the row labels (so the matrix fills the screen whatever the
terminal's size; a column only scrolls sideways when there are more columns than cells of one
character). Above the grid, one row per :class:`ColumnHeader` names the columns: consecutive
columns with the same value share one label (a template's run of columns reads as a group), in
full where it fits, else by its short code. Under the grid, the legend says which value each
colour of :data:`HEAT` stands for. Labels are shown as text (Rich ``Text``), never as markup.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.cells import cell_len, set_cell_size
from rich.style import Style
from rich.text import Text

from lister_tui.safe_text import visible
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

# A sequential scale of xterm-256 colours, low to high: HEAT[0] is 0 or less, HEAT[1:] split (0, max].
HEAT: tuple[str, ...] = ("#1c1c1c", "#262626", "#005f5f", "#008787", "#00af87", "#5fd75f", "#afd700", "#ffd700", "#ffaf00", "#ff5f00")
LEGEND_SWATCH = "▇▇"
# Alternating backgrounds of the column labels' groups, so that where one group ends shows.
HEADER_BG = ("#3a3a3a", "#262626")


def heat_level(v: float, vmax: float) -> int:
    """The index into HEAT of value ``v`` on a scale whose top is ``vmax``."""
    if v <= 0:
        return 0
    return 1 + min(len(HEAT) - 2, int(v / vmax * (len(HEAT) - 1)))


def colour_legend(vmax: float, what: str) -> Text:
    """``what: 0 ▇▇▇…▇ vmax`` with each swatch in its HEAT colour (the first one: 0 or less)."""
    out = Text(visible(f"{what}: 0 "), no_wrap=True, overflow="ellipsis")
    for colour in HEAT:
        out.append(LEGEND_SWATCH, style=Style(color=colour))
    out.append(f" {vmax:.3g}", style="bold")
    out.append(f"  (each step {vmax / (len(HEAT) - 1):.2g}; darkest: 0)", style="dim")
    return out


@dataclass(frozen=True)
class ColumnHeader:
    """One row of column labels: its name (in the row labels' gutter) and a label per column,
    in full (shown where it fits) and short (a code of a character or two, explained in a legend)."""

    name: str
    full: tuple[str, ...]
    short: tuple[str, ...]


def column_widths(width: int, n_cols: int) -> list[int]:
    """Cell widths that fill ``width`` with ``n_cols`` columns (at least 1 each; the first ones
    take the remainder)."""
    if n_cols <= 0:
        return []
    base, extra = divmod(max(width, n_cols), n_cols)
    return [base + (1 if c < extra else 0) for c in range(n_cols)]


class Heatmap(Widget, can_focus=True):
    DEFAULT_CSS = """
    Heatmap { height: 1fr; background: $surface; }
    """

    row: reactive[int] = reactive(0)
    col: reactive[int] = reactive(0)

    class Moved(Message):
        def __init__(self, row: int, col: int) -> None:
            super().__init__()
            self.row, self.col = row, col

    def __init__(self, *, id: str | None = None, legend: str = "max activation") -> None:
        super().__init__(id=id)
        self.values = np.zeros((0, 0))
        self.row_labels: list[str] = []
        self.headers: tuple[ColumnHeader, ...] = ()
        self.legend = legend
        self._top = 0
        self._left = 0
        # the layout of the last render (what the user saw): the row labels' width and each shown column's
        self.label_width = 0
        self.cell_widths: list[int] = []

    def show(self, values: np.ndarray, row_labels: list[str], headers: tuple[ColumnHeader, ...] = ()) -> None:
        self.values = values
        self.row_labels = row_labels
        self.headers = tuple(headers)
        self.row = min(self.row, max(values.shape[0] - 1, 0))
        self.col = min(self.col, max(values.shape[1] - 1, 0))
        self.refresh()
        self.post_message(self.Moved(self.row, self.col))

    def move(self, dr: int, dc: int) -> None:
        if self.values.size == 0:
            return
        self.row = max(0, min(self.values.shape[0] - 1, self.row + dr))
        self.col = max(0, min(self.values.shape[1] - 1, self.col + dc))
        self.post_message(self.Moved(self.row, self.col))

    def watch_row(self) -> None:
        self.refresh()

    def watch_col(self) -> None:
        self.refresh()

    @property
    def vmax(self) -> float:
        return float(self.values.max()) if self.values.size and self.values.max() > 0 else 1.0

    def _visible_columns(self, width: int) -> list[int]:
        """The cell widths of the columns shown (from ``self._left``), filling ``width``."""
        n_cols = self.values.shape[1]
        if n_cols <= width:
            self._left = 0
            return column_widths(width, n_cols)
        # more columns than characters: one character each, scrolled to keep the cursor in view
        if self.col < self._left:
            self._left = self.col
        elif self.col >= self._left + width:
            self._left = self.col - width + 1
        return [1] * width

    def _header_line(self, header: ColumnHeader, widths: list[int], label_w: int) -> Text:
        out = Text(no_wrap=True)
        out.append(set_cell_size(visible(header.name), label_w - 1) + " ", style="dim italic")
        c, group = self._left, 0
        end = self._left + len(widths)
        while c < end:
            # a run of columns with the same label shares it
            run_end = c + 1
            while run_end < end and header.full[run_end] == header.full[c]:
                run_end += 1
            span = sum(widths[c - self._left : run_end - self._left])
            full, short = header.full[c], header.short[c]
            label = full if cell_len(full) < span else short
            style = Style(bgcolor=HEADER_BG[group % 2], bold=c <= self.col < run_end, color="#ffffff" if c <= self.col < run_end else "#b2b2b2")
            out.append(set_cell_size(visible(label), span), style=style)
            c, group = run_end, group + 1
        return out

    def _cell(self, r: int, c: int, w: int) -> tuple[str, Style]:
        v = float(self.values[r, c])
        bg = HEAT[heat_level(v, self.vmax)]
        if r == self.row and c == self.col:
            if w >= 6:  # wide enough to say the value under the cursor
                return f"{v:.2f}".center(w), Style(color="#ffffff", bgcolor=bg, bold=True, underline=True)
            return ("▐▌".center(w) if w >= 2 else "█"), Style(color="#ffffff", bgcolor=bg, bold=True)
        if r == self.row or c == self.col:
            return "·".center(w), Style(color="#808080", bgcolor=bg)
        return " " * w, Style(bgcolor=bg)

    def render(self) -> Text:
        if self.values.size == 0:
            return Text("no features to show", style="italic")
        n_rows, n_cols = self.values.shape
        label_w = max([cell_len(l) for l in self.row_labels] + [cell_len(h.name) for h in self.headers] + [4]) + 1
        width = max(self.content_region.width - label_w, 1)
        height = max(self.content_region.height - len(self.headers) - 1, 1)  # the legend takes the last line
        widths = self._visible_columns(width)
        self.label_width, self.cell_widths = label_w, widths
        if self.row < self._top:
            self._top = self.row
        elif self.row >= self._top + height:
            self._top = self.row - height + 1
        lines = [self._header_line(h, widths, label_w) for h in self.headers if len(h.full) == n_cols]
        for r in range(self._top, min(self._top + height, n_rows)):
            line = Text(no_wrap=True)
            label = self.row_labels[r]
            label = set_cell_size(label, label_w - 1) if cell_len(label) >= label_w - 1 else " " * (label_w - 1 - cell_len(label)) + label
            line.append(visible(label) + " ", style="bold" if r == self.row else "dim")
            for i, w in enumerate(widths):
                chars, style = self._cell(r, self._left + i, w)
                line.append(chars, style=style)  # safe-text: _cell(...) gives a formatted number or block characters
            lines.append(line)
        shown = f" · columns {self._left + 1}–{self._left + len(widths)} of {n_cols}" if len(widths) < n_cols else ""
        legend = colour_legend(self.vmax, self.legend)
        legend.append(shown, style="dim")
        lines.append(legend)
        return Text("\n", no_wrap=True).join(lines)
