"""The sample browser: one row per generation, with its list metrics at a glance."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from lister_tui.core.sessions.workspace import SampleState
from lister_tui.safe_text import text

TEMPLATE_SHORT = {"short": "S", "long": "L", "unspecified": "U"}


class SampleTable(DataTable):
    DEFAULT_CSS = """
    SampleTable { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, cell_padding=0)

    def on_mount(self) -> None:
        # template (S short, L long, U unspecified), topic, sample number, items, tokens, end reached, ablation runs
        for label, key, w in ((" T", "tmpl", 2), (" topic", "topic", 11), (" #", "n", 2), (" it", "items", 3), (" tok", "tokens", 4), (" end", "end", 4), (" ab", "runs", 3)):
            self.add_column(label, key=key, width=w)

    def show(self, states: dict[str, SampleState], current: str | None) -> None:
        self.clear()
        for key, st in states.items():
            s = st.sample
            m = s.metrics
            end = Text("   ✓", style="green") if m.reached_end else Text(" cap", style="yellow")
            self.add_row(
                # a session's template and topic are untrusted text (a plain str cell is parsed as markup)
                text(" " + TEMPLATE_SHORT.get(s.spec.template, s.spec.template[:1])),
                text(" " + s.spec.topic),
                f"{s.spec.sample:>2d}",
                f"{m.n_items:>3}",
                f"{m.n_tokens:>4}",
                end,
                f"{len(st.runs):>3}" if st.runs else "",
                key=key,
            )
        if current is not None and current in states:
            self.move_cursor(row=list(states).index(current), animate=False)

    def update_runs(self, key: str, n: int) -> None:
        try:
            self.update_cell(key, "runs", f"{n:>3d}")
        except Exception:
            pass
