"""Every message the explorer has shown this run, newest first (key M): the message line is
transient, the history is not."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from lister_tui.safe_text import text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

SEVERITY_STYLE = {"information": "", "warning": "bold yellow", "error": "bold red"}


class MessagesScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,M", "dismiss", "Close", id="lister.messages.close")]
    DEFAULT_CSS = """
    MessagesScreen { align: center middle; }
    MessagesScreen > VerticalScroll { width: 110; max-width: 100%; height: 90%; border: thick $primary; background: $panel; padding: 0 1; }
    """

    def __init__(self, messages: list) -> None:
        super().__init__()
        self.entries = messages

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 1), show_header=True, header_style="bold", expand=True)
        table.add_column("time", no_wrap=True, style="dim")
        table.add_column("message")
        for m in reversed(self.entries):
            # texts were made visible by the app; Text keeps them from being read as markup
            line = text(f"{m.title}: " if m.title else "", "bold") + text(m.text, SEVERITY_STYLE.get(m.severity, ""), keep_newlines=True)
            table.add_row(text(m.at), line)
        with VerticalScroll():
            yield Static(Text(f"Messages ({len(self.entries)}, newest first) · esc closes", style="bold"))
            yield Static(table if self.entries else Text("no messages yet"))
