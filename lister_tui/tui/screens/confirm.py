"""A yes/no question before a removal: the one place where the explorer takes something away."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from lister_tui.safe_text import text


class ConfirmScreen(ModalScreen[bool]):
    """Dismissed with True (y / the first button) or False (n, escape)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="lister.confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="lister.confirm.no"),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical { width: 64; max-width: 95%; height: auto; border: thick $warning; background: $panel; padding: 1 2; }
    ConfirmScreen #confirm-buttons { height: auto; margin-top: 1; }
    ConfirmScreen Button { margin-right: 2; }
    """

    def __init__(self, question: str, yes: str = "Remove") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(text(self.question, keep_newlines=True))  # holds sample keys and topics: text, never markup
            with Horizontal(id="confirm-buttons"):
                yield Button(text(f"{self.yes} (y)"), variant="warning", id="yes", compact=True)
                yield Button("Keep (n)", id="no", compact=True)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")
