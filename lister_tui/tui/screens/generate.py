"""The generate dialog: templates x topics x seeds, and a sampling preset.

Topics are free text (the study's 23 are listed; more are typed, comma-separated), the
templates are the study's and the user's (``--templates``, registry files), and a
free-form prompt gives "one prompt, N seeds" (template ``free``: the text is the whole
user turn).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, SelectionList

from lister_tui.core.engine.prompts import FREE_TEMPLATE, TEMPLATES, TOPICS, PromptSpec, available_templates, build_prompts
from lister_tui.core.errors import ListerError
from lister_tui.core.study.settings import SAMPLING_PRESETS
from lister_tui.tui.widgets.check_list import CheckList

# One batch of the explorer: templates x topics x samples per topic lists at most (each list is kept in
# memory with its metrics, and a batch attribution holds every SAE's activations for each).
MAX_LISTS_PER_BATCH = 1000


@dataclass(frozen=True)
class GenerateRequest:
    templates: tuple[str, ...]
    topics: tuple[str, ...]
    samples_per_topic: int = 1
    base_seed: int = 0
    preset: str = "code"

    def specs(self) -> list[PromptSpec]:
        specs = build_prompts(list(self.templates), list(self.topics), self.samples_per_topic, self.base_seed)
        if len(specs) > MAX_LISTS_PER_BATCH:
            raise ListerError(
                f"{len(self.templates)} templates x {len(self.topics)} topics x {self.samples_per_topic} samples is {len(specs)} lists; "
                f"one batch holds at most {MAX_LISTS_PER_BATCH}: choose fewer samples per topic or fewer topics"
            )
        return specs


def entry_first_request(entry, topics=TOPICS[:4]) -> GenerateRequest:
    """The explorer's first batch for an entry whose registry file defines templates: those templates."""
    from lister_tui.core.engine.prompts import register_templates

    register_templates(entry.templates)
    return GenerateRequest(tuple(t.name for t in entry.templates), tuple(topics), 2, 0, "code")


class GenerateScreen(ModalScreen[GenerateRequest | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="lister.generate.cancel"),
        Binding("ctrl+s,f2", "submit", "Generate", id="lister.generate.submit"),
    ]
    DEFAULT_CSS = """
    GenerateScreen { align: center middle; }
    GenerateScreen > Vertical { width: 76; max-width: 100%; height: 26; max-height: 100%; border: thick $primary; background: $panel; padding: 0 1; }
    GenerateScreen Horizontal { height: 1fr; }
    GenerateScreen #left { width: 30; }
    GenerateScreen #templates { height: 5; }
    GenerateScreen #topics { width: 1fr; height: 1fr; }
    GenerateScreen Input { width: 100%; }
    GenerateScreen #buttons { height: 1; margin-top: 1; }
    GenerateScreen #buttons Button { margin-right: 2; }
    GenerateScreen Label { text-style: bold; }
    """

    def __init__(self, previous: GenerateRequest | None = None) -> None:
        super().__init__()
        self.previous = previous or GenerateRequest(tuple(TEMPLATES), TOPICS[:4], 2, 0, "code")

    def compose(self) -> ComposeResult:
        p = self.previous
        with Vertical():
            yield Label("Generate samples (templates × topics × seeds)  ·  ctrl+s generate · esc cancel")
            with Horizontal():
                with Vertical(id="left"):
                    names = [t for t in available_templates() if t != FREE_TEMPLATE.name]
                    yield CheckList(*[(t, t, t in p.templates) for t in names], id="templates", compact=True)
                    yield Label("samples per topic")
                    yield Input(str(p.samples_per_topic), id="samples", type="integer", compact=True)
                    yield Label("base seed")
                    yield Input(str(p.base_seed), id="seed", type="integer", compact=True)
                    yield Label("sampling preset")
                    yield Select([(f"{k} (T {v.temperature}, top-p {v.top_p})", k) for k, v in SAMPLING_PRESETS.items()], value=p.preset, allow_blank=False, id="preset", compact=True)
                topics = list(TOPICS) + [t for t in p.topics if t not in TOPICS and FREE_TEMPLATE.name not in p.templates]
                yield CheckList(*[(t, t, t in p.topics) for t in topics], id="topics", compact=True)
            yield Label("more topics (free text, comma-separated)")
            yield Input("", id="more-topics", placeholder="Types of Cheese, Board Games", compact=True)
            yield Label("or one free-form prompt (the whole user turn; samples = seeds)")
            free = p.topics[0] if FREE_TEMPLATE.name in p.templates and p.topics else ""
            yield Input(free, id="prompt", placeholder="Name some rivers of Europe.", compact=True)
            with Horizontal(id="buttons"):
                yield Button("Generate", variant="primary", id="go", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        try:
            prompt = self.query_one("#prompt", Input).value.strip()
            more = [t.strip() for t in self.query_one("#more-topics", Input).value.split(",") if t.strip()]
            selected = list(self.query_one("#topics", SelectionList).selected)
            request = GenerateRequest(
                (FREE_TEMPLATE.name,) if prompt else tuple(self.query_one("#templates", SelectionList).selected),
                (prompt,) if prompt else tuple(dict.fromkeys(selected + more)),
                int(self.query_one("#samples", Input).value or 0),
                int(self.query_one("#seed", Input).value or 0),
                str(self.query_one("#preset", Select).value),
            )
            request.specs()  # the engine validates templates, topics and counts
        except (ListerError, ValueError) as exc:
            self.notify(str(exc), title="Cannot generate", severity="error")
            return
        self.dismiss(request)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "go":
            self.action_submit()
        else:
            self.dismiss(None)
