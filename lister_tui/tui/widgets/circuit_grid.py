"""The circuit grid: sites as rows (the metric on top, the embeddings at the bottom), token
positions as columns, each node a short label; the cursor is a node, and the selected
node's parents (green) and children (magenta) are highlighted. A feature the user has labelled
shows its label after its id where the column has room (``+``/``-`` widen the columns); a label
is untrusted text, shown by :mod:`lister_tui.safe_text`'s rule.

The grid draws anything shaped like a circuit: ``nodes`` (circuit ``Node``s, their ``site`` the
row they sit in) and ``parents(id)`` / ``children(id)`` (``Edge``s); the circuit screen gives it
a :class:`~lister_tui.core.study.circuits.Circuit`, the graph screen a pruned attribution graph's
:class:`~lister_tui.core.study.graphs.view.GraphView` with its own rows (layers, not SAE sites)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from rich.text import Text
from textual.widget import Widget

from lister_tui.core.study.circuits import METRIC, Circuit
from lister_tui.core.study.circuits.export import label
from lister_tui.core.study.circuits.graph import EMBED, Edge, Node
from lister_tui.safe_text import visible as visible_text

ROW_LABEL = 8  # width of the site names left of the grid


class Drawable(Protocol):
    """What the grid draws: nodes and each node's edges (a Circuit, a GraphView)."""

    nodes: Sequence[Node]

    def parents(self, node_id: str) -> list[Edge]: ...

    def children(self, node_id: str) -> list[Edge]: ...


def rows_of(circuit: Circuit) -> list[str]:
    """Grid rows, top to bottom: the metric, the sites from the last to the first, the embeddings."""
    present = {n.site for n in circuit.nodes}
    sites = [s for s in circuit.settings.sites if s in present]
    # model order from the site ids alone (a saved circuit may outlive its model entry)
    def order(site: str) -> tuple[int, int]:
        kind, _, layer = site.rpartition("_")
        return (int(layer), 0 if kind == "attn" else 1) if layer.isdigit() else (10**6, 0)

    return [METRIC, *sorted(sites, key=order, reverse=True), EMBED]


def cell_text(node: Node, more: str, width: int, label_of: Callable[[str, int], str] | None = None) -> str:
    """A node's cell, at most ``width`` characters: its short label, ``+`` when the cell holds more
    nodes, and the user's label of a feature after a space when at least two of its characters fit."""
    if node.kind == "supernode":  # "∑ attn_2/53" shows as ∑53, "∑ label: the word" as ∑the word
        short = "∑" + node.id[2:].removeprefix("label: ").rsplit("/", 1)[-1]
    else:
        short = "emb" if node.kind == "embed" else label(node)
    short += more
    name = label_of(node.site, node.feature) if label_of is not None and node.kind == "feature" and node.feature is not None else ""
    if name:
        name = visible_text(name)
        room = width - len(short) - 1
        if room >= len(name):
            short = f"{short} {name}"
        elif room >= 2:
            short = f"{short} {name[: room - 1]}…"
    return short[:width]


