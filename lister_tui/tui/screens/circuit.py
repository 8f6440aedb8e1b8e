"""The circuit view: how one list's features connect, from the embeddings to the metric.

Three views of one position-level circuit (``v`` switches): a grid with the sites as rows
(the metric on top, the embeddings at the bottom, as attribution-graph viewers draw them)
and token positions as columns, each node a short label (its feature id, ``err`` for a
site's error node); an outline from the metric down, each node's strongest parents one
level deeper (a Tree, expanded on demand); and the faithfulness curve beside the site report
(per site: nodes kept, their share of the circuit, the site's share of the total |effect|, its
error nodes' share, its SAE's memory). A feature's user label shows in the grid where the
column has room, in the outline and in the details (as text, by safe_text's rule). The selected node's
parents and children are highlighted in the grid, and listed with their weights below it.
The circuit is computed in a cancellable thread worker and kept in the session; ``enter``
opens a feature node's card. Long because the three views, the ablation and the cards
share one selected node and one worker's results.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Static, Tree
from textual.worker import get_current_worker
from textual_plotext import PlotextPlot

from lister_tui.core.engine.ablation import Ablation
from lister_tui.core.engine.generation import ListSample, metric_curve
from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.workspace import (
    AblationChoice,
    AblationRun,
    Workspace,
    to_ablation,
)
from lister_tui.core.study.circuits import (
    METRIC,
    Circuit,
    CircuitCancelled,
    CircuitSettings,
    find_circuit,
)
from lister_tui.core.study.circuits.graph import ordered_sites
from lister_tui.core.study.circuits.report import sae_memory, site_report
from lister_tui.core.study.experiment import metric_under_ablation, regenerate
from lister_tui.core.study.settings import SAMPLING_PRESETS
from lister_tui.safe_text import visible as visible_text
from lister_tui.tui.header import Part, fit
from lister_tui.tui.keymap import CIRCUIT_KEYS, bindings
from lister_tui.tui.messages import (
    CircuitProgress,
    CircuitReady,
    CircuitRegenerated,
    TaskFailed,
)
from lister_tui.tui.widgets.circuit_grid import CircuitGrid

VIEWS = ("grid", "outline", "curve")
OUTLINE_PARENTS = 5  # parents shown per node in the outline


class GridScreenMixin:
    """What the circuit and graph screens share: the grid's keys, the outline grown on demand
    (each node's strongest parents one level deeper), the user's labels of feature nodes.
    The screen sets ``drawn`` (what the grid draws: a Circuit, a GraphView) and ``ws``."""

    drawn = None
    ws: Workspace | None = None
    EFFECT_WORD = "effect"  # what a node's ``effect`` is called in the outline

    def _refresh_text(self) -> None: ...

    def _label(self, node) -> str | None:
        """The user's label of a feature node (from its card), if any."""
        if self.ws is None or node.feature is None:
            return None
        return self.ws.label(node.site, node.feature) or None

    def _add_parents(self, node) -> None:
        for edge in self.drawn.parents(node.data)[:OUTLINE_PARENTS]:
            parent = self.drawn.node(edge.source)
            text = Text(visible_text(f"{edge.weight:+.3f} ← {parent.id} "), no_wrap=True)
            text.append(visible_text(parent.token or ""), style="italic")
            name = self._label(parent)
            if name:
                text.append(f" “{visible_text(name)}”", style="bold")
            text.append(visible_text(f"  ({self.EFFECT_WORD} {parent.effect:+.3f})"), style="dim")
            node.add(text, data=parent.id, allow_expand=bool(self.drawn.parents(parent.id)))

    def on_tree_node_expanded(self, event: Tree.NodeExpanded) -> None:
        if not event.node.children and event.node.data is not None:
            self._add_parents(event.node)

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        if event.node.data is not None:
            self.query_one(CircuitGrid).select(event.node.data)
            self._refresh_text()

    def action_move(self, d_row: int, d_col: int) -> None:
        self.query_one(CircuitGrid).move(d_row, d_col)
        self._refresh_text()

    def action_cycle(self, step: int) -> None:
        self.query_one(CircuitGrid).cycle(step)
        self._refresh_text()

    def action_zoom(self, step: int) -> None:
        self.query_one(CircuitGrid).zoom(step)

    def action_all_positions(self) -> None:
        self.query_one(CircuitGrid).toggle_all_positions()
        self._refresh_text()


class CircuitScreen(GridScreenMixin, Screen[None]):
    """The circuit of one sample: grid, outline, faithfulness curve (``v``); ``space`` ablates a node."""

    BINDINGS = bindings(CIRCUIT_KEYS)
    DEFAULT_CSS = """
    CircuitScreen #circuit-title { height: 1; background: $panel; text-style: bold; padding: 0 1; }
    CircuitScreen #circuit-details { height: 7; background: $panel; padding: 0 1; }
    CircuitScreen #circuit-views { height: 1fr; }
    CircuitScreen Tree { height: 1fr; }
    CircuitScreen #curve-plot { width: 1fr; }
    CircuitScreen #site-report { width: 47; height: 1fr; padding: 0 0 0 1; }
    """

    def __init__(
        self,
        loaded: LoadedModel,
        sample: ListSample,
        *,
        key: str | None = None,
        workspace: Workspace | None = None,
        settings: CircuitSettings | None = None,
        circuit: Circuit | None = None,
    ) -> None:
        super().__init__()
        if sample.structure.attribution_pos is None:
            raise ListerError(f"sample {sample.spec.key} has no complete item, so no attribution position to find a circuit at")
        self.loaded = loaded
        self.sample = sample
        self.key = key
        self.ws = workspace
        self.settings = settings or CircuitSettings(sites=tuple(s.id for s in ordered_sites(loaded.entry.sites)))
        self.settings.check([s.id for s in loaded.entry.sites])
        self.circuit = circuit or self._saved_circuit()
        self.report: list[dict] = []
        self.status = ""
        self.view = 0
        self.regenerated: AblationRun | None = None

    @property
    def drawn(self) -> Circuit | None:  # what the grid and the outline draw
        return self.circuit

    def _saved_circuit(self) -> Circuit | None:
        if self.ws is None or self.key is None:
            return None
        same = [c for c in self.ws.circuits_of(self.key) if c.settings == self.settings and c.samples == [self.sample.spec.key]]
        return same[-1] if same else None

    def compose(self) -> ComposeResult:
        yield Static("", id="circuit-title")
        with ContentSwitcher(initial="grid", id="circuit-views"):
            yield CircuitGrid(id="grid")
            yield Tree("metric", id="outline")
            with Horizontal(id="curve"):
                yield PlotextPlot(id="curve-plot")
                yield Static("", id="site-report")
        yield Static("", id="circuit-details")
        yield Footer()

    @property
    def tokens(self) -> list[str]:
        return self.loaded.to_str_tokens(self.sample.tokens[: self.sample.structure.attribution_pos + 1])

    def on_mount(self) -> None:
        grid = self.query_one(CircuitGrid)
        grid.label_of = self.ws.label if self.ws is not None else None
        grid.focus()
        self._sync_ablated()
        if self.circuit is not None:
            self._show()
        else:
            self.status = "computing…"
            self._refresh_text()
            self.compute()

    def on_resize(self) -> None:
        # roomier details when the terminal is tall
        self.query_one("#circuit-details", Static).styles.height = 7 if self.size.height < 36 else 14
        self._refresh_text()  # the title keeps what fits the new width

    # --- computation -----------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="circuit", description="Finding the circuit")
    def compute(self) -> None:
        worker = get_current_worker()
        try:
            built = find_circuit(
                self.loaded,
                [self.sample],
                self.settings,
                on_progress=lambda text: self.post_message(CircuitProgress(text)),
                cancelled=lambda: worker.is_cancelled,
            )
            memory = {k: sae_memory(v) for k, v in built.saes.items()}
            report = site_report(built.circuit, memory).to_dict(orient="records")
        except CircuitCancelled:
            return
        except Exception as exc:
            self.post_message(TaskFailed.of("circuit", exc))
            return
        if not worker.is_cancelled:
            self.post_message(CircuitReady(self.key or self.sample.spec.key, built.circuit, report))

    def on_circuit_progress(self, message: CircuitProgress) -> None:
        self.status = message.text
        self._refresh_text()

    def on_circuit_ready(self, message: CircuitReady) -> None:
        self.circuit = message.circuit
        self.report = message.report
        self.status = ""
        if self.ws is not None:
            self.ws.add_circuit(message.circuit)
        self._show()

    def on_task_failed(self, message: TaskFailed) -> None:
        if message.task not in ("circuit", "circuit-regenerate"):
            return
        self.status = f"failed: {message.error}"
        self.notify(message.error, title=f"{message.task} failed", severity="error", markup=False)
        self._refresh_text()

    def action_cancel(self) -> None:
        self.workers.cancel_group(self, "circuit")
        self.status = "cancelled"
        self._refresh_text()

    # --- showing ---------------------------------------------------------------

    def _show(self) -> None:
        grid = self.query_one(CircuitGrid)
        grid.show(self.circuit, self.tokens)
        self._fill_outline()
        self._plot_curve()
        if not self.report:
            # a circuit from the session: the memory of the SAEs already loaded, no figure for the others
            memory = {s: sae_memory(sae) for s in self.circuit.site_totals if (sae := self.loaded.cached_sae(s)) is not None}
            self.report = site_report(self.circuit, memory).to_dict(orient="records")
        self.query_one("#site-report", Static).update(site_report_text(self.report))
        self._refresh_text()

    def _fill_outline(self) -> None:
        tree: Tree = self.query_one("#outline", Tree)
        tree.clear()
        c = self.circuit
        tree.root.set_label(Text(f"metric {c.metric:+.3f} (logit(blank) − logit(newline))"))
        tree.root.data = METRIC
        self._add_parents(tree.root)
        tree.root.expand()

    def _plot_curve(self) -> None:
        plot = self.query_one("#curve-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        points = [p for p in self.circuit.faithfulness if not math.isnan(p.recovered)]
        if points:
            xs = [math.log2(p.n_nodes) for p in points]
            plt.plot(xs, [p.recovered for p in points], marker="dot")
            plt.hline(0.8)
            plt.xlabel("log2(nodes kept)")
            plt.ylabel("recovered")
            n = self.circuit.n_for(0.8)
            plt.title(visible_text(f"faithfulness: top-N nodes kept, the rest {self.circuit.settings.ablation}-ablated; 0.8 at N = {n}"))
        plot.refresh()

    def _refresh_text(self) -> None:
        self.query_one("#circuit-title", Static).update(fit(self.title_parts(), max(self.size.width - 2, 1)))
        self.query_one("#circuit-details", Static).update(self._details())

    def title_parts(self) -> list[Part]:
        """The title's parts: the recovered share and completeness are kept longest, the word
        "Circuit", the view's name and the sample's key go first when the width is short."""
        parts = [Part("Circuit", 3), Part(visible_text(self.sample.spec.key), 2)]
        c = self.circuit
        if c is None:
            return parts + [Part(self.status or "…", 0)]
        n08 = c.n_for(0.8)
        parts.append(Part(f"{len(c.nodes)} nodes, {len(c.edges)} edges", 1))
        parts.append(Part(f"0.8 at N={n08 if n08 is not None else '—'}", 0))
        if c.recovered is not None:
            parts.append(Part(f"circuit {c.recovered:.2f}, complete {c.completeness:.2f}", 0))
        parts.append(Part(VIEWS[self.view], 4))
        return parts

    def _details(self) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis")
        if self.status:
            out.append(visible_text(self.status) + "\n", style="italic")
        node = self.query_one(CircuitGrid).selected if self.circuit is not None else None
        if node is None:
            return out
        out.append(visible_text(node.id), style="bold")
        out.append("  " + visible_text(node.token or ""), style="italic")
        out.append(f"  effect {node.effect:+.3f}")
        if node.activation is not None:
            out.append(f"  activation {node.activation:.3f}")
        name = self._label(node)
        if name:
            out.append(f'  "{visible_text(name)}"', style="bold")
        if node.feature is not None and node.pos is not None and (node.site, node.feature, node.pos) in self._ablated_set():
            out.append("  [ablated]", style="red")
        many = 3 if self.size.height < 36 else 8
        for title, edges, side, style in (
            ("parents ", self.circuit.parents(node.id), "source", "green"),
            ("children", self.circuit.children(node.id), "target", "magenta"),
        ):
            out.append(f"\n{title}: ", style=style)
            out.append(visible_text(", ".join(f"{getattr(e, side)} {e.weight:+.3f}" for e in edges[:many]) or "—"))
        if self.regenerated is not None:
            run = self.regenerated
            out.append(
                f"\nregenerated under {len(run.choices)} node(s): {run.base.metrics.n_items} → {run.ablated.metrics.n_items} items; "
                f"metric {run.metric_before:+.3f} → {run.metric_under_ablation:+.3f}"
            )
        return out

    # --- keys --------------------------------------------------------------------

    def action_close(self) -> None:
        self.workers.cancel_group(self, "circuit")
        self.dismiss(None)

    def action_graph(self) -> None:
        """This sample's attribution graph (key G), pushed over the circuit."""
        from lister_tui.tui.screens.graph import graph_screen

        graph_screen(self, self.loaded, self.sample, self.key, self.ws, on_close=lambda _: (self._sync_ablated(), self._refresh_text()))

    def action_next_view(self) -> None:
        self.view = (self.view + 1) % len(VIEWS)
        self.query_one(ContentSwitcher).current = VIEWS[self.view]
        target = {"grid": CircuitGrid, "outline": Tree}.get(VIEWS[self.view])
        if target is not None:
            self.query_one(target).focus()
        self._refresh_text()

    # --- feature cards -------------------------------------------------------------

    def action_open_card(self) -> None:
        from lister_tui.tui.screens.feature_card import FeatureCardScreen

        node = self.query_one(CircuitGrid).selected
        if node is None or node.kind != "feature":
            self.notify("a card is a feature's: select a feature node (not an error node, an embedding or the metric)", markup=False)
            return

        def toggled(choice: AblationChoice) -> None:
            if self.ws is not None and self.key is not None:
                self.ws.toggle(self.key, choice)

        card = FeatureCardScreen(
            self.loaded, node.site, node.feature, workspace=self.ws, sample_key=self.key,
            on_toggle=toggled if self.ws is not None and self.key is not None else None,
        )
        self.app.push_screen(card, lambda _: (self._sync_ablated(), self._refresh_text(), self._relabel()))

    def _relabel(self) -> None:
        """A label given in the card shows in the grid and the outline at once."""
        self.query_one(CircuitGrid).refresh()
        if self.circuit is not None:
            self._fill_outline()

    # --- ablation ----------------------------------------------------------------

    def _ablated_set(self) -> set[tuple[str, int, int]]:
        if self.ws is not None and self.key is not None:
            return {(c.sae_id, c.feature, c.pos) for c in self.ws.state(self.key).choices}
        return self.query_one(CircuitGrid).ablated

    def _sync_ablated(self) -> None:
        grid = self.query_one(CircuitGrid)
        grid.ablated = set(self._ablated_set())
        grid.refresh()

    def action_toggle_node(self) -> None:
        node = self.query_one(CircuitGrid).selected
        if node is None or node.kind != "feature" or node.pos is None:
            self.notify("only a feature node at a position can be ablated (not an error node, an embedding or the metric)", markup=False)
            return
        if self.ws is not None and self.key is not None:
            self.ws.toggle(self.key, AblationChoice(node.site, node.feature, node.pos))
        else:
            ident = (node.site, node.feature, node.pos)
            grid = self.query_one(CircuitGrid)
            grid.ablated.symmetric_difference_update({ident})
        self._sync_ablated()
        self._refresh_text()

    def action_regenerate(self) -> None:
        chosen = sorted(self._ablated_set())
        if not chosen:
            self.notify("toggle a feature node into the ablation first (space)", markup=False)
            return
        attr = self.sample.structure.attribution_pos
        late = [c for c in chosen if c[2] >= attr]
        if late:
            self.notify(
                f"nodes at the attribution position ({attr}) or later act on no regeneration (it starts from tokens[:{attr}]); "
                "leave them out to regenerate",
                markup=False,
            )
            return
        self.status = "regenerating…"
        self._refresh_text()
        self.regenerate_worker(tuple(AblationChoice(s, f, p) for s, f, p in chosen))

    @work(thread=True, exclusive=True, exit_on_error=False, group="circuit-regenerate", description="Regenerating")
    def regenerate_worker(self, choices: tuple[AblationChoice, ...]) -> None:
        worker = get_current_worker()
        preset = "code" if self.ws is None or self.key is None else self.ws.state(self.key).preset
        settings = SAMPLING_PRESETS.get(preset, SAMPLING_PRESETS["code"])
        ablation = to_ablation(choices)
        try:
            base = regenerate(self.loaded, self.sample, settings, None)
            ablated = regenerate(self.loaded, self.sample, settings, ablation, on_step=lambda *_: worker.is_cancelled)
            pos = self.sample.structure.attribution_pos
            run = AblationRun(
                self.key or self.sample.spec.key,
                choices,
                True,
                preset,
                base,
                ablated,
                tuple(metric_curve(self.loaded, base.tokens).tolist()),
                tuple(metric_curve(self.loaded, ablated.tokens, ablation).tolist()),
                metric_under_ablation(self.loaded, self.sample.tokens, Ablation(), pos),
                metric_under_ablation(self.loaded, self.sample.tokens, ablation, pos),
            )
        except Exception as exc:
            self.post_message(TaskFailed.of("circuit-regenerate", exc))
            return
        if not worker.is_cancelled:
            self.post_message(CircuitRegenerated(self.key or self.sample.spec.key, run))

    def on_circuit_regenerated(self, message: CircuitRegenerated) -> None:
        self.regenerated = message.run
        self.status = ""
        if self.ws is not None and self.key is not None:
            self.ws.record_ablation(self.key, message.run)
        self._refresh_text()


def _share(value) -> str:
    return "—" if value is None or value != value else f"{value:.0%}"


def site_report_text(rows: list[dict]) -> Text:
    """The site report (:func:`lister_tui.core.study.circuits.report.site_report`) as a small table:
    per site, its nodes in the circuit and their share of its nodes, the site's share of the total
    |effect| over every candidate node, its error nodes' share of its own, its SAE's memory."""
    out = Text("site report", style="bold")
    out.append("\nsite     nodes  share  effect  error  memory", style="dim")
    for r in rows:
        memory = r.get("sae_memory_bytes")
        if memory is None or memory != memory:
            size = "—"
        else:
            size = f"{memory / 2**20:.1f}M" if memory >= 2**20 else f"{memory / 2**10:.0f}K"
        out.append("\n")
        out.append(f"{visible_text(r['site'])[:8]:<8}")
        out.append(f" {int(r['circuit_nodes']):>5}  {_share(r['circuit_node_share']):>5}  {_share(r['effect_share']):>6}  {_share(r['error_share']):>5}  {size:>6}")
    if not rows:
        out.append("\n—")
    out.append(
        "\nshare: of the circuit's nodes · effect: of Σ|effect| over every candidate node of every site · "
        "error: its error nodes' share of its own · memory: its SAE's parameters (— not loaded)",
        style="dim",
    )
    return out


def circuit_screen(host, workspace: Workspace, key: str, on_close=None) -> None:
    """Push the circuit screen of ``key``'s sample from ``host`` (the main screen), or say why not."""
    sample = workspace.state(key).sample
    if sample.structure.attribution_pos is None:
        host.notify("this list has no complete item, so no attribution position to find a circuit at", timeout=4, markup=False)
        return
    host.app.push_screen(CircuitScreen(host.app.lab, sample, key=key, workspace=workspace), on_close)


__all__ = ["CircuitGrid", "CircuitScreen", "circuit_screen"]
