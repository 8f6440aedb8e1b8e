"""The feature expression matrix: features x samples of max activation, clustered, per SAE.

The columns are labelled by the sample's template (``s``/``l``/``u``: short/long/unspecified)
and topic (a letter per topic), with a legend line that spells the codes out; the heatmap's
own legend says which value each colour stands for. Every label comes from the session and is
shown as text, with control characters made visible.
"""

from __future__ import annotations

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Static

from lister_tui.core.sessions.workspace import BatchAttribution, SampleState
from lister_tui.core.study.experiment import select_samples
from lister_tui.core.study.features import ExpressionMatrix, expression_matrix
from lister_tui.safe_text import visible
from lister_tui.tui.keymap import MATRIX_KEYS, bindings
from lister_tui.tui.widgets.heatmap import ColumnHeader, Heatmap

TOP_N = 300  # the study's
LABEL_WIDTH = 16  # of a feature's label next to its row
# The study's templates' one-letter codes; other templates get the first free letter of their name.
TEMPLATE_CODES = {"short": "s", "long": "l", "unspecified": "u", "free": "f"}
TOPIC_CODES = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def template_codes(names: list[str]) -> dict[str, str]:
    """A short code for each template name: the study's letters, else a free letter of the name, else a digit."""
    codes: dict[str, str] = {}
    for name in dict.fromkeys(names):
        wanted = TEMPLATE_CODES.get(name)
        candidates = ([wanted] if wanted else []) + [ch.lower() for ch in name if ch.isalnum() and ch.isascii()] + list("0123456789")
        codes[name] = next((c for c in candidates if c not in codes.values()), "?")
    return codes


def topic_codes(names: list[str]) -> dict[str, str]:
    """A letter for each topic, in order of first appearance (``?`` past the 62nd)."""
    unique = list(dict.fromkeys(names))
    return {name: TOPIC_CODES[i] if i < len(TOPIC_CODES) else "?" for i, name in enumerate(unique)}


def group_by_template(m: ExpressionMatrix, samples: list) -> ExpressionMatrix:
    """``m`` with its columns grouped by template (in order of first appearance), each group
    keeping the clustered order; rows unchanged."""
    templates = [samples[int(c)].spec.template for c in m.samples]
    rank = {t: i for i, t in enumerate(dict.fromkeys(templates))}
    order = sorted(range(len(templates)), key=lambda c: rank[templates[c]])  # stable: clustered within
    return ExpressionMatrix(m.sae_id, m.features, m.samples[order], m.values[:, order], [m.topics[c] for c in order])


