"""The inspector: the metric at every position, and the token under the cursor with its top features."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from lister_tui.safe_text import text
from lister_tui.tui.widgets.metric_strip import Curve, MetricStrip


class InspectorPane(Vertical):
    DEFAULT_CSS = """
    InspectorPane { height: auto; }
    InspectorPane #cursor-info { height: 2; padding: 0 1; background: $panel; }
    """

    def compose(self) -> ComposeResult:
        yield MetricStrip(id="metric")
        yield Static("", id="cursor-info", markup=False)

    def show(self, curves: list[Curve], start: int, pos: int, label: str, info: str) -> None:
        self.query_one("#metric", MetricStrip).show(curves, start, pos, label)
        self.query_one("#cursor-info", Static).update(text(info, keep_newlines=True))  # token strings, SAE ids