class CircuitGrid(Widget, can_focus=True):
    """Sites x positions, nodes as labels; the cursor is a node."""

    DEFAULT_CSS = "CircuitGrid { height: 1fr; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.circuit: Drawable | None = None
        self.tokens: list[str] = []
        self.rows: list[str] = []
        self.columns: list[int] = []
        self.cells: dict[tuple[str, int], list[Node]] = {}
        self.row = 0
        self.col = 0
        self.index = 0  # which node of the cell
        self.start = 0  # first visible column
        self.col_width = 6
        self.all_positions = False
        self.ablated: set[tuple[str, int, int]] = set()
        self.marked: set[str] = set()  # node ids marked (underlined), e.g. to group them
        self.label_of: Callable[[str, int], str] | None = None  # the user's label of (site, feature)
        self.empty_text = "computing the circuit…"  # shown until show()

    def show(self, circuit: Drawable, tokens: list[str], rows: list[str] | None = None, keep_cursor: bool = False) -> None:
        """Draw ``circuit`` (rows: top to bottom; default a Circuit's sites); ``keep_cursor``: stay
        on the selected node if it is still drawn (a re-pruned graph), else start at the metric."""
        before = self.selected.id if keep_cursor and self.circuit is not None and self.selected is not None else None
        self.circuit = circuit
        self.tokens = tokens
        self.rows = rows if rows is not None else rows_of(circuit)  # type: ignore[arg-type]
        self.cells = {}
        for n in circuit.nodes:
            pos = n.pos if n.pos is not None else len(tokens) - 1
            self.cells.setdefault((n.site, pos), []).append(n)
        for nodes in self.cells.values():
            nodes.sort(key=lambda n: -abs(n.effect))
        self._set_columns()
        self.row, self.index = 0, 0
        self.col = len(self.columns) - 1  # start at the metric, at the attribution position
        if before is not None:
            self.select(before)
        self.refresh()

    def _set_columns(self) -> None:
        used = sorted({pos for (_, pos) in self.cells})
        self.columns = list(range(len(self.tokens))) if self.all_positions else used

    @property
    def selected(self) -> Node | None:
        if not self.columns or not self.rows:
            return None
        nodes = self.cells.get((self.rows[self.row], self.columns[self.col]), [])
        return nodes[self.index % len(nodes)] if nodes else None

    def select(self, node_id: str) -> None:
        for (site, pos), nodes in self.cells.items():
            for i, n in enumerate(nodes):
                if n.id == node_id and pos in self.columns:
                    self.row, self.col, self.index = self.rows.index(site), self.columns.index(pos), i
                    self.refresh()
                    return

    def move(self, d_row: int, d_col: int) -> None:
        """Up/down one row; left/right to the next column where this row has a node (one column
        when the row has none that way, so the view still scrolls)."""
        if not self.columns:
            return
        self.row = max(0, min(len(self.rows) - 1, self.row + d_row))
        if d_col:
            site = self.rows[self.row]
            step = 1 if d_col > 0 else -1
            ahead = range(self.col + step, len(self.columns) if step > 0 else -1, step)
            with_node = [c for c in ahead if self.cells.get((site, self.columns[c]))]
            target = with_node[0] if with_node else self.col + d_col
            self.col = max(0, min(len(self.columns) - 1, target))
        self.index = 0
        self.refresh()

    def cycle(self, step: int) -> None:
        self.index += step
        self.refresh()

    def zoom(self, step: int) -> None:
        self.col_width = max(4, min(12, self.col_width - step))
        self.refresh()

    def toggle_all_positions(self) -> None:
        pos = self.columns[self.col] if self.columns else 0
        self.all_positions = not self.all_positions
        self._set_columns()
        self.col = min(range(len(self.columns)), key=lambda i: abs(self.columns[i] - pos)) if self.columns else 0
        self.refresh()

    def visible_columns(self) -> int:
        return max(1, (self.size.width - ROW_LABEL) // self.col_width)

    def render(self) -> Text:
        if self.circuit is None:
            return Text(self.empty_text, style="dim")
        width = self.visible_columns()
        if self.col < self.start:
            self.start = self.col
        elif self.col >= self.start + width:
            self.start = self.col - width + 1
        window = self.columns[self.start : self.start + width]
        selected = self.selected
        parents = {e.source: e.weight for e in self.circuit.parents(selected.id)} if selected else {}
        children = {e.target: e.weight for e in self.circuit.children(selected.id)} if selected else {}
        out = Text(no_wrap=True, overflow="crop")
        w = self.col_width
        out.append(" " * ROW_LABEL)
        for pos in window:
            out.append(f"{pos:>{w - 1}} ", style="dim")  # safe-text: a position number
        out.append("\n" + " " * ROW_LABEL)
        for pos in window:
            token = visible_text(self.tokens[pos]) if pos < len(self.tokens) else ""
            out.append(f"{token[: w - 1]:>{w - 1}} ", style="bold" if pos == self.columns[-1] else "")
        out.append("\n")
        for r, site in enumerate(self.rows):
            out.append(f"{visible_text(site)[: ROW_LABEL - 1]:<{ROW_LABEL}}", style="bold" if r == self.row else "dim")
            for c, pos in enumerate(window, start=self.start):
                nodes = self.cells.get((site, pos), [])
                if not nodes:
                    out.append(f"{'·':>{w - 1}} ", style="dim")
                    continue
                shown = nodes[self.index % len(nodes)] if (r, c) == (self.row, self.col) else nodes[0]
                more = "+" if len(nodes) > 1 else ""
                cell = f"{cell_text(shown, more, w - 1, self.label_of):>{w - 1}}"
                style = "dim" if shown.kind == "error" else ""
                in_set = [n for n in nodes if n.id in parents or n.id in children]
                if in_set and (r, c) != (self.row, self.col):
                    shown = in_set[0]
                    cell = f"{cell_text(shown, more, w - 1, self.label_of):>{w - 1}}"
                    style = "bold green" if shown.id in parents else "bold magenta"
                if shown.feature is not None and shown.pos is not None and (shown.site, shown.feature, shown.pos) in self.ablated:
                    style += " strike red"
                if shown.id in self.marked:
                    style += " underline"
                if (r, c) == (self.row, self.col):
                    style = "reverse bold" + (" underline" if shown.id in self.marked else "")
                out.append(cell, style=style.strip())  # safe-text: cell_text(...) shows ids and labels through visible
                out.append(" ")
            out.append("\n")
        if len(self.columns) > width:
            out.append(f"positions {self.start + 1}-{self.start + len(window)} of {len(self.columns)} columns (←/→ scroll, +/- zoom)", style="dim")  # safe-text: numbers only
        return out
