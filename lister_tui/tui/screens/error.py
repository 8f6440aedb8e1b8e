"""A modal for an unexpected error: the message, never a traceback."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from lister_tui.safe_text import text


class ErrorScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "dismiss", "Close", id="lister.error.close")]
    DEFAULT_CSS = """
    ErrorScreen { align: center middle; }
    ErrorScreen > Vertical { width: 70; max-width: 95%; height: auto; max-height: 90%; border: thick $error; background: $panel; padding: 1 2; }
    ErrorScreen #error-title { text-style: bold; color: $error; }
    ErrorScreen Button { margin-top: 1; }
    """

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.title_text = title
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(text(self.title_text), id="error-title", markup=False)
            yield Static(text(self.message, keep_newlines=True), markup=False)
            yield Button("Close", variant="error", id="close")

    def on_button_pressed(self) -> None:
        self.dismiss(None)