class MatrixScreen(Screen[str | None]):
    """Dismisses with the key of the sample to open, or None."""

    BINDINGS = bindings(MATRIX_KEYS)
    DEFAULT_CSS = """
    MatrixScreen #matrix-title { height: 1; background: $panel; text-style: bold; padding: 0 1; }
    MatrixScreen #matrix-info { height: 2; background: $panel; padding: 0 1; }
    MatrixScreen #matrix-legend { height: auto; max-height: 3; background: $panel; padding: 0 1; }
    """

    def __init__(self, batch: BatchAttribution, states: dict[str, SampleState], sae_ids: list[str]) -> None:
        super().__init__()
        self.batch = batch
        self.states = states
        self.sae_ids = [s for s in sae_ids if s in batch.by_sae]
        self.sae_index = 0
        self.matrix: ExpressionMatrix | None = None
        # the batch's samples still in the session (one removed since the batch was attributed is left out)
        self.kept = [i for i, k in enumerate(batch.keys) if k in states]
        self.keys = [batch.keys[i] for i in self.kept]
        self.grouped = False  # columns grouped by template (clustered within each group), else clustered

    def compose(self) -> ComposeResult:
        yield Static("", id="matrix-title")
        yield Heatmap(id="heatmap")
        yield Static("", id="matrix-legend")
        yield Static("", id="matrix-info")
        yield Footer()

    def on_mount(self) -> None:
        self._load()
        self.query_one(Heatmap).focus()

    def _load(self) -> None:
        sae = self.sae_ids[self.sae_index]
        if not self.keys:
            self.query_one("#matrix-title", Static).update(
                "Expression matrix · every sample of the attributed batch was removed: attribute the batch again (A)"
            )
            return
        samples = [self.states[k].sample for k in self.keys]
        attr = self.batch.by_sae[sae]
        if len(self.kept) < len(self.batch.keys):
            attr = select_samples(attr, self.kept)
        m = expression_matrix(attr, samples, top_n=TOP_N)
        if self.grouped:
            m = group_by_template(m, samples)
        self.matrix = m
        removed = len(self.batch.keys) - len(self.keys)
        self.query_one("#matrix-title", Static).update(
            f"Expression matrix · {escape(visible(sae))} ({self.sae_index + 1}/{len(self.sae_ids)}, [ ] switch) · "
            f"{len(m.features)} features × {len(m.samples)} samples · max activation, "
            + ("grouped by template (g)" if self.grouped else "clustered (g: group by template)")
            + (f" · {removed} removed sample{'s' if removed > 1 else ''} left out" if removed else "")
        )
        headers = self._column_headers()
        self.query_one(Heatmap).show(m.values, [self._row_label(sae, int(f)) for f in m.features], headers)
        self.query_one("#matrix-legend", Static).update(self._legend())

    def _column_specs(self) -> list:
        assert self.matrix is not None
        return [self.states[self.keys[int(i)]].sample.spec for i in self.matrix.samples]

    def _codes(self) -> tuple[dict[str, str], dict[str, str]]:
        """The codes of templates and topics, in the session's order of the samples: the same
        whichever order the columns are in (clustered or grouped)."""
        specs = [self.states[k].sample.spec for k in self.keys]
        return template_codes([s.template for s in specs]), topic_codes([s.topic for s in specs])

    def _column_headers(self) -> tuple[ColumnHeader, ...]:
        specs = self._column_specs()
        templates, topics = self._codes()
        return (
            ColumnHeader("template", tuple(visible(s.template) for s in specs), tuple(templates[s.template] for s in specs)),
            ColumnHeader("topic", tuple(visible(s.topic) for s in specs), tuple(topics[s.topic] for s in specs)),
        )

    def _legend(self) -> Text:
        """What the column codes stand for (names from the session: text, not markup)."""
        out = Text("columns · template ", style="dim")
        templates, topics = self._codes()
        for i, (name, code) in enumerate(templates.items()):
            out.append(" · " if i else "")
            out.append(visible(code), style="bold")
            out.append(" " + visible(name))
        out.append("   topic ", style="dim")
        for i, (name, code) in enumerate(topics.items()):
            out.append(" · " if i else "")
            out.append(visible(code), style="bold")
            out.append(" " + visible(name))
        return out

    def _row_label(self, sae: str, feature: int) -> str:
        """``f12`` or ``f12 label`` (the user's label, shown as text, cut to LABEL_WIDTH)."""
        ws = getattr(self.app, "workspace", None)
        label = ws.label(sae, feature) if ws is not None else ""
        if not label:
            return f"f{feature}"
        label = visible(label)
        return f"f{feature} " + (label if len(label) <= LABEL_WIDTH else label[: LABEL_WIDTH - 1] + "…")

    def action_group(self) -> None:
        """Group the columns by template (the cursor stays on its sample), or back to the clustered order."""
        m = self.matrix
        sample = int(m.samples[self.query_one(Heatmap).col]) if m is not None and m.values.size else None
        self.grouped = not self.grouped
        self._load()
        if sample is not None and self.matrix is not None:
            heatmap = self.query_one(Heatmap)
            heatmap.move(0, list(self.matrix.samples).index(sample) - heatmap.col)

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
        key = self.keys[int(m.samples[heatmap.col])]

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
        self.dismiss(self.keys[int(self.matrix.samples[col])])

    def on_heatmap_moved(self, event: Heatmap.Moved) -> None:
        m = self.matrix
        if m is None or m.values.size == 0:
            return
        feature = int(m.features[event.row])
        key = self.keys[int(m.samples[event.col])]
        spec = self.states[key].sample.spec
        self.query_one("#matrix-info", Static).update(
            # the SAE id, template and topic come from the session: text, not markup
            f"feature [b]{escape(visible(self.sae_ids[self.sae_index]))} f{feature}[/b] × sample "
            f"[b]{escape(visible(f'{spec.template}/{spec.topic}/{spec.sample}'))}[/b]: "
            f"max activation {m.values[event.row, event.col]:.3f}\n"
            f"seed {spec.seed} · row {event.row + 1}/{m.values.shape[0]:d}, column {event.col + 1}/{m.values.shape[1]:d} · "
            "enter: card · o: open sample"
        )
