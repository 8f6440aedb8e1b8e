"""The metric logit(blank) − logit(newline) per position: one column per token.

A sparkline-like strip per curve (base, and ablated after a regeneration), columns
aligned across curves by absolute position, the cursor's column highlighted, and
the values at the cursor written out.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from rich.text import Text

from lister_tui.safe_text import visible
from textual.widget import Widget

from lister_tui.tui.theme import colour

BLOCKS = " ▁▂▃▄▅▆▇█"


@dataclass
class Curve:
    label: str
    values: tuple[float, ...]  # metric at absolute positions 0..n-1


class MetricStrip(Widget):
    DEFAULT_CSS = """
    MetricStrip { height: 3; padding: 0 1; background: $surface; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.curves: list[Curve] = []
        self.start = 0  # first position shown (the first item marker)
        self.cursor = 0
        self.token_label = ""
        self._left = 0

    def show(self, curves: list[Curve], start: int, cursor: int, token_label: str = "") -> None:
        self.curves = [c for c in curves if c.values]
        self.start = start
        self.cursor = cursor
        self.token_label = token_label
        height = 1 + max(len(self.curves), 1)
        self.styles.height = height
        self.refresh(layout=True)

    def render(self) -> Text:
        if not self.curves:
            return Text("metric: waiting for a sample", style="italic")
        width = max(self.content_region.width, 10)
        label_w = 5
        cols = width - label_w
        end = max(len(c.values) for c in self.curves)
        span = max(end - self.start, 1)
        # keep the cursor in the window
        if self.cursor < self.start + self._left:
            self._left = self.cursor - self.start
        elif self.cursor >= self.start + self._left + cols:
            self._left = self.cursor - self.start - cols + 1
        self._left = max(0, min(self._left, max(span - cols, 0)))
        first = self.start + self._left
        scale = max((abs(v) for c in self.curves for v in c.values[self.start :]), default=1.0) or 1.0
        pos_c, neg_c = colour(self.app, "metric-positive"), colour(self.app, "metric-negative")
        cur_bg = colour(self.app, "token-b")
        out = Text()
        for row, curve in enumerate(self.curves):
            out.append(f"{visible(curve.label)[: label_w - 1]:<{label_w}}", style="bold")
            for p in range(first, min(first + cols, end)):
                if p < len(curve.values):
                    v = curve.values[p]
                    level = max(1, round(abs(v) / scale * 8))
                    ch, fg = BLOCKS[level], (pos_c if v >= 0 else neg_c)
                else:
                    ch, fg = " ", None
                style = Style(color=fg, bgcolor=cur_bg if p == self.cursor else None, bold=p == self.cursor)
                out.append(ch, style=style)
            out.append("\n")
        values = "  ".join(
            f"{c.label} {c.values[self.cursor]:+.2f}" for c in self.curves if self.cursor < len(c.values)
        )
        out.append(visible(f"pos {self.cursor} {self.token_label}  {values}")[:width], style="italic")
        return out
