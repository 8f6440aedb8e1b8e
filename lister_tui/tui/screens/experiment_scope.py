"""The batch experiment's scope (X asks first): which lists, and how many seeds each.

The lists: every list of the session (the default, as before this dialog), the lists of one
template, or only the selected list. Seeds per list default to 4 and are checked against
``core.limits.MAX_EXPERIMENT_SEEDS`` here, with the valid range in the message. Enter on
the dialog's defaults runs what X always ran.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

from lister_tui.core.errors import ListerError
from lister_tui.core.limits import MAX_EXPERIMENT_SEEDS
from lister_tui.safe_text import text

ALL = "all"
CURRENT = "current"
TEMPLATE = "template:"
DEFAULT_SEEDS = 4


@dataclass(frozen=True)
class ExperimentScope:
    """Which of the session's lists an experiment runs over, and its seeds per list."""

    scope: str = ALL  # ALL, CURRENT, or TEMPLATE + a template's name
    n_seeds: int = DEFAULT_SEEDS

    def keys(self, samples: dict, current: str | None) -> list[str]:
        """The sample keys in scope, in the session's order (``samples``: key -> SampleState)."""
        if self.scope == ALL:
            return list(samples)
        if self.scope == CURRENT:
            return [current] if current in samples else []
        template = self.scope[len(TEMPLATE):]
        return [k for k, st in samples.items() if st.sample.spec.template == template]

    def describe(self) -> str:
        if self.scope == ALL:
            return "every list"
        if self.scope == CURRENT:
            return "this list"
        return f"template {self.scope[len(TEMPLATE):]}"


def parse_seeds(raw: str) -> int:
    """Seeds per list from the dialog's field: an integer in [1, MAX_EXPERIMENT_SEEDS], else ListerError."""
    try:
        n = int(raw.strip())
    except ValueError:
        raise ListerError(f"seeds per list must be a whole number from 1 to {MAX_EXPERIMENT_SEEDS}, got {raw.strip()[:20]!r}") from None
    if not 1 <= n <= MAX_EXPERIMENT_SEEDS:
        raise ListerError(f"seeds per list must be from 1 to {MAX_EXPERIMENT_SEEDS}, got {n}")
    return n


class ExperimentScopeScreen(ModalScreen[ExperimentScope | None]):
    """Dismissed with the scope (enter, ctrl+s or Run) or None (escape, Cancel)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="lister.experiment_scope.cancel"),
        Binding("ctrl+s,f2", "submit", "Run", id="lister.experiment_scope.submit"),
    ]
    DEFAULT_CSS = """
    ExperimentScopeScreen { align: center middle; }
    ExperimentScopeScreen > Vertical { width: 60; max-width: 100%; height: auto; border: thick $primary; background: $panel; padding: 0 1; }
    ExperimentScopeScreen Label { text-style: bold; margin-top: 1; }
    ExperimentScopeScreen #scope-buttons { height: 1; margin-top: 1; }
    ExperimentScopeScreen Button { margin-right: 2; }
    """

    def __init__(self, samples: dict, current: str | None) -> None:
        super().__init__()
        self.samples = samples
        self.current = current

    def options(self) -> list[tuple[str, str]]:
        templates = list(dict.fromkeys(st.sample.spec.template for st in self.samples.values()))
        out = [(f"every list of the session ({len(self.samples)})", ALL)]
        for t in templates:
            n = sum(1 for st in self.samples.values() if st.sample.spec.template == t)
            out.append((text(f"template {t} ({n} lists)").plain, TEMPLATE + t))
        if self.current in self.samples:
            out.append(("this list only (1)", CURRENT))
        return out

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Batch experiment: which lists")
            yield Select(self.options(), value=ALL, allow_blank=False, id="scope", compact=True)
            yield Label(f"Seeds per list (1 to {MAX_EXPERIMENT_SEEDS})")
            yield Input(str(DEFAULT_SEEDS), id="seeds", type="integer", compact=True)
            with Horizontal(id="scope-buttons"):
                yield Button("Run (enter)", variant="primary", id="run", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#seeds", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        try:
            scope = ExperimentScope(str(self.query_one("#scope", Select).value), parse_seeds(self.query_one("#seeds", Input).value))
            if not scope.keys(self.samples, self.current):
                raise ListerError(f"{scope.describe()} has no lists; choose another scope")
        except ListerError as exc:
            self.notify(text(str(exc)).plain, title="Cannot run the experiment", severity="error", markup=False)
            return
        self.dismiss(scope)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "run":
            self.action_submit()
        else:
            self.dismiss(None)
