"""A features x samples heatmap with a cell cursor (for the expression matrix)."""

from __future__ import annotations

import numpy as np
from rich.style import Style
from rich.text import Text
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

# A sequential scale of xterm-256 colours, low to high.
HEAT: tuple[str, ...] = ("#1c1c1c", "#262626", "#005f5f", "#008787", "#00af87", "#5fd75f", "#afd700", "#ffd700", "#ffaf00", "#ff5f00")


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

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.values = np.zeros((0, 0))
        self.row_labels: list[str] = []
        self._top = 0
        self._left = 0

    def show(self, values: np.ndarray, row_labels: list[str]) -> None:
        self.values = values
        self.row_labels = row_labels
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

    def render(self) -> Text:
        if self.values.size == 0:
            return Text("no features to show", style="italic")
        n_rows, n_cols = self.values.shape
        label_w = max((len(l) for l in self.row_labels), default=4) + 1
        width = max(self.content_region.width - label_w, 2)
        height = max(self.content_region.height, 1)
        cell_w = 2 if n_cols * 2 <= width else 1
        cols = max(width // cell_w, 1)
        if self.row < self._top:
            self._top = self.row
        elif self.row >= self._top + height:
            self._top = self.row - height + 1
        if self.col < self._left:
            self._left = self.col
        elif self.col >= self._left + cols:
            self._left = self.col - cols + 1
        vmax = float(self.values.max()) or 1.0
        out = Text()
        for r in range(self._top, min(self._top + height, n_rows)):
            if r > self._top:
                out.append("\n")
            out.append(f"{self.row_labels[r]:>{label_w - 1}} ", style="bold" if r == self.row else "dim")
            for c in range(self._left, min(self._left + cols, n_cols)):
                v = float(self.values[r, c])
                level = 0 if v <= 0 else 1 + min(len(HEAT) - 2, int(v / vmax * (len(HEAT) - 1)))
                bg = HEAT[level]
                if r == self.row and c == self.col:
                    out.append("▐▌"[:cell_w] if cell_w == 2 else "█", style=Style(color="#ffffff", bgcolor=bg, bold=True))
                elif r == self.row or c == self.col:
                    out.append("·" * cell_w, style=Style(color="#808080", bgcolor=bg))
                else:
                    out.append(" " * cell_w, style=Style(bgcolor=bg))
        return out
