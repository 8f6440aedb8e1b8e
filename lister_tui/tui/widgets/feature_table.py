"""Ranked (position, feature) pairs of a sample, or the batch's dataset ranking.

Rows are built from the engine's tables (``features.pairs_table`` and
``features.dataset_ranking``); this module only filters, sorts and formats them.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import DataTable

from lister_tui.safe_text import visible as visible_text
from lister_tui.tui.widgets.token_view import visible


@dataclass(frozen=True)
class FeatureRow:
    sae_id: str
    feature: int
    pos: int | None  # None in the dataset ranking
    token: str
    attribution: float  # sample: the pair's attribution; dataset: sum over top-k appearances
    activation: float | None  # sample only
    error_share: float | None  # sample only
    rank: int  # within its SAE (sample) or the SAE's dataset ranking
    mean: float | None = None  # dataset only
    count: int | None = None
    samples: int | None = None

    @property
    def key(self) -> str:
        return f"{self.sae_id}:{self.feature}:{-1 if self.pos is None else self.pos}"

    def haystack(self) -> str:
        return f"{self.sae_id} f{self.feature} {self.feature} {self.token} pos:{self.pos}".lower()


def rows_from_pairs(frame) -> list[FeatureRow]:
    """Rows of ``features.pairs_table`` (one sample)."""
    return [
        FeatureRow(r.sae, int(r.feature), int(r.position), str(r.token), float(r.attribution), float(r.activation), float(r.error_share), int(r.rank))
        for r in frame.itertuples(index=False)
    ]


def rows_from_ranking(frame) -> list[FeatureRow]:
    """Rows of ``features.dataset_ranking`` (one SAE, already sorted)."""
    return [
        FeatureRow(r.sae, int(r.feature), None, str(r.top_token), float(r.attribution_sum), None, None, i + 1,
                   float(r.attribution_mean), int(r.count_in_top_k), int(r.samples))
        for i, r in enumerate(frame.itertuples(index=False))
    ]


LABEL_WIDTH = 18  # the label column (the whole label is in the card and the exports)


def label_cell(label: str) -> Text:
    """A user's label as a table cell: text, never markup, control characters shown."""
    return Text(" " + visible_text(label) if label else "", style="italic")


SORT_KEYS: tuple[str, ...] = ("attribution", "activation", "pos", "feature", "sae")


def sort_rows(rows: list[FeatureRow], key: str) -> list[FeatureRow]:
    if key == "attribution":
        return sorted(rows, key=lambda r: (-r.attribution, r.sae_id, r.feature))
    if key == "activation":
        return sorted(rows, key=lambda r: (-(r.activation if r.activation is not None else r.count or 0), -r.attribution))
    if key == "pos":
        return sorted(rows, key=lambda r: (r.pos if r.pos is not None else -1, -r.attribution))
    if key == "feature":
        return sorted(rows, key=lambda r: (r.feature, r.sae_id))
    return sorted(rows, key=lambda r: (r.sae_id, r.rank))


def filter_rows(rows: list[FeatureRow], query: str) -> list[FeatureRow]:
    """Keep rows whose every word of ``query`` occurs in their text (``pos:37``, ``f277``, ``res_0``).

    ``sae:NAME`` keeps one SAE exactly (what ``s`` writes into the filter, so that the SAE
    choice and the typed words are one visible query)."""
    words = query.lower().split()
    saes = {w[4:] for w in words if w.startswith("sae:")}
    words = [w for w in words if not w.startswith("sae:")]
    return [r for r in rows if (not saes or r.sae_id.lower() in saes) and all(w in r.haystack() for w in words)]


def with_sae(query: str, sae: str | None) -> str:
    """``query`` with its ``sae:`` word replaced by ``sae:NAME`` (or dropped for every SAE)."""
    words = [w for w in query.split() if not w.lower().startswith("sae:")]
    return " ".join(([f"sae:{sae}"] if sae else []) + words) + (" " if words or sae else "")


def query_sae(query: str) -> str | None:
    """The SAE a query names with ``sae:NAME`` (the first), else None."""
    return next((w[4:] for w in query.split() if w.lower().startswith("sae:")), None)


