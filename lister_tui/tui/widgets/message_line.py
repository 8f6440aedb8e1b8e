"""One line for the explorer's transient messages, under the panes, never over them.

Toasts float over the features table (at 80×24 they hid half its rows); the main
screen shows each message here instead, coloured by severity, for its timeout. A
long message wraps onto at most three lines (the panes above give way rather than
being covered). The app keeps every message (``ListerApp.messages``; key M lists them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from textual.timer import Timer
from textual.widgets import Static

DEFAULT_TIMEOUT_S = {"information": 6.0, "warning": 10.0, "error": 15.0}
MESSAGES_KEPT = 200  # the history that key M lists


@dataclass(frozen=True)
class Message:
    """One notification as shown: severity, title and text (already made visible), and when."""

    severity: str
    title: str
    text: str
    at: str

    @classmethod
    def now(cls, severity: str, title: str, text: str) -> Message:
        return cls(severity, title, text, datetime.now().strftime("%H:%M:%S"))


class MessageLine(Static):
    DEFAULT_CSS = """
    MessageLine { height: auto; max-height: 3; padding: 0 1; display: none; background: $primary-background; color: $text; }
    MessageLine.-shown { display: block; }
    MessageLine.-warning { background: $warning-muted; }
    MessageLine.-error { background: $error-muted; text-style: bold; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)  # messages hold names, paths and errors: text, never markup
        self._timer: Timer | None = None
        self.text = ""

    def say(self, text: str, severity: str = "information", timeout: float | None = None) -> None:
        """Show ``text`` (already made visible by the app) until ``timeout`` seconds pass or the next message."""
        self.text = text
        self.update(text)  # safe-text: ListerApp.notify made it visible; this Static has markup=False
        self.set_class(severity == "warning", "-warning")
        self.set_class(severity == "error", "-error")
        self.add_class("-shown")
        if self._timer is not None:
            self._timer.stop()
        seconds = timeout if timeout is not None else DEFAULT_TIMEOUT_S.get(severity, 6.0)
        self._timer = self.set_timer(max(seconds, 0.5), self.clear)

    def clear(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.text = ""
        self.update("")
        self.remove_class("-shown", "-warning", "-error")
