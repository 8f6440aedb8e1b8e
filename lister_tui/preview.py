"""A plain-terminal preview of a model: its card and a few sampled lists per template.

Shown by `lister-tui` until the explorer screen exists; every token is printed with
whitespace made visible, so the filler blank before a line break can be seen.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lister_tui.core.study import SAMPLING_PRESETS, TEMPLATES


def visible_tokens(strings: list[str]) -> Text:
    text = Text()
    for i, s in enumerate(strings):
        shown = s.replace(" ", "·").replace("\n", "↵\n")
        style = "on grey23" if i % 2 else "on grey15"
        if s == " ":
            style = "bold black on yellow"
        text.append(shown, style=style)
    return text


def show_preview(model: str, device: str | None, dtype: str | None, console: Console, topic: str = "Fruits") -> None:
    from lister_tui.core.generation import sample_lists
    from lister_tui.core.loading import load_model
    from lister_tui.core.prompts import PromptSpec, sample_seed

    loaded = load_model(model, device=device, dtype=dtype)
    card = (loaded.entry.weights_dir / "CARD.md") if loaded.entry.weights_dir else None
    if card is not None and card.exists():
        from rich.markdown import Markdown

        console.print(Markdown(card.read_text()))
    console.print(
        f"\n[bold]{loaded.entry.name}[/]: one sampled list per template for topic {topic!r} "
        "(post preset; · is a blank, ↵ a line break, the filler blank is highlighted)\n"
    )
    specs = [PromptSpec(t, topic, 0, sample_seed(0, t, topic, 0)) for t in TEMPLATES]
    samples = sample_lists(loaded, specs, SAMPLING_PRESETS["post"])
    table = Table(show_lines=True)
    table.add_column("template")
    table.add_column("items", justify="right")
    table.add_column("continuation, token by token")
    for s in samples:
        strings = loaded.to_str_tokens(s.continuation)
        table.add_row(s.spec.template, str(s.metrics.n_items), visible_tokens(strings))
    console.print(table)
    console.print("The interactive explorer is not built yet: this preview is what `lister-tui` shows for now.")
