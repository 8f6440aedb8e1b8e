"""The batch experiment screen (X): the current intervention set over the session's lists × seeds.

A thread worker runs :func:`lister_tui.core.study.intervention_batch.run_experiment` (base,
intervened and a random same-size control, common random numbers) and posts the rows after
every chunk; the screen shows, per template and condition, n, the paired mean change of items,
tokens, the metric at the attribution position and the end rate, each with its 95% bootstrap
interval and the sign-flip p-value, and a plotext chart of Δitems with its interval per
condition. Escape stops the run; what ran so far is kept in the session (marked stopped).
Every number is the core's: a script gets the same from ``run_experiment`` and ``summary()``.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import get_current_worker
from textual_plotext import PlotextPlot

from lister_tui.core.engine.interventions import InterventionSet
from lister_tui.core.errors import Cancelled
from lister_tui.core.sessions.workspace import Workspace
from lister_tui.core.study.intervention_batch import CONTROL, INTERVENED, ExperimentSettings, measure, run_experiment
from lister_tui.safe_text import text, visible
from lister_tui.tui.keymap import EXPERIMENT_KEYS, bindings
from lister_tui.tui.messages import ExperimentProgress, TaskFailed

SEEDS = 4
COLOURS = {INTERVENED: "orange", CONTROL: "gray"}


def _interval(row: dict, m: str) -> str:
    """``+0.62 [-0.2,+1.4]``: the mean and its 95% interval, short enough for 80 columns."""
    s = measure(row, m)
    return "–" if s.n == 0 else f"{s.mean:+.2f} [{s.ci_low:+.1f},{s.ci_high:+.1f}]"


def _mean(row: dict, m: str) -> str:
    s = measure(row, m)
    return "–" if s.n == 0 else f"{s.mean:+.1f}"


SHORT_NAMES = {INTERVENED: "yours", CONTROL: "control"}


def summary_table(rows: list[dict]) -> Table:
    """Per template and condition: n, Δitems and Δmetric with their intervals and Δitems' p, Δtokens and
    Δend as means (their intervals are in the session's experiments table and the export)."""
    table = Table(box=None, padding=(0, 1, 0, 0), show_edge=False, header_style="bold")
    for header, justify in (("template", "left"), ("set", "left"), ("n", "right"), ("Δitems [95%]", "right"), ("p", "right"),
                            ("Δmetric [95%]", "right"), ("Δtok", "right"), ("Δend", "right")):  # fmt: skip
        table.add_column(header, justify=justify, no_wrap=True, max_width=9 if header == "template" else None)
    for row in rows:
        style = "bold" if row["condition"] == INTERVENED else "dim"
        table.add_row(
            Text(visible(row["template"])), Text(visible(SHORT_NAMES.get(row["condition"], row["condition"])), style=style), text(str(row["n"])),
            _interval(row, "n_items_change"), f"{row['n_items_change_p']:.2g}", _interval(row, "metric_change"),
            _mean(row, "n_tokens_change"), _mean(row, "reached_end_change"),
        )  # fmt: skip
    return table


class ExperimentScreen(Screen[None]):
    """Runs and shows one batch experiment."""

    BINDINGS = bindings(EXPERIMENT_KEYS)
    DEFAULT_CSS = """
    ExperimentScreen #exp-title { height: auto; background: $panel; text-style: bold; padding: 0 1; }
    ExperimentScreen #exp-status { height: auto; padding: 0 1; }
    ExperimentScreen #exp-table { height: auto; padding: 0 1; }
    ExperimentScreen PlotextPlot { height: 14; min-height: 10; }
    """

    def __init__(
        self, lab, workspace: Workspace, interventions: InterventionSet, exclude: set | None, n_seeds: int = SEEDS,
        keys: list[str] | None = None, scope: str = "every list",
    ) -> None:
        super().__init__()
        self.lab = lab
        self.workspace = workspace
        self.keys = list(keys) if keys is not None else [k for k in workspace.samples]
        self.scope = scope
        self.samples = [workspace.samples[k].sample for k in self.keys]
        self.settings = ExperimentSettings(interventions, n_seeds=n_seeds)
        self.exclude = exclude
        self.experiment = None
        self.saved = False

    def compose(self) -> ComposeResult:
        yield Static("", id="exp-title")
        with VerticalScroll(id="exp-body"):
            yield Static("", id="exp-status")
            yield Static("", id="exp-table")
            yield PlotextPlot(id="exp-plot")
        yield Footer()

    def on_mount(self) -> None:
        n = len(self.samples)
        what = visible(self.settings.interventions.describe())
        self.query_one("#exp-title", Static).update(
            Text(visible(f"Batch experiment · {what} · {self.scope}: {n} lists × {self.settings.n_seeds} seeds, from the prompt, common random numbers"))
        )
        self._status(f"running: 0 of {n * self.settings.n_seeds} units (escape stops; what ran is kept)")
        self.run_worker_thread()

    def _status(self, message: str) -> None:
        self.query_one("#exp-status", Static).update(Text(visible(message, keep_newlines=True)))

    @work(thread=True, group="experiment", exclusive=True)
    def run_worker_thread(self) -> None:
        worker = get_current_worker()

        def partial(exp) -> bool:
            self.app.call_from_thread(self.post_message, ExperimentProgress(exp, exp.done))
            return worker.is_cancelled

        try:
            run_experiment(self.lab, self.samples, self.settings, keys=self.keys, exclude=self.exclude, on_partial=partial)
        except Cancelled:
            return
        except Exception as exc:  # noqa: BLE001 - shown on the screen, never a traceback
            self.app.call_from_thread(self.post_message, TaskFailed.of("batch experiment", exc))

    def on_experiment_progress(self, message: ExperimentProgress) -> None:
        exp = message.experiment
        self.experiment = exp
        rows = exp.summary()
        state = "done, kept in the session (E exports it)" if exp.done else f"running: {exp.units_done} of {exp.units_total} units (escape stops; what ran is kept)"
        self._status(
            f"{state}\nΔ = your set − base, same list and seed; 95% percentile bootstrap ({self.settings.resamples} "
            "resamples, seeded); p: sign-flip permutation. control: as many random firing features of the same "
            "SAEs (outside the top attributions), changed the same way"
        )
        self.query_one("#exp-table", Static).update(summary_table(rows))
        self._plot(rows)
        if exp.done:
            self._keep()

    def on_task_failed(self, message: TaskFailed) -> None:
        message.stop()
        self._status(f"failed: {visible(message.error)}")

    def _plot(self, rows: list[dict]) -> None:
        plot = self.query_one("#exp-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        labels = []
        for i, row in enumerate(rows):
            s = measure(row, "n_items_change")
            if s.n == 0:
                continue
            colour = COLOURS.get(row["condition"], "blue")
            plt.plot([i, i], [s.ci_low, s.ci_high], color=colour)  # the 95% interval
            plt.scatter([i], [s.mean], color=colour, marker="o")
            labels.append((i, f"{visible(row['template'])[:8]}/{SHORT_NAMES.get(row['condition'], '?')[:4]}"))
        if labels:
            plt.xticks([i for i, _ in labels], [visible(t) for _, t in labels])
            plt.xlim(-0.5, len(rows) - 0.5)
        plt.hline(0.0, "white")
        plt.title("Δitems per list: mean and 95% interval")
        plot.refresh()

    def _keep(self) -> None:
        """The experiment goes into the session once (done, or stopped with the rows it has)."""
        if self.experiment is not None and not self.saved and self.experiment.rows:
            self.workspace.add_experiment(self.experiment)
            self.saved = True

    def action_close(self) -> None:
        for w in self.workers:
            if w.group == "experiment":
                w.cancel()
        self._keep()
        self.dismiss(None)
