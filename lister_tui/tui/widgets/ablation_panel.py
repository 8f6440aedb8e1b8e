"""The interventions being edited (chosen features, their modes, kinds and values) and the last run's
deltas, labelled as one draw (the batch experiment, X, measures across lists and seeds)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from lister_tui.core.sessions.workspace import AblationChoice, AblationRun
from lister_tui.safe_text import text
from lister_tui.safe_text import visible as visible_text
from lister_tui.tui.widgets.feature_table import LABEL_WIDTH, label_cell
from lister_tui.tui.widgets.token_view import visible

# Short enough never to wrap in the delta table at 80 columns; the help screen (?) has the legend.
LABELS = {
    "n_items": "items",
    "n_tokens": "tokens",
    "repeated_items": "rep",
    "diversity": "div",
    "metric_at_attribution": "m@last",
}
DIRECT_LABEL = "m@attr"  # the metric at the sample's own attribution position, without / with the ablation
END_LABEL = "end"


def _fmt(v, signed: bool = False) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if signed:
        return f"{int(v):+d}" if float(v).is_integer() and abs(v) >= 1 or v == 0 else f"{v:+.2f}"
    return f"{v:d}" if isinstance(v, int) else f"{v:.2f}"


def delta_parts(run: AblationRun, with_delta: bool = True) -> dict[str, str]:
    """Per metric but diversity: ``items a→b (+d)`` (without `` (+d)`` unless ``with_delta``)."""
    return {
        name: f"{LABELS[name]} {_fmt(b)}→{_fmt(a)}" + (f" ({_fmt(d, True)})" if with_delta else "")
        for name, (b, a, d) in run.deltas().items()
        if name != "diversity"
    }


def delta_summary(run: AblationRun) -> str:
    """One line: items a→b (+d) · tokens … · metric@attr …"""
    return " · ".join(delta_parts(run).values())


def delta_table(run: AblationRun) -> Table:
    # one space between columns: at 80 columns the chosen features beside it keep their kind and value in view
    table = Table(box=None, padding=(0, 0, 0, 1), show_edge=False, header_style="bold", title="one draw (n=1)", title_justify="left")
    table.add_column("", no_wrap=True)
    table.add_column("base", justify="right", no_wrap=True)
    table.add_column("abl", justify="right", no_wrap=True)
    table.add_column("Δ", justify="right", no_wrap=True)
    deltas = run.deltas()

    def add(name: str) -> None:
        b, a, d = deltas[name]
        style = "" if not d else ("bold green" if d > 0 else "bold red")
        table.add_row(LABELS[name], _fmt(b), _fmt(a), Text(_fmt(d, True), style=style))

    add("n_items")
    add("n_tokens")
    add("metric_at_attribution")
    if run.metric_under_ablation is not None and run.metric_before is not None:
        d = run.metric_under_ablation - run.metric_before
        style = "" if not d else ("bold green" if d > 0 else "bold red")
        table.add_row(DIRECT_LABEL, _fmt(run.metric_before), _fmt(run.metric_under_ablation), Text(_fmt(d, True), style=style))
    add("repeated_items")
    add("diversity")
    table.add_row(END_LABEL, _fmt(run.base.metrics.reached_end), _fmt(run.ablated.metrics.reached_end), "")
    return table


KIND_WIDTH = 14  # " =0.5×max=4.55": a relative clamp, its k and the value it stands for


class ChoiceTable(DataTable):
    DEFAULT_CSS = "ChoiceTable { width: 1fr; height: 1fr; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", cell_padding=0)
        self.choices: list[AblationChoice] = []
        self.with_labels = False

    def on_mount(self) -> None:
        self._columns(False)

    def _columns(self, with_labels: bool) -> None:
        # At 80 columns the deltas beside this table leave it 26 columns: SAE, feature and how it is
        # changed stay in view ("zero", "×0.75", "=0.5×max=4.55"); the mode and position ("@   48",
        # "∀   48") and the token come after (the token is on screen above)
        cols = ((" SAE", 7), (" feat", 5), (" kind", KIND_WIDTH), (" m pos", 7), (" token", 9)) + (((" label", LABEL_WIDTH),) if with_labels else ())
        for label, w in cols:
            self.add_column(label, width=w, key=label.strip())
        self.with_labels = with_labels

    def show(self, choices: list[AblationChoice], strings: list[str], labels: dict | None = None) -> None:
        """``labels``: (sae_id, feature) -> the user's label, in a last column once some feature has one."""
        labels = labels or {}
        with_labels = bool(labels)
        self.clear(columns=with_labels != self.with_labels)
        if not self.columns:
            self._columns(with_labels)
        self.choices = list(choices)
        for c in choices:
            tok = " " + visible(strings[c.pos]) if 0 <= c.pos < len(strings) else ""
            kind = Text(" " + c.kind_text(), style="" if c.kind == "zero" else "bold")
            pos = Text(" ∀", style="bold") if c.mode == "every" else Text(" @")
            pos.append(f"{c.pos:>5}" if c.pos >= 0 else "  all")
            label = (label_cell(labels.get((c.sae_id, c.feature), "")),) if with_labels else ()
            # Text cells: the SAE id comes from the session (a plain str cell is parsed as markup)
            self.add_row(Text(" " + visible_text(c.sae_id)), text(f"{c.feature:>5}"), kind, pos, Text(tok), *label, key=f"{c.sae_id}:{c.feature}:{c.pos}")

    def highlighted(self) -> AblationChoice | None:
        i = self.cursor_row
        return self.choices[i] if 0 <= i < len(self.choices) else None


class AblationPanel(Vertical):
    DEFAULT_CSS = """
    AblationPanel { height: 1fr; }
    AblationPanel #ablation-status { height: 1; }
    AblationPanel Horizontal { height: 1fr; }
    AblationPanel #deltas { width: auto; max-width: 40; padding: 0; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="ablation-status")
        with Horizontal():
            yield ChoiceTable(id="choices")
            yield Static("no regeneration yet (r)", id="deltas")

    def show(self, choices: list[AblationChoice], strings: list[str], run: AblationRun | None, status: str, labels: dict | None = None) -> None:
        changed = [c for c in choices if c.kind != "zero"]
        # the kinds first: the status line names them too (the table scrolls when many are chosen)
        kinds = " ".join(f"f{c.feature}{c.kind_text()}" for c in changed) + " · " if changed else ""
        self.query_one("#ablation-status", Static).update(text(kinds + str(status)))
        self.query_one(ChoiceTable).show(choices, strings, labels)
        self.query_one("#deltas", Static).update(delta_table(run) if run is not None else "no regeneration yet (r)")