class FeatureTable(DataTable):
    """A row per feature pair; the first column shows whether it is ablated and how."""

    DEFAULT_CSS = """
    FeatureTable { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, cell_padding=0)
        self.rows_shown: list[FeatureRow] = []
        self.dataset = False
        self.with_labels = False
        self.spare_width = 0  # cells past the fixed columns, given to the label (or token) column
        self._last: tuple | None = None  # the last show()'s arguments, shown again at a new width
        self._shown_width = -1

    def _spare(self, fixed: int) -> int:
        """The width left over beside ``fixed`` cells of columns (one cell kept for the scrollbar)."""
        return max(0, self.size.width - fixed - 1)

    def on_resize(self) -> None:
        if self._last is not None and self.columns and self.size.width != self._shown_width:
            self.show(*self._last)

    def show(self, rows: list[FeatureRow], modes: dict[str, str], dataset: bool, links: bool, labels: dict | None = None, dense: frozenset = frozenset()) -> None:
        """``modes`` maps a row key to "@" (at its position) or "∀" (every position); ``labels``
        maps (sae_id, feature) to the user's label, shown in a last column once some feature has one
        (so a narrow terminal loses no row to a horizontal scrollbar before then); rows whose key
        is in ``dense`` carry a ``d`` before their mark (a dense feature: not by colour alone)."""
        self._last = (rows, modes, dataset, links, labels, dense)
        self._shown_width = self.size.width
        labels = labels or {}
        with_labels = bool(labels)
        keep = self.cursor_row
        current = self.rows_shown[keep].key if 0 <= keep < len(self.rows_shown) else None
        if dataset:
            cols = [("ab", 2), ("  #", 3), (" SAE", 7), (" feat", 5), ("  Σattr", 8), ("   mean", 7), ("  n", 3), ("  smp", 5), (" token", 10)]
        else:
            cols = [("ab", 2), ("  #", 3), (" SAE", 7), (" feat", 5), (" pos", 4), (" token", 9), ("   attr", 7), ("   act", 6), ("  err", 5)]
        fixed = sum(w for _, w in cols)
        # a wide terminal widens the label column (or, without labels, the token column, up to 24)
        spare = self._spare(fixed + (LABEL_WIDTH if with_labels else 0))
        if with_labels:
            cols.append((" label", LABEL_WIDTH + spare))
        else:
            i = next(i for i, (name, _) in enumerate(cols) if name == " token")
            cols[i] = (" token", cols[i][1] + min(spare, 24 - cols[i][1]))
        self.clear(columns=self.dataset != dataset or not self.columns or self.with_labels != with_labels or self.spare_width != spare)
        self.dataset = dataset
        self.with_labels = with_labels
        self.spare_width = spare
        if not self.columns:
            for label, w in cols:
                self.add_column(label, width=w, key=label.strip())
        self.rows_shown = rows
        for r in rows:
            mark = modes.get(r.key, "")
            mark_text = Text(" " + visible_text(mark), style="bold reverse") if mark else Text("")
            if r.key in dense:
                mark_text = Text("d", style="italic") + (mark_text[1:] if mark else Text(" "))
            tok = " " + visible(r.token)
            if dataset:
                cells = (mark_text, f"{r.rank:>3}", " " + visible_text(r.sae_id), f"{r.feature:>5}", f"{r.attribution:>+8.3f}", f"{r.mean:>+7.3f}", f"{r.count:>3}", f"{r.samples:>5}", tok)
            else:
                cells = (mark_text, f"{r.rank:>3}", " " + visible_text(r.sae_id), f"{r.feature:>5}", f"{r.pos:>4}", tok, f"{r.attribution:>+7.3f}", f"{r.activation:>6.2f}", f"{r.error_share:>5.2f}")
            if with_labels:
                cells += (label_cell(labels.get((r.sae_id, r.feature), "")),)
            # Text cells: a plain string would be parsed as markup, which dominates a redraw of hundreds of rows
            self.add_row(*(c if isinstance(c, Text) else Text(c) for c in cells), key=r.key)  # safe-text: cells above: numbers, visible(...) and label_cell(...)
        if current is not None:
            for i, r in enumerate(rows):
                if r.key == current:
                    self.move_cursor(row=i, animate=False)
                    break

    def highlighted(self) -> FeatureRow | None:
        i = self.cursor_row
        return self.rows_shown[i] if 0 <= i < len(self.rows_shown) else None
