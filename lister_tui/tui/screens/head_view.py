"""The head view of one graph edge between positions: the heads that carry it and where they look.

Pushed from the graph screen (``h``) with a :class:`~lister_tui.core.study.graphs.head_view.HeadView`:
per head, its share of the edge (and that share as a fraction of the edge), the weight its
frozen attention pattern puts on the source position, the pattern row of the target position
as a strip (one block a position, the source marked), and the positions it reads most with their tokens.
"""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from lister_tui.core.study.graphs.head_view import HeadView
from lister_tui.safe_text import visible

BLOCKS = " ▁▂▃▄▅▆▇█"
TOP_POSITIONS = 3  # positions named per head


def head_view_text(view: HeadView, source: str, target: str, tokens: list[str], width: int) -> Text:
    """The view as text ``width`` columns wide (``source``/``target``: the nodes' ids; ``tokens`` by position)."""
    out = Text(no_wrap=True, overflow="ellipsis")
    src_tok = tokens[view.source_pos] if view.source_pos < len(tokens) else ""
    tgt_tok = tokens[view.target_pos] if view.target_pos < len(tokens) else ""
    out.append(visible(f"{source} “{src_tok}” → {target} “{tgt_tok}”"), style="bold")
    out.append("\n")
    out.append(visible(f"edge {view.edge:+.3f}; the heads carrying most of it, their frozen attention at position {view.target_pos}"), style="dim")
    room = max(8, width - 4)
    first = max(0, view.target_pos + 1 - room)  # the strip's window ends at the target position
    for i, label in enumerate(view.labels):
        row = view.patterns[i]
        out.append("\n\n")
        out.append(visible(f"head {label}  share {view.shares[i]:+.3f} ({view.fraction(i):.0%} of the edge)  "
                           f"attention on position {view.source_pos}: {view.weight_on_source(i):.2f}"))
        peak = float(row.max()) or 1.0
        out.append("\n  ")
        for p in range(first, view.target_pos + 1):
            block = BLOCKS[min(len(BLOCKS) - 1, int(round(float(row[p]) / peak * (len(BLOCKS) - 1))))]
            out.append(block, style="bold magenta" if p == view.source_pos else "")
        if view.source_pos >= first:
            out.append("\n  " + " " * (view.source_pos - first) + "^ source", style="magenta")
        else:
            out.append("\n  " + visible(f"(source position {view.source_pos} is left of this window)"), style="magenta")
        top = np.argsort(-row)[:TOP_POSITIONS]
        reads = ", ".join(f"{int(p)} “{tokens[int(p)] if int(p) < len(tokens) else ''}” {float(row[int(p)]):.2f}" for p in top)
        out.append("\n  reads most: " + visible(reads), style="dim")
    return out


class HeadViewScreen(ModalScreen[None]):
    """One edge's heads; escape or q closes."""

    BINDINGS = [Binding("escape,q,h", "close", "Close", id="lister.graph.head_view.close")]
    DEFAULT_CSS = """
    HeadViewScreen { align: center middle; }
    HeadViewScreen > VerticalScroll { width: 100%; max-width: 120; height: auto; max-height: 100%; border: round $accent; background: $panel; padding: 0 1; }
    HeadViewScreen #head-view { text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, view: HeadView, source: str, target: str, tokens: list[str]) -> None:
        super().__init__()
        self.view, self.source, self.target, self.tokens = view, source, target, tokens

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="head-view")
            yield Static(Text("esc closes", style="dim"))

    def on_mount(self) -> None:
        self.on_resize()

    def on_resize(self) -> None:
        width = min(self.size.width, 120) - 4
        self.query_one("#head-view", Static).update(head_view_text(self.view, self.source, self.target, self.tokens, width))

    def action_close(self) -> None:
        self.dismiss(None)
