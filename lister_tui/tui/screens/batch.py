"""The batch view: how many items the batch's lists have, per template, base vs ablated.

One plotext histogram per template: the session's lists (base) and the ablated
regenerations of every recorded run (one bin per item count); above them, n and the means,
with the runs' paired change (ablated − their own base regeneration, same seed). When the
session was opened from a sweep, the sweep's ``by_condition`` table follows as Δitems ± sd
bars per condition and template. Every number comes from
:mod:`lister_tui.core.sessions.batch_summary` (a script gets the same); every name from the
session or the sweep (templates, conditions) is shown as text, never as markup.
"""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual_plotext import PlotextPlot

from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.batch_summary import (
    ABLATED,
    LISTS,
    RUN_BASE,
    BatchSummary,
    ConditionBar,
    batch_summary,
    condition_bars,
    histogram,
    sweep_by_condition,
    sweep_folder,
)
from lister_tui.core.sessions.workspace import Workspace
from lister_tui.safe_text import visible
from lister_tui.tui.header import Part, fit
from lister_tui.tui.keymap import BATCH_KEYS, bindings

MAX_PLOTS = 4  # templates plotted side by side; the others are in the summary lines
BASE_COLOUR, ABLATED_COLOUR = "cyan", "orange"  # plotext's names
TEXT_BASE, TEXT_ABLATED = "cyan", "dark_orange"  # Rich's names of the same colours
POSITIVE, NEGATIVE = "#ff8700", "#5f87ff"  # more items (the list ends later) / fewer


