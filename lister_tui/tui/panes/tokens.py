"""The token pane: the sample (or the base regeneration) and, in compare mode, the ablated one."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal

from lister_tui.tui.widgets.token_view import TokenDoc, TokenView


class TokensPane(Horizontal):
    DEFAULT_CSS = """
    TokensPane { height: 1fr; min-height: 4; }
    TokensPane #ablated-view { display: none; border-left: vkey $accent; }
    TokensPane.-compare #ablated-view { display: block; }
    """

    def compose(self) -> ComposeResult:
        yield TokenView(id="base-view")
        yield TokenView(id="ablated-view")

    @property
    def base(self) -> TokenView:
        return self.query_one("#base-view", TokenView)

    @property
    def ablated(self) -> TokenView:
        return self.query_one("#ablated-view", TokenView)

    def focused_view(self) -> TokenView:
        """The view the user is in (the base view when neither has focus)."""
        focused = self.screen.focused
        return focused if isinstance(focused, TokenView) else self.base

    def show(self, base: TokenDoc | None, ablated: TokenDoc | None, compare: bool) -> None:
        was_streaming = self.ablated.doc is not None and self.ablated.doc.streaming
        self.set_class(compare, "-compare")
        self.base.set_doc(base)
        if not compare:
            return
        self.ablated.placeholder = "No regeneration yet: toggle features (space), then r."
        self.ablated.set_doc(ablated)
        if ablated is not None and self.ablated.doc is not None:
            if was_streaming and not ablated.streaming and ablated.prefix_len is not None:
                # A run just finished: both sides open where it was regenerated from. Where the
                # streaming frames left the cursors depends on their timing; this does not.
                self.base.centre_on(ablated.prefix_len)
            self.ablated.centre_on(self.base.cursor)

    def stream(self, doc: TokenDoc) -> None:
        """The regeneration as it streams in, its cursor on the newest token."""
        self.ablated.set_doc(doc)
        self.ablated.cursor = len(doc.ids) - 1

    def toggle(self, attribute: str) -> None:
        """Flip a display option (``metric_colours``, ``show_prompt``) on both views."""
        for view in (self.base, self.ablated):
            setattr(view, attribute, not getattr(view, attribute))

    @on(TokenView.CursorMoved)
    def _keep_cursors_together(self, event: TokenView.CursorMoved) -> None:
        if event.pos != event.view.cursor:
            event.stop()  # stale: the cursor moved again since (syncing on it would ping-pong between views)
            return
        other = self.ablated if event.view is self.base else self.base
        if self.has_class("-compare") and other.doc is not None and event.pos < len(other.doc.ids):
            other.cursor = event.pos
