"""The feature expression matrix: features x samples of max activation, clustered, per SAE."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Static

from lister_tui.core.sessions.workspace import BatchAttribution, SampleState
from lister_tui.core.study.features import ExpressionMatrix, expression_matrix
from lister_tui.safe_text import visible
from lister_tui.tui.keymap import MATRIX_KEYS, bindings
from lister_tui.tui.widgets.heatmap import Heatmap

TOP_N = 300  # the study's
LABEL_WIDTH = 16  # of a feature's label next to its row


class MatrixScreen(Screen[str | None]):
    """Dismisses with the key of the sample to open, or None."""

    BINDINGS = bindings(MATRIX_KEYS)
    DEFAULT_CSS = """
    MatrixScreen #matrix-title { height: 1; background: $panel; text-style: bold; padding: 0 1; }
    MatrixScreen #matrix-info { height: 2; background: $panel; padding: 0 1; }
    """

    def __init__(self, batch: BatchAttribution, states: dict[str, SampleState], sae_ids: list[str]) -> None:
        super().__init__()
        self.batch = batch
        self.states = states
        self.sae_ids = [s for s in sae_ids if s in batch.by_sae]
        self.sae_index = 0
        self.matrix: ExpressionMatrix | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="matrix-title")
        yield Heatmap(id="heatmap")
        yield Static("", id="matrix-info")
        yield Footer()

    def on_mount(self) -> None:
        self._load()
        self.query_one(Heatmap).focus()

    def _load(self) -> None:
        sae = self.sae_ids[self.sae_index]
        samples = [self.states[k].sample for k in self.batch.keys]
        self.matrix = expression_matrix(self.batch.by_sae[sae], samples, top_n=TOP_N)
        m = self.matrix
        self.query_one("#matrix-title", Static).update(
            f"Expression matrix · {escape(visible(sae))} ({self.sae_index + 1}/{len(self.sae_ids)}, [ ] switch) · "
            f"{len(m.features)} features × {len(m.samples)} samples · max activation, clustered"
        )
        self.query_one(Heatmap).show(m.values, [self._row_label(sae, int(f)) for f in m.features])

    def _row_label(self, sae: str, feature: int) -> str:
        """``f12`` or ``f12 label`` (the user's label, shown as text, cut to LABEL_WIDTH)."""
        ws = getattr(self.app, "workspace", None)
        label = ws.label(sae, feature) if ws is not None else ""
        if not label:
            return f"f{feature}"
        label = visible(label)
        return f"f{feature} " + (label if len(label) <= LABEL_WIDTH else label[: LABEL_WIDTH - 1] + "…")

    def action_sae(self, step: int) -> None:
        self.sae_index = (self.sae_index + step) % len(self.sae_ids)
        self._load()

    def action_move(self, dr: int, dc: int) -> None:
        self.query_one(Heatmap).move(dr, dc)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_feature_card(self) -> None:
        """The card of the feature under the cursor, with the column's sample in its strip."""
        from lister_tui.tui.screens.feature_card import FeatureCardScreen

        m = self.matrix
        if m is None or m.values.size == 0:
            return
        heatmap = self.query_one(Heatmap)
        feature = int(m.features[heatmap.row])
        key = self.batch.keys[int(m.samples[heatmap.col])]

        def closed(changed: bool | None) -> None:
            if changed:
                self._load()  # a new label next to its row

        self.app.push_screen(
            FeatureCardScreen(self.app.lab, self.sae_ids[self.sae_index], feature, workspace=getattr(self.app, "workspace", None), sample_key=key),
            closed,
        )

    def action_open_sample(self) -> None:
        if self.matrix is None or self.matrix.values.size == 0:
            return
        col = self.query_one(Heatmap).col
        self.dismiss(self.batch.keys[int(self.matrix.samples[col])])

    def on_heatmap_moved(self, event: Heatmap.Moved) -> None:
        m = self.matrix
        if m is None or m.values.size == 0:
            return
        feature = int(m.features[event.row])
        key = self.batch.keys[int(m.samples[event.col])]
        spec = self.states[key].sample.spec
        self.query_one("#matrix-info", Static).update(
            # the SAE id, template and topic come from the session: text, not markup
            f"feature [b]{escape(visible(self.sae_ids[self.sae_index]))} f{feature}[/b] × sample "
            f"[b]{escape(visible(f'{spec.template}/{spec.topic}/{spec.sample}'))}[/b] "
            f"(seed {spec.seed}): max activation {m.values[event.row, event.col]:.3f}\n"
            f"row {event.row + 1}/{m.values.shape[0]}, column {event.col + 1}/{m.values.shape[1]} · enter: the feature's card · o: open the sample"
        )