def _mean(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def summary_text(summary: BatchSummary) -> Text:
    """Per template: n and mean items of the lists, the runs' base regenerations and the ablated ones."""
    out = Text(no_wrap=False)
    if not summary.per_template:
        return Text("no lists in this session yet: generate some (g)", style="italic")
    width = max(cell_len(visible(t)) for t in summary.templates)
    for i, t in enumerate(summary.per_template):
        if i:
            out.append("\n")
        out.append(set_cell_size(visible(t.template), width), style="bold")
        out.append(f"  base lists n={len(t.lists)} mean {_mean(t.mean(LISTS))}", style=f"bold {TEXT_BASE}")
        if t.ablated:
            out.append(f" · ablated n={len(t.ablated)} mean {_mean(t.mean(ABLATED))}", style=f"bold {TEXT_ABLATED}")
            change = t.paired_change
            out.append(f" · runs' own base mean {_mean(t.mean(RUN_BASE))}, paired Δ {change:+.2f}")
        else:
            out.append(" · no ablation runs on this template", style="dim")
    if summary.n_runs == 0:
        out.append("\nno ablation runs yet: switch features off (space, K) and regenerate (r); base only below", style="italic")
    if len(summary.per_template) > MAX_PLOTS:
        out.append(f"\nthe first {MAX_PLOTS} templates are plotted; all are counted above", style="dim")
    return out


def legend_text(summary: BatchSummary) -> Text:
    """The histograms' legend, on its own line above them (never drawn over the bars)."""
    out = Text("bars: ", style="dim", no_wrap=True, overflow="ellipsis")
    out.append("██ base lists", style=f"bold {TEXT_BASE}")
    if summary.n_runs:
        out.append("  ")
        out.append("██ ablated regenerations", style=f"bold {TEXT_ABLATED}")
        out.append(" (right bar of each pair)", style="dim")
    return out


def condition_lines(bars: list[ConditionBar], width: int) -> Text:
    """Δitems ± sd per condition as text bars around a zero axis (orange: more items, blue: fewer);
    ├ ┤ mark mean ± sd."""
    if not bars:
        return Text("the sweep's by_condition table has no rows with a mean change yet", style="italic")
    labels = [f"{visible(b.condition)} · {visible(b.template)}" for b in bars]
    label_w = min(max(cell_len(l) for l in labels), 32)
    numbers = [
        f"{b.change_mean:+.2f} ± {'–' if b.change_sd is None else f'{b.change_sd:.2f}'} (n {b.n_generations if b.n_generations is not None else '?'})"
        + (" zeroed no pair" if b.ablated_nothing else "")
        for b in bars
    ]
    number_w = max(len(n) for n in numbers)
    bar_w = max(width - label_w - number_w - 4, 10)
    # the axis spans every mean ± sd and 0
    low = min([0.0] + [b.change_mean - (b.change_sd or 0.0) for b in bars])
    high = max([0.0] + [b.change_mean + (b.change_sd or 0.0) for b in bars])
    scale = (bar_w - 1) / ((high - low) or 1.0)

    def col(v: float) -> int:
        return max(0, min(bar_w - 1, round((v - low) * scale)))

    zero = col(0.0)
    out = Text(no_wrap=True, overflow="ellipsis")
    for i, (b, label, number) in enumerate(zip(bars, labels, numbers)):
        if i:
            out.append("\n")
        out.append(set_cell_size(visible(label), label_w) + " ", style="bold" if not b.ablated_nothing else "dim")
        cells = [" "] * bar_w
        styles = ["dim"] * bar_w
        cells[zero] = "│"
        colour = POSITIVE if b.change_mean > 0 else NEGATIVE
        lo, hi = sorted((zero, col(b.change_mean)))
        if b.change_mean != 0:
            for c in range(lo, hi + 1):
                cells[c], styles[c] = "█", colour
        if b.change_sd:
            for v, mark in ((b.change_mean - b.change_sd, "├"), (b.change_mean + b.change_sd, "┤")):
                c = col(v)
                inside = b.change_mean != 0 and lo <= c <= hi
                cells[c], styles[c] = mark, (f"bold #ffffff on {colour}" if inside else "bold")
        for ch, style in zip(cells, styles):
            out.append(ch, style=style)  # safe-text: bar characters of this function
        out.append(" " + visible(number).rjust(number_w), style="dim" if b.ablated_nothing else "")
    # the axis: its ends and 0, under the bars
    axis = [" "] * bar_w
    for v, at in ((low, 0), (0.0, zero), (high, None)):
        tick = "0" if v == 0 else f"{v:+.1f}"
        start = bar_w - len(tick) if at is None else max(0, min(at - (len(tick) // 2 if v == 0 else 0), bar_w - len(tick)))
        axis[start : start + len(tick)] = list(tick)
    out.append("\n" + " " * (label_w + 1) + "".join(axis) + " Δitems", style="dim")  # safe-text: the axis holds formatted numbers
    return out


class BatchScreen(Screen[None]):
    """Item counts of the batch per template (and the sweep's by_condition, when the session came from one)."""

    BINDINGS = bindings(BATCH_KEYS)
    DEFAULT_CSS = """
    BatchScreen #batch-title { height: 1; background: $panel; text-style: bold; padding: 0 1; }
    BatchScreen #batch-summary { height: auto; padding: 0 1; }
    BatchScreen #batch-legend { height: 1; padding: 0 1; }
    BatchScreen #batch-plots { height: 1fr; min-height: 12; }
    BatchScreen #batch-plots PlotextPlot { width: 1fr; }
    BatchScreen #sweep-title { height: auto; padding: 0 1; text-style: bold; margin-top: 1; }
    BatchScreen #sweep-bars { height: auto; padding: 0 1; }
    """

    def __init__(self, workspace: Workspace, manifest_fields: dict | None = None) -> None:
        super().__init__()
        self.workspace = workspace
        self.manifest_fields = manifest_fields or {}
        self.summary: BatchSummary = batch_summary(workspace)
        self.bars: list[ConditionBar] | None = None  # None: not opened from a sweep
        self.sweep_problem: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="batch-title")
        with VerticalScroll(id="batch-body"):
            yield Static("", id="batch-summary")
            yield Static("", id="batch-legend")
            yield Horizontal(id="batch-plots")
            yield Static("", id="sweep-title")
            yield Static("", id="sweep-bars")
        yield Footer()

    def on_mount(self) -> None:
        self._load_sweep()
        self._show()
        self.query_one("#batch-body").focus()

    def on_resize(self) -> None:
        self._show_sweep()  # the bars use the width

    def _load_sweep(self) -> None:
        folder = sweep_folder(self.manifest_fields)
        if folder is None:
            return
        try:
            self.bars = condition_bars(sweep_by_condition(folder))
        except ListerError as exc:
            self.sweep_problem = str(exc)

    def _show(self) -> None:
        s = self.summary
        n_lists = sum(len(t.lists) for t in s.per_template)
        self.query_one("#batch-title", Static).update(
            Text(f"Batch · items per list, per template · {n_lists} lists · {s.n_runs} ablation run{'' if s.n_runs == 1 else 's'}", no_wrap=True, overflow="ellipsis")
        )
        self.query_one("#batch-summary", Static).update(summary_text(s))
        self.query_one("#batch-legend", Static).update(legend_text(s) if s.per_template else "")
        plots = self.query_one("#batch-plots", Horizontal)
        plots.remove_children()
        widgets = [PlotextPlot() for _ in s.per_template[:MAX_PLOTS]]
        plots.mount_all(widgets)
        for widget, counts in zip(widgets, s.per_template):
            self._plot(widget, counts)
        self._show_sweep()

    def _plot(self, widget: PlotextPlot, counts) -> None:
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        series = [("base", counts.lists, BASE_COLOUR)]  # n and means are in the lines above the plots
        if counts.ablated:
            series.append(("ablated", counts.ablated, ABLATED_COLOUR))
        values = [v for _, group, _ in series for v in group]
        bins = list(histogram(values))  # every item count from the smallest to the largest seen
        heights = [[histogram(group).get(n, 0) for n in bins] for _, group, _ in series]
        # no labels: plotext draws its legend inside the plot, over the bars; the legend is a line above
        plt.multiple_bar(bins, heights, color=[c for _, _, c in series])
        plt.title(visible(counts.template))  # short: three plots side by side at 80 columns
        plt.xlabel("items")
        plt.ylabel("lists")
        top = max((max(h) for h in heights if h), default=1)
        plt.yticks(list(range(0, top + 1, max(1, top // 6))))  # whole lists
        widget.refresh()

    def _show_sweep(self) -> None:
        title = self.query_one("#sweep-title", Static)
        body = self.query_one("#sweep-bars", Static)
        if self.bars is None and self.sweep_problem is None:
            title.update(Text("not opened from a sweep: `lister-tui open SWEEP_FOLDER` adds the sweep's Δitems per condition here", style="dim"))
            body.update("")
            return
        folder = sweep_folder(self.manifest_fields)
        # whole parts dropped when narrow (the folder first, a long path), the table's meaning kept
        title.update(fit(
            [Part("Sweep", 3), Part(visible(folder), 2), Part("by_condition: Δitems (condition − base) ± sd", 0), Part("mean over topics", 1)],
            max(self.size.width - 2, 1), style="bold",
        ))
        if self.sweep_problem is not None:
            body.update(Text(visible(self.sweep_problem), style="italic"))
            return
        body.update(condition_lines(self.bars or [], max(self.size.width - 2, 40)))  # safe-text: a Text whose labels are visible(...)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_refresh(self) -> None:
        self.summary = batch_summary(self.workspace)
        self._show()
