"""The features pane: this sample's (position, feature) pairs or the dataset ranking, filtered and sorted."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Static

from lister_tui.tui.explorer.views import FeaturesView
from lister_tui.tui.widgets.feature_table import FeatureRow, FeatureTable


class FeaturesPane(Vertical):
    DEFAULT_CSS = """
    FeaturesPane { height: 1fr; }
    FeaturesPane #feature-bar { height: 1; }
    FeaturesPane #feature-mode { width: auto; max-width: 70%; height: 1; padding: 0 1 0 0; }
    FeaturesPane #filter { width: 1fr; }
    """

    @dataclass
    class QueryChanged(Message):
        """The user typed in the filter."""

        query: str

    def compose(self) -> ComposeResult:
        with Horizontal(id="feature-bar"):
            yield Static("", id="feature-mode")
            yield Input(placeholder="/ to filter, e.g. sae:res_0 f12 pos:40", id="filter", compact=True)
        yield FeatureTable(id="feature-table")

    @property
    def table(self) -> FeatureTable:
        return self.query_one("#feature-table", FeatureTable)

    @property
    def query_text(self) -> str:
        return self.query_one("#filter", Input).value

    def show(self, view: FeaturesView) -> None:
        self.query_one("#feature-mode", Static).update(view.header)  # safe-text: features_view builds it by Text.assemble and visible
        self.table.show(view.rows, view.modes, view.dataset, view.links, view.labels, view.dense)

    def highlighted(self) -> FeatureRow | None:
        return self.table.highlighted()

    def focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    @on(Input.Changed, "#filter")
    def _query_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.QueryChanged(event.value))

    @on(Input.Submitted, "#filter")
    def _query_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.table.focus()
