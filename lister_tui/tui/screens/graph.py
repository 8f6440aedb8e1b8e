"""The graph view: one list's attribution graph (transcoders, attention features, errors, tokens, the metric).

Every MLP is replaced by its transcoder, attention patterns and LayerNorm scales are frozen,
so each edge is an exact linear contribution (:mod:`lister_tui.core.study.graphs`). Two views
(``v``): a grid with the metric on top, each layer's transcoder row (features and MLP error)
above its attention row (features and attention error) from the last layer down, the token
embeddings at the bottom, token positions as columns, kept nodes only; and an outline from the
target, each node's strongest parents one level deeper. The details show the selected node,
its parents and children with edge weights, and for an edge between positions (attention
carries it) the heads' shares; ``k`` zeroes the node in the graph, the replacement and the real
model. ``[`` ``]`` and ``{`` ``}`` move the node and edge thresholds (pruning again, no new
backward pass). The graph is computed in a cancellable worker, ``SCREEN_BATCH`` targets per
backward pass, and kept in an in-memory cache for the session (:class:`GraphCache`).
Long because the compute, prune, heads and checks workers share one selected node and one cache.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Static, Tree
from textual.worker import get_current_worker

from lister_tui.core.engine.generation import ListSample
from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.workspace import AblationChoice, AblationRun, Workspace
from lister_tui.core.study.graphs.attribute import ATTN, KIND_NAMES, TARGET, TC, AttributionGraph
from lister_tui.core.study.graphs.heads import head_label
from lister_tui.core.study.graphs.pipeline import (
    SCREEN_BATCH,
    check_has_transcoders,
    compute_graph,
    graph_checks,
    graph_head_shares,
    graph_saes,
    graph_targets,
)
from lister_tui.core.study.graphs.prune import DEFAULT_EDGE_THRESHOLD, DEFAULT_NODE_THRESHOLD, Pruned, prune, scores
from lister_tui.core.study.graphs.view import SUPERNODE, GraphView, graph_view
from lister_tui.safe_text import visible
from lister_tui.tui.header import Part, fit
from lister_tui.tui.keymap import GRAPH_KEYS, bindings
from lister_tui.tui.messages import GraphDetail, GraphProgress, GraphPruned, GraphReady, TaskFailed
from lister_tui.tui.screens.circuit import GridScreenMixin
from lister_tui.tui.widgets.circuit_grid import CircuitGrid

VIEWS = ("grid", "outline")
NODE_STEPS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0)
EDGE_STEPS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 1.0)
MAX_MEMORY = 4 * 2**30  # bytes a graph may need in the explorer (as `lister-tui graph`'s default)
TOP_HEADS = 2  # heads named per edge in the details
SAVED_CHECKS = 5  # the most influential features a saved graph checks (as `lister-tui graph`'s default)

# the graph workers run the model under TransformerLens hooks, which are the model's state:
# one at a time (a cancelled thread worker runs on until its next check)
MODEL_LOCK = threading.Lock()

GraphKey = tuple[str, tuple[int, ...], bool]  # (sample key, target positions, attention features on)


@dataclass
class CachedGraph:
    """A computed graph and what was asked of it since: head shares, checks, the thresholds last used."""

    key: GraphKey
    graph: AttributionGraph
    scores: tuple[float, float]  # replacement, completeness
    transcoders: dict
    attn_saes: dict
    heads: dict = field(default_factory=dict)  # (target, source) -> per-head parts of the edge
    checks: dict = field(default_factory=dict)  # node index -> check_nodes row
    thresholds: tuple[float, float] = (DEFAULT_NODE_THRESHOLD, DEFAULT_EDGE_THRESHOLD)
    groups: list = field(default_factory=list)  # the user's supernodes (core.study.graphs.supernodes.Supernode)
    auto: bool = False  # automatic supernodes drawn
    view: GraphView | None = None  # the last pruned view: a reopened graph shows at once


class GraphCache(dict):
    """The session's computed graphs by (sample key, targets, attention on/off), in memory.

    The hook for keeping graphs in the session: a session table of graph records can fill
    this at open and be written from it (``entry.graph``, ``entry.scores``, ``entry.thresholds``)."""


def _step(ladder: tuple[float, ...], value: float, step: int) -> float:
    """The next value of ``ladder`` above (step 1) or below (step -1) ``value``, staying inside it."""
    if step > 0:
        return next((v for v in ladder if v > value + 1e-9), ladder[-1])
    return next((v for v in reversed(ladder) if v < value - 1e-9), ladder[0])


class GraphScreen(GridScreenMixin, Screen[None]):
    """The attribution graph of one sample: grid and outline (``v``); thresholds with ``[`` ``]`` ``{`` ``}``."""

    BINDINGS = bindings(GRAPH_KEYS)
    EFFECT_WORD = "influence"
    DEFAULT_CSS = """
    GraphScreen #graph-title { height: 1; background: $panel; text-style: bold; padding: 0 1; }
    GraphScreen #graph-details { height: 7; background: $panel; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    GraphScreen #graph-views { height: 1fr; }
    GraphScreen Tree { height: 1fr; }
    """

    def __init__(self, loaded: LoadedModel, sample: ListSample, *, key: str | None = None, workspace: Workspace | None = None,
                 cache: GraphCache | None = None, attention: bool = True) -> None:
        super().__init__()
        check_has_transcoders(loaded.entry)
        self.loaded, self.sample, self.key, self.ws = loaded, sample, key, workspace
        self.targets = tuple(graph_targets(sample))  # refuses a list without an attribution position
        self.cache = cache if cache is not None else GraphCache()
        self.attention = attention and any(s.kind == "attn" for s in loaded.entry.sites)
        self.entry: CachedGraph | None = None
        self.view: GraphView | None = None
        self.node_threshold, self.edge_threshold = DEFAULT_NODE_THRESHOLD, DEFAULT_EDGE_THRESHOLD
        self.status = ""
        self.view_index = 0
        self.passes = 0  # backward passes done by the running compute (the cancel test reads it)
        self.cancelled = False  # a cancel was asked: late progress messages are ignored
        self.regenerated: AblationRun | None = None

    @property
    def drawn(self) -> GraphView | None:
        return self.view

    @property
    def cache_key(self) -> GraphKey:
        return (self.key or self.sample.spec.key, self.targets, self.attention)

    def compose(self) -> ComposeResult:
        yield Static("", id="graph-title")
        with ContentSwitcher(initial="grid", id="graph-views"):
            yield CircuitGrid(id="grid")
            yield Tree("target", id="outline")
        yield Static("", id="graph-details")
        yield Footer()

    @property
    def tokens(self) -> list[str]:
        return self.loaded.to_str_tokens(self.sample.tokens[: max(self.targets) + 1])

    def on_mount(self) -> None:
        grid = self.query_one(CircuitGrid)
        grid.label_of = self.ws.label if self.ws is not None else None
        grid.empty_text = "computing the attribution graph…"
        grid.focus()
        self._sync_chosen()
        self._open()

    def _open(self) -> None:
        """The cached graph of this sample, targets and attention setting, else compute it."""
        self.entry = self.cache.get(self.cache_key)
        if self.entry is not None:
            self.node_threshold, self.edge_threshold = self.entry.thresholds
            if self.entry.view is not None:
                self.on_graph_pruned(GraphPruned(self.entry.view))
            else:
                self._prune()
        else:
            self.view = None
            self.query_one(CircuitGrid).circuit = None
            self.status = "loading the transcoders…"
            self.cancelled = False
            self._refresh_text()
            self.compute()

    def on_resize(self) -> None:
        self._fit_details()
        self._refresh_text()

    def _fit_details(self) -> None:
        """The details take what the grid leaves (its rows, two header lines, the scroll line), at least 7 lines."""
        rows = len(self.view.rows) if self.view is not None else 2 * self.loaded.model.cfg.n_layers + 2
        self.query_one("#graph-details", Static).styles.height = max(7, self.size.height - 2 - (rows + 4))

    # --- workers ---------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="graph", description="Computing the attribution graph")
    def compute(self) -> None:
        worker = get_current_worker()
        key = self.cache_key
        self.passes = 0

        def estimate(n_nodes: int, need: int, passes: int) -> None:
            self._estimate = f"{n_nodes} nodes, about {need / 2**30:.2f} GiB, {passes} backward passes of {SCREEN_BATCH}"
            self.post_message(GraphProgress(f"{self._estimate}; starting…"))

        def progress(done: int, total: int) -> bool:
            self.passes = done
            self.post_message(GraphProgress(f"backward pass {done}/{total} · {self._estimate} · esc cancels"))
            return worker.is_cancelled

        self._estimate = ""
        try:
            with MODEL_LOCK:
                if worker.is_cancelled:
                    return
                tcs, attn = graph_saes(self.loaded, key[2])
                graph = compute_graph(self.loaded, self.sample.tokens, tcs, attn, list(key[1]), batch=SCREEN_BATCH, max_memory=MAX_MEMORY,
                                      on_progress=progress, on_estimate=estimate)
            entry = CachedGraph(key, graph, scores(graph), tcs, attn)
        except Exception as exc:
            if not worker.is_cancelled:
                self.post_message(TaskFailed.of("graph", exc))
            return
        if not worker.is_cancelled:
            self.post_message(GraphReady(entry))

    @work(thread=True, exclusive=True, exit_on_error=False, group="graph-prune", description="Pruning the graph")
    def _prune_worker(self, entry: CachedGraph, node_threshold: float, edge_threshold: float, pruned: Pruned | None = None) -> None:
        from lister_tui.core.study.graphs.supernodes import auto_supernodes

        worker = get_current_worker()
        try:
            if pruned is None:
                pruned = prune(entry.graph, node_threshold, edge_threshold)
            groups = list(entry.groups)
            if entry.auto:
                labels = self.ws.label if self.ws is not None else None
                groups += auto_supernodes(entry.graph, [int(i) for i in np.flatnonzero(pruned.node_mask)], labels)
            view = graph_view(entry.graph, pruned, self.tokens, groups)
        except Exception as exc:
            self.post_message(TaskFailed.of("graph", exc))
            return
        if not worker.is_cancelled:
            self.post_message(GraphPruned(view))

    @work(thread=True, exclusive=True, exit_on_error=False, group="graph-detail", description="Head shares and checks")
    def _detail_worker(self, entry: CachedGraph, edges: list[tuple[int, int]], check: list[int]) -> None:
        try:
            with MODEL_LOCK:
                heads = graph_head_shares(self.loaded, entry.graph, entry.transcoders, entry.attn_saes, edges) if edges else {}
                checks = {row["node"]: row for row in graph_checks(self.loaded, entry.graph, entry.transcoders, entry.attn_saes, check)} if check else {}
        except Exception as exc:
            self.post_message(TaskFailed.of("graph", exc))
            return
        self.post_message(GraphDetail(heads, checks))

    def on_graph_progress(self, message: GraphProgress) -> None:
        if self.cancelled:
            return
        self.status = message.text
        self._refresh_text()

    def on_graph_ready(self, message: GraphReady) -> None:
        entry = message.entry
        self.cache[entry.key] = entry
        if entry.key == self.cache_key:
            self.entry = entry
            self.status = ""
            self._prune()

    def on_graph_pruned(self, message: GraphPruned) -> None:
        view = message.view
        if self.entry is None or view.graph is not self.entry.graph:
            return
        self.view = self.entry.view = view
        self.status = ""
        self.query_one(CircuitGrid).show(view, self.tokens, rows=view.rows, keep_cursor=True)
        self._fit_details()
        self._fill_outline()
        self._refresh_text()
        self._ask_heads()

    def on_graph_detail(self, message: GraphDetail) -> None:
        if self.entry is not None:
            self.entry.heads.update(message.heads)
            self.entry.checks.update(message.checks)
            self.status = ""
        self._refresh_text()

    def on_task_failed(self, message: TaskFailed) -> None:
        if message.task not in ("graph", "graph-regenerate"):
            return
        self.status = f"failed: {message.error}"
        self.notify(visible(message.error), title=visible(f"{message.task} failed"), severity="error", markup=False)
        self._refresh_text()

    def _prune(self, regroup_only: bool = False) -> None:
        """Prune at the thresholds (``regroup_only``: keep the last pruning, draw the supernodes again)."""
        if self.entry is None:
            return
        self.entry.thresholds = (self.node_threshold, self.edge_threshold)
        self.status = "grouping…" if regroup_only else "pruning…"
        self._refresh_text()
        reuse = self.view.pruned if regroup_only and self.view is not None and self.view.graph is self.entry.graph else None
        self._prune_worker(self.entry, self.node_threshold, self.edge_threshold, reuse)

    def _ask_heads(self) -> None:
        """Head shares of the selected node's shown edges between positions, if not known yet."""
        node = self._selected()
        if node is None or self.entry is None or self.view is None:
            return
        index = self.view.index
        shown = self.view.parents(node.id)[: self._many()] + self.view.children(node.id)[: self._many()]
        pos = self.entry.graph.nodes.pos
        edges = [(index[e.target], index[e.source]) for e in shown if e.target in index and e.source in index]
        edges = [e for e in edges if pos[e[0]] != pos[e[1]] and e not in self.entry.heads]
        if edges:
            self._detail_worker(self.entry, edges, [])

    # --- showing ---------------------------------------------------------------------

    def _selected(self):
        return self.query_one(CircuitGrid).selected if self.view is not None else None

    def _many(self) -> int:
        return 3 if self.size.height < 36 else 8

    def _fill_outline(self) -> None:
        tree: Tree = self.query_one("#outline", Tree)
        tree.clear()
        root = self.view.node(self.view.root)
        tree.root.set_label(Text(visible(f"{root.id}: metric {root.activation:+.3f} (logit(blank) − logit(newline))")))
        tree.root.data = root.id
        self._add_parents(tree.root)
        tree.root.expand()

    def _refresh_text(self) -> None:
        self.query_one("#graph-title", Static).update(fit(self.title_parts(), max(self.size.width - 2, 1)))
        self.query_one("#graph-details", Static).update(self._details())

    def title_parts(self) -> list[Part]:
        """Thresholds and scores are kept longest; the word "Graph", the view and the sample's key go first."""
        parts = [Part("Graph", 3), Part(visible(self.sample.spec.key), 2)]
        if self.view is None or self.entry is None:
            return parts + [Part("computing…" if self.status and not self.status.startswith(("cancelled", "failed")) else visible(self.status) or "…", 0)]
        pruned = self.view.pruned
        parts.append(Part(f"{len(self.view.nodes)}/{len(self.entry.graph.nodes)} nodes, {len(self.view.edges)} edges", 1))
        parts.append(Part(f"node {self.node_threshold:g} edge {self.edge_threshold:g}", 0))
        rep, comp = self.entry.scores
        parts.append(Part(f"repl {rep:.2f} compl {comp:.2f}", 0))
        parts.append(Part("attn feats" if self.entry.graph.attention_features else "no attn feats", 2))
        if self.view.groups:
            parts.append(Part(f"{len(self.view.groups)} supernodes" + (" (auto on)" if self.entry.auto else ""), 1))
        parts.append(Part(f"kept {pruned.kept_node_influence:.2f} of influence", 4))
        parts.append(Part(VIEWS[self.view_index], 4))
        return parts

    def _edge_text(self, edge, other: str) -> str:
        """``id +w`` and, for an edge between positions, its top heads' shares."""
        out = f"{getattr(edge, other)} {edge.weight:+.3f}"
        if self.entry is None or self.view is None:
            return out
        index = self.view.index
        shares = self.entry.heads.get((index[edge.target], index[edge.source])) if edge.target in index and edge.source in index else None
        if shares is not None and edge.weight != 0:
            top = np.argsort(-np.abs(shares))[:TOP_HEADS]
            out += " [" + " ".join(f"{head_label(int(h), self.entry.graph.n_heads)} {shares[h] / edge.weight:.0%}" for h in top) + "]"
        return out

    def _details(self) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis")
        if self.status:
            out.append(visible(self.status) + "\n", style="italic")
        node = self._selected()
        if node is None or self.entry is None or self.view is None:
            if self.view is not None:
                out.append("no node in this cell: the arrow keys move to another", style="dim")
            return out
        if node.kind == SUPERNODE:
            self._supernode_details(out, node)
            return out
        graph, i = self.entry.graph, self.view.index[node.id]
        kind, layer = int(graph.nodes.kind[i]), int(graph.nodes.layer[i])
        out.append(visible(node.id), style="bold")
        out.append("  " + visible(node.token or ""), style="italic")
        if kind == TARGET:
            out.append(visible(f"  metric {node.activation:+.3f} (logit(blank) − logit(newline))"))
        else:
            out.append(visible(f"  influence {node.effect:.3f}"))
        if kind in (TC, ATTN):
            out.append(visible(f"  act {node.activation:.3f}"))
        name = self._label(node)
        if name:
            out.append(f'  "{visible(name)}"', style="bold")
        if kind in (TC, ATTN) and (node.site, node.feature, node.pos) in self._chosen_set():
            out.append("  [intervened]", style="red")
        out.append("\n")
        where = f", layer {layer}" if layer >= 0 else ""
        what = f", feature {node.feature}" if kind in (TC, ATTN) else ""
        out.append(visible(f"{KIND_NAMES[kind]}{where}, position {node.pos}{what}"), style="dim")
        self._edges_text(out, node)
        check = self.entry.checks.get(i)
        if check is not None:
            out.append("\n")
            out.append(visible(f"zeroed: graph Δ {check['graph']:+.4f}, replacement Δ {check['replacement']:+.4f}, real Δ {check['real']:+.4f}"))
        if self.regenerated is not None:
            run = self.regenerated
            out.append("\n")
            metric = "" if run.metric_before is None or run.metric_under_ablation is None else \
                f"; metric at the attribution position {run.metric_before:+.3f} → {run.metric_under_ablation:+.3f}"
            out.append(visible(f"one draw (n = 1, same seed) under {len(run.choices)} intervention(s): "
                               f"{run.base.metrics.n_items} → {run.ablated.metrics.n_items} items{metric}"))
        return out

    def _edges_text(self, out: Text, node) -> None:
        """The node's parents and children with weights (and head shares), one edge a line when tall."""
        for title, edges, other, style in (("parents ", self.view.parents(node.id), "source", "green"),
                                           ("children", self.view.children(node.id), "target", "magenta")):
            out.append(f"\n{title}: ", style=style)
            shown = [self._edge_text(e, other) for e in edges[: self._many()]]
            if self.size.height >= 36:  # tall: one edge a line, every head share whole
                out.append(visible(f"{len(edges)} kept, strongest first" if shown else "—"), style="dim")
                for e, line in zip(edges, shown):
                    out.append("\n    " + visible(line))
                    out.append("  " + visible(self.view.node(getattr(e, other)).token or ""), style="italic")
            else:
                out.append(visible(", ".join(shown) or "—"))

    def _supernode_details(self, out: Text, node) -> None:
        group = self.view.groups[node.id]
        graph = self.entry.graph
        from lister_tui.core.study.graphs.export import node_name

        out.append(visible(node.id), style="bold")
        out.append(visible(f"  {len(group.members)} nodes  influence {node.effect:.3f} (the members' sum)"))
        out.append("  " + ("yours (u ungroups)" if any(g.name == group.name for g in self.entry.groups) else "automatic (A hides)"), style="dim")
        out.append("\n")
        out.append(visible("members: " + ", ".join(node_name(graph, m) for m in group.members)), style="dim")
        self._edges_text(out, node)

    # --- keys ------------------------------------------------------------------------

    def action_close(self) -> None:
        """escape: cancel a running graph first; else (and q) close."""
        if self._computing():
            self.action_cancel()
            return
        self.workers.cancel_group(self, "graph")
        self.dismiss(None)

    def _computing(self) -> bool:
        return any(w.group == "graph" and w.is_running for w in self.workers)

    def action_cancel(self) -> None:
        if not self._computing():
            return
        self.workers.cancel_group(self, "graph")
        self.cancelled = True
        self.status = f"cancelled after {self.passes} backward pass(es); reopen the graph (G) to compute it again"
        self._refresh_text()

    def action_move(self, d_row: int, d_col: int) -> None:
        super().action_move(d_row, d_col)
        self._ask_heads()

    def action_cycle(self, step: int) -> None:
        super().action_cycle(step)
        self._ask_heads()

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        super().on_tree_node_selected(event)
        self._ask_heads()

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        """The details follow the outline's cursor (enter expands, as in any tree)."""
        if event.node.data is not None and self.view is not None:
            self.query_one(CircuitGrid).select(event.node.data)
            self._refresh_text()
            self._ask_heads()

    def action_next_view(self) -> None:
        self.view_index = (self.view_index + 1) % len(VIEWS)
        self.query_one(ContentSwitcher).current = VIEWS[self.view_index]
        self.query_one({"grid": CircuitGrid, "outline": Tree}[VIEWS[self.view_index]]).focus()
        self._refresh_text()

    def action_node_threshold(self, step: int) -> None:
        self.node_threshold = _step(NODE_STEPS, self.node_threshold, step)
        self._prune()

    def action_edge_threshold(self, step: int) -> None:
        self.edge_threshold = _step(EDGE_STEPS, self.edge_threshold, step)
        self._prune()

    def action_toggle_attention(self) -> None:
        if not any(s.kind == "attn" for s in self.loaded.entry.sites):
            self.notify(visible(f"{self.loaded.entry.name} has no attention SAE sites: its graphs have no attention features"), markup=False)
            return
        self.workers.cancel_group(self, "graph")
        self.attention = not self.attention
        self._open()

    def action_check_node(self) -> None:
        node = self._selected()
        if node is None or node.kind not in ("feature", "error") or self.entry is None or self.view is None:
            self.notify("a check zeroes a feature or error node: select one (not a token or the target)", markup=False)
            return
        self.status = "zeroing the node in the graph, the replacement and the real model…"
        self._refresh_text()
        self._detail_worker(self.entry, [], [self.view.index[node.id]])

    def action_head_view(self) -> None:
        """``h``: the heads of the selected node's strongest edge between positions (its parents first, else its children)."""
        node = self._selected()
        if node is None or self.entry is None or self.view is None:
            return
        pos = self.entry.graph.nodes.pos
        index = self.view.index
        edges = [(index[e.target], index[e.source]) for e in self.view.parents(node.id) + self.view.children(node.id)
                 if e.target in index and e.source in index]
        crossing = [e for e in edges if pos[e[0]] != pos[e[1]]]
        if not crossing:
            self.notify("no kept edge of this node crosses positions, so no head carries one; pick a node with one (its edges show [heads])", markup=False)
            return
        self.status = "head shares of the edge…"
        self._refresh_text()
        self._head_view_worker(self.entry, crossing[0])

    @work(thread=True, exclusive=True, exit_on_error=False, group="graph-heads", description="Head view")
    def _head_view_worker(self, entry: CachedGraph, edge: tuple[int, int]) -> None:
        from lister_tui.core.study.graphs.head_view import head_view

        try:
            with MODEL_LOCK:
                shares = entry.heads if edge in entry.heads else graph_head_shares(self.loaded, entry.graph, entry.transcoders, entry.attn_saes, [edge])
            view = head_view(entry.graph, edge[0], edge[1], shares)
        except Exception as exc:
            self.post_message(TaskFailed.of("graph", exc))
            return
        self.app.call_from_thread(self._show_head_view, entry, view, {edge: shares[edge]})

    def _show_head_view(self, entry: CachedGraph, view, shares: dict) -> None:
        from lister_tui.core.study.graphs.export import node_name
        from lister_tui.tui.screens.head_view import HeadViewScreen

        entry.heads.update(shares)
        self.status = ""
        self._refresh_text()
        self.app.push_screen(HeadViewScreen(view, node_name(entry.graph, view.source), node_name(entry.graph, view.target), self.tokens))

    # --- saving in the session ------------------------------------------------------------

    def action_save_graph(self) -> None:
        if self.entry is None or self.view is None:
            self.notify("no graph yet: wait for it, then S keeps it in the session", markup=False)
            return
        if self.ws is None or self.key is None:
            self.notify("this graph belongs to no session's list, so it cannot be kept in one", markup=False)
            return
        self.status = "head shares and checks for the saved graph…"
        self._refresh_text()
        self._save_worker(self.entry, self.view.pruned)

    @work(thread=True, exclusive=True, exit_on_error=False, group="graph-save", description="Saving the graph")
    def _save_worker(self, entry: CachedGraph, pruned: Pruned) -> None:
        from lister_tui.core.study.graphs.export import graph_json, saved_supernodes
        from lister_tui.core.study.graphs.pipeline import kept_cross_edges, top_features
        from lister_tui.core.study.graphs.record import GraphRecord

        graph = entry.graph
        try:
            with MODEL_LOCK:
                missing = [e for e in kept_cross_edges(graph, pruned) if e not in entry.heads]
                heads = graph_head_shares(self.loaded, graph, entry.transcoders, entry.attn_saes, missing) if missing else {}
                checks = graph_checks(self.loaded, graph, entry.transcoders, entry.attn_saes, top_features(graph, pruned, SAVED_CHECKS))
            heads.update(entry.heads)
            data = graph_json(graph, pruned, [visible(t) for t in self.tokens], scores=entry.scores, heads=heads, checks=checks,
                              labels=self.ws.label, extra={"model": self.loaded.entry.name, "sample": self.sample.spec.key}, groups=entry.groups)
            record = GraphRecord.from_graph_json(self.key, data, saved_supernodes(graph, entry.groups))
        except Exception as exc:
            self.post_message(TaskFailed.of("graph", exc))
            return
        self.app.call_from_thread(self._saved, entry, heads, record)

    def _saved(self, entry: CachedGraph, heads: dict, record) -> None:
        entry.heads.update(heads)
        try:
            index = self.ws.add_graph(record)
        except ListerError as exc:
            self.status = ""
            self.notify(visible(str(exc)), severity="error", markup=False)
            return
        self.status = ""
        self._refresh_text()
        self.notify(visible(f"kept as graph {index} of {self.key} in the session (saved with it)"), markup=False)

    # --- supernodes ------------------------------------------------------------------

    def action_mark(self) -> None:
        node = self._selected()
        if node is None or node.kind != "feature":
            self.notify("only feature nodes are grouped: select a transcoder or attention feature and mark it (m)", markup=False)
            return
        grid = self.query_one(CircuitGrid)
        grid.marked.symmetric_difference_update({node.id})
        grid.refresh()
        self.notify(visible(f"{len(grid.marked)} node(s) marked; g groups them into a supernode"), markup=False, timeout=3)

    def action_group(self) -> None:
        from lister_tui.core.limits import MAX_SUPERNODE_NAME
        from lister_tui.tui.screens.feature_card import LabelScreen

        grid = self.query_one(CircuitGrid)
        if self.entry is None or self.view is None or len(grid.marked) < 2:
            self.notify("mark at least two feature nodes first (m on each), then g groups them", markup=False)
            return
        members = sorted(self.view.index[i] for i in grid.marked if i in self.view.index)
        title = Text(visible(f"name the supernode of {len(members)} nodes (at most {MAX_SUPERNODE_NAME} characters)"))
        self.app.push_screen(LabelScreen(title, ""), lambda name: self._grouped(members, name))

    def _grouped(self, members: list[int], name: str | None) -> None:
        from lister_tui.core.study.graphs.supernodes import group

        if name is None or self.entry is None or self.view is None:
            return
        try:
            if any(g.name == name.strip() for g in self.entry.groups):
                raise ListerError(f"a supernode named {name.strip()!r} exists already; pick another name")
            sn = group(self.entry.graph, members, name, kept=self.view.pruned.node_mask)
        except ListerError as exc:
            self.notify(visible(str(exc)), severity="warning", markup=False)
            return
        self.entry.groups.append(sn)
        self.query_one(CircuitGrid).marked.clear()
        self._prune(regroup_only=True)

    def action_auto_group(self) -> None:
        if self.entry is None:
            return
        self.entry.auto = not self.entry.auto
        self._prune(regroup_only=True)

    def action_ungroup(self) -> None:
        node = self._selected()
        if node is None or node.kind != SUPERNODE or self.entry is None:
            self.notify("select a supernode (∑) to take it apart", markup=False)
            return
        name = self.view.groups[node.id].name
        mine = [g for g in self.entry.groups if g.name == name]
        if not mine:
            self.notify("an automatic supernode: A hides the automatic groups", markup=False)
            return
        self.entry.groups.remove(mine[0])
        self._prune(regroup_only=True)

    # --- cards and interventions -------------------------------------------------------

    def _supported(self, site: str) -> bool:
        """Whether the sample's interventions act on ``site``: the entry's SAE sites (attention
        features are ``attn_L``) and its transcoders' (``tc_L``, written at the MLP's output)."""
        if site in {s.id for s in self.loaded.entry.sites}:
            return True
        from lister_tui.core.engine.transcoders import transcoder_set_of_site

        try:
            transcoder_set_of_site(self.loaded.entry, site)
        except (ListerError, ValueError):
            return False
        return True

    def _chosen_set(self) -> set[tuple[str, int, int]]:
        if self.ws is not None and self.key is not None:
            return {c.ident for c in self.ws.state(self.key).choices}
        return self.query_one(CircuitGrid).ablated

    def _sync_chosen(self) -> None:
        grid = self.query_one(CircuitGrid)
        grid.ablated = set(self._chosen_set())
        grid.refresh()

    def _toggle(self, choice: AblationChoice) -> bool:
        """Put ``choice`` into the sample's interventions (or take it out); False with a message if its site is not supported."""
        if not self._supported(choice.sae_id):
            self.notify(visible(f"{choice.sae_id} is neither an SAE site nor a transcoder of {self.loaded.entry.name}: "
                                "no intervention acts on it"), severity="warning", markup=False)
            return False
        if self.ws is not None and self.key is not None:
            self.ws.toggle(self.key, choice)
        else:
            self.query_one(CircuitGrid).ablated.symmetric_difference_update({choice.ident})
        self._sync_chosen()
        self._refresh_text()
        return True

    def action_toggle_node(self) -> None:
        node = self._selected()
        if node is None or node.kind != "feature":
            self.notify("only a feature node can go into the interventions (not an error node, a token or the target)", markup=False)
            return
        self._toggle(AblationChoice(node.site, node.feature, node.pos))

    def action_open_card(self) -> None:
        from lister_tui.tui.screens.feature_card import FeatureCardScreen

        node = self._selected()
        if node is None or node.kind != "feature":
            self.notify("a card is a feature's: select a feature node (not an error node, a token or the target)", markup=False)
            return
        with_ws = self.ws is not None and self.key is not None
        card = FeatureCardScreen(self.loaded, node.site, node.feature, workspace=self.ws, sample_key=self.key,
                                 on_toggle=self._toggle if with_ws else None)
        self.app.push_screen(card, lambda _: self._relabel())

    def _relabel(self) -> None:
        self._sync_chosen()
        if self.view is not None:
            self._fill_outline()
        self._refresh_text()

    def action_regenerate(self) -> None:
        if self.ws is None or self.key is None or not self.ws.state(self.key).choices:
            self.notify("put a feature node into the interventions first (space)", markup=False)
            return
        attr = self.sample.structure.attribution_pos
        late = [c for c in self.ws.state(self.key).choices if c.mode != "every" and c.pos >= attr]
        if late:
            self.notify(visible(
                f"{len(late)} intervention(s) sit at the attribution position ({attr}) or later, and the list regenerates from "
                f"tokens[:{attr}], so they act on nothing; take them out (space) or pick nodes at earlier positions"), markup=False)
            return
        self.status = "regenerating (one draw)…"
        self._refresh_text()
        self.regenerate_worker(tuple(self.ws.state(self.key).choices), self.ws.state(self.key).preset)

    @work(thread=True, exclusive=True, exit_on_error=False, group="graph-regenerate", description="Regenerating")
    def regenerate_worker(self, choices: tuple[AblationChoice, ...], preset: str) -> None:
        from lister_tui.core.sessions.runs import ablation_run

        worker = get_current_worker()
        try:
            with MODEL_LOCK:
                run = ablation_run(self.loaded, self.key, self.sample, choices, preset, cancelled=lambda: worker.is_cancelled)
        except Exception as exc:
            self.post_message(TaskFailed.of("graph-regenerate", exc))
            return
        if run is not None and not worker.is_cancelled:
            self.app.call_from_thread(self._regenerated, run)

    def _regenerated(self, run: AblationRun) -> None:
        self.regenerated = run
        self.status = ""
        if self.ws is not None and self.key is not None:
            self.ws.record_ablation(self.key, run)
        self._refresh_text()


def graph_screen(host, loaded: LoadedModel, sample: ListSample, key: str | None, workspace: Workspace | None, on_close=None) -> None:
    """Push the graph screen of ``sample`` from ``host``, or say why not (no transcoders, no attribution position)."""
    try:
        screen = GraphScreen(loaded, sample, key=key, workspace=workspace, cache=getattr(host.app, "graph_cache", None))
    except ListerError as exc:
        host.notify(visible(str(exc)), timeout=8, severity="warning", markup=False)
        return
    host.app.push_screen(screen, on_close)


__all__ = ["GraphCache", "GraphScreen", "graph_screen"]
