"""A feature's card as a screen: top contexts, interval samples, histogram, logit effects, the sample strip.

Push it from anywhere that names a feature::

    app.push_screen(FeatureCardScreen(lab, "res_0", 377, workspace=ws, sample_key=key))

The card (:func:`lister_tui.core.study.cards.feature_card`) is computed in a cancellable
thread worker with a progress bar; the corpus pass is cached on disk, so a second card
of the same SAE opens at once. With a workspace, the screen can switch the feature off in
the sample's ablation (at its attributed position, else at every position; through
``on_toggle`` when given, e.g. the explorer's controller) and edit the
feature's label, which the session keeps. It dismisses with True when it changed the
workspace (so the caller refreshes), else False.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, Label, ProgressBar, Static
from textual.worker import get_current_worker
from textual_plotext import PlotextPlot

from lister_tui.core.sessions.workspace import LABEL_MAX_CHARS, AblationChoice, Workspace
from lister_tui.core.study.cards import FeatureCard, feature_card
from lister_tui.core.study.corpus import Corpus, PassCancelled, default_corpus
from lister_tui.safe_text import text, visible
from lister_tui.tui.card_render import (
    axis_ticks,
    contexts_lines,
    effects_text,
    feature_title,
    sample_text,
    summary_text,
    top_title,
)
from lister_tui.tui.header import Part, fit
from lister_tui.tui.keymap import CARD_KEYS, bindings
from lister_tui.tui.messages import CardProgress, CardReady, TaskFailed


class LabelScreen(ModalScreen[str | None]):
    """Edit a feature's one-line label: enter keeps it (empty removes it), esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="lister.label.cancel")]
    DEFAULT_CSS = """
    LabelScreen { align: center middle; }
    LabelScreen > Vertical { width: 70; height: auto; border: round $accent; background: $panel; padding: 0 1; }
    """

    def __init__(self, title: Text, text: str) -> None:
        super().__init__()
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text)  # safe-text: a feature_title(...) Text
            yield Input(self.text, placeholder="a one-line name, e.g. 'the word short'", max_length=LABEL_MAX_CHARS, id="label")
            yield Label("enter keeps · an empty label removes it · esc cancels", markup=False)

    def on_mount(self) -> None:
        self.query_one("#label", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class FeatureCardScreen(Screen[bool]):
    BINDINGS = bindings(CARD_KEYS)
    DEFAULT_CSS = """
    FeatureCardScreen #card-title { height: auto; max-height: 4; background: $panel; padding: 0 1; }
    FeatureCardScreen #card-state { height: 1; padding: 0 1; }
    FeatureCardScreen #card-progress { height: 1; }
    FeatureCardScreen #card-progress.-done { display: none; }
    FeatureCardScreen #card-body { height: 1fr; }
    FeatureCardScreen #card-contexts { height: auto; padding: 0 1; }
    FeatureCardScreen #card-lower { height: 14; }
    FeatureCardScreen #card-histogram { width: 1fr; min-width: 30; }
    FeatureCardScreen #card-effects { width: 1fr; padding: 0 1; }
    FeatureCardScreen #card-sample { height: auto; padding: 0 1; }
    """

    def __init__(
        self,
        lab,
        sae_id: str,
        feature: int,
        *,
        workspace: Workspace | None = None,
        sample_key: str | None = None,
        corpus: Corpus | None = None,
        cache: Path | bool = True,
        on_toggle: Callable[[AblationChoice], None] | None = None,
    ) -> None:
        super().__init__()
        self.lab = lab
        self.sae_id = sae_id
        self.feature = int(feature)
        self.ws = workspace
        self.sample_key = sample_key
        self.corpus = corpus
        self.cache = cache
        self.on_toggle = on_toggle  # the explorer's own toggle (else the workspace is changed here)
        self.card: FeatureCard | None = None
        self.changed = False

    # --- layout ---------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="card-title")
        yield Static("", id="card-state", markup=False)
        yield ProgressBar(id="card-progress", show_eta=True)
        with VerticalScroll(id="card-body"):
            yield Static("", id="card-contexts")
            with Horizontal(id="card-lower"):
                yield PlotextPlot(id="card-histogram")
                yield Static("", id="card-effects")
            yield Static("", id="card-sample")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_state()
        if getattr(self.lab, "model", None) is None:
            self.query_one("#card-state", Static).update("this session is read-only: its model is not here, so no card can be computed")
            self.query_one("#card-progress").add_class("-done")
            return
        self.compute()

    def _label(self) -> str:
        return self.ws.label(self.sae_id, self.feature) if self.ws is not None else ""

    def _title(self) -> Text:
        if self.card is not None:
            return summary_text(self.card)
        text = feature_title(self.sae_id, self.feature, self._label())
        text.append(visible(f"  ·  {self.lab.entry.name}  ·  computing its card…"))
        return text

    def _sample_tuple(self):
        if self.ws is None or self.sample_key is None or self.sample_key not in self.ws.samples:
            return None
        st = self.ws.state(self.sample_key)
        attr = (st.attribution or {}).get(self.sae_id)
        return (self.sample_key, st.sample.tokens, attr)

    # --- computing --------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="card", description="Feature card")
    def compute(self) -> None:
        worker = get_current_worker()

        def progress(done: int, total: int) -> bool:
            self.post_message(CardProgress(done, total))
            return worker.is_cancelled

        try:
            corpus = self.corpus
            if corpus is None:
                samples = {k: st.sample for k, st in self.ws.samples.items()} if self.ws is not None else None
                corpus = default_corpus(self.lab, samples)
            card = feature_card(
                self.lab, self.sae_id, self.feature, corpus, sample=self._sample_tuple(), label=self._label(), cache=self.cache, on_progress=progress
            )
        except PassCancelled:
            return
        except Exception as exc:  # a worker's failure becomes a message, never a traceback
            self.post_message(TaskFailed.of("feature card", exc))
            return
        if not worker.is_cancelled:
            self.post_message(CardReady(card))

    def on_card_progress(self, message: CardProgress) -> None:
        self.query_one("#card-progress", ProgressBar).update(total=message.total, progress=message.done)
        self.query_one("#card-state", Static).update(f"corpus pass: {message.done:,} of {message.total:,} tokens (esc cancels)")

    def on_card_ready(self, message: CardReady) -> None:
        self.card = message.card
        for notice in message.card.notices:
            self.app.notify(visible(notice), title="feature card", severity="warning", timeout=10, markup=False)
        self.query_one("#card-progress").add_class("-done")
        self.show_card()

    def on_task_failed(self, message: TaskFailed) -> None:
        self.query_one("#card-progress").add_class("-done")
        self.query_one("#card-state", Static).update(text(f"the card failed: {message.error}"))
        if not message.expected:
            from lister_tui.tui.screens.error import ErrorScreen

            self.app.push_screen(ErrorScreen(f"{message.task} failed", message.error))

    # --- showing ----------------------------------------------------------------

    def show_card(self) -> None:
        card = self.card
        if card is None:
            return
        from dataclasses import replace

        card = replace(card, label=self._label())
        self.card = card
        self.query_one("#card-title", Static).update(summary_text(card))
        width = max(40, self.size.width - 4)
        body = contexts_lines(card.contexts, top_title(card.contexts), width, brackets=False)
        for g in card.intervals:
            if g.contexts:
                body.append("\n\n")
                body.append_text(contexts_lines(g.contexts, f"Interval ({g.low:.2f}, {g.high:.2f}]: {g.share:.1%} of firings", width, brackets=False))
        self.query_one("#card-contexts", Static).update(body)
        self.query_one("#card-effects", Static).update(effects_text(card))
        self.query_one("#card-sample", Static).update(sample_text(card) if card.sample is not None else Text("no sample selected", style="dim"))
        plot = self.query_one("#card-histogram", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        if card.histogram_counts:
            edges = card.histogram_edges
            centres = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
            plt.bar(centres, list(card.histogram_counts), width=0.9 * (edges[1] - edges[0]))
            ticks, labels = axis_ticks(edges[-1])  # round labels, several of them (not 0.7768158912658691 alone)
            plt.xticks(ticks, [visible(label) for label in labels])
            plt.xlim(0.0, edges[-1])
        plt.title(f"non-zero activations · density {card.density:.2%}")
        plt.xlabel("activation")
        plot.refresh()
        self.refresh_state()

    def on_resize(self) -> None:
        self.refresh_state()  # the state line keeps what fits the new width

    def refresh_state(self) -> None:
        if self.card is None and self.query("#card-progress.-done"):
            return
        parts = []
        if self.ws is not None and self.sample_key is not None and self.sample_key in self.ws.samples:
            on = [c for c in self.ws.state(self.sample_key).choices if (c.sae_id, c.feature) == (self.sae_id, self.feature)]
            parts.append(Part("ablated in this sample" if on else "not ablated in this sample", 0))
            parts.append(Part("space toggles", 1))
        # the keys are in the footer too: they go first when the line is short, whole, never cut
        parts += [Part("l labels", 2), Part("y copies its link or id", 3), Part("esc closes", 4)]
        if self.card is not None:
            self.query_one("#card-state", Static).update(fit(parts, max(self.size.width - 2, 1)))

    # --- actions ----------------------------------------------------------------

    def action_close(self) -> None:
        for w in self.workers:
            w.cancel()
        self.dismiss(self.changed)

    def action_toggle(self) -> None:
        if self.ws is None or self.sample_key is None or self.sample_key not in self.ws.samples:
            self.notify("no sample to ablate it in", severity="warning")
            return
        existing = [c for c in self.ws.state(self.sample_key).choices if (c.sae_id, c.feature) == (self.sae_id, self.feature)]
        toggle = self.on_toggle or (lambda c: self.ws.toggle(self.sample_key, c))
        if existing:
            for c in existing:
                toggle(c)
            self.notify(f"{self.sae_id} f{self.feature} switched back on", timeout=2)
        else:
            sample = self._sample_tuple()
            trace = self.card.sample if self.card is not None else None
            pos = trace.position if trace is not None else None
            if pos is None and sample is not None and sample[2] is not None:
                pos = next((p.pos for p in sample[2].top[0] if p.feature == self.feature), None)
            attr_pos = self.ws.state(self.sample_key).sample.structure.attribution_pos
            # a regeneration starts at the attribution position: a pair there or after acts at every position
            if pos is not None and (attr_pos is None or pos < attr_pos):
                choice = AblationChoice(self.sae_id, self.feature, pos, "position")
                where = f"at pos {pos}"
            else:
                choice = AblationChoice(self.sae_id, self.feature, -1 if pos is None else pos, "every")
                where = "at every position" + ("" if pos is not None else " (it is not among the sample's attributed pairs)")
            toggle(choice)
            self.notify(f"{self.sae_id} f{self.feature} switched off {where}", timeout=3)
        self.changed = True
        self.refresh_state()

    def action_copy_link(self) -> None:
        link = self.lab.entry.feature_link(self.sae_id, self.feature)
        if link is None:
            self.app.copy_to_clipboard(f"{self.lab.entry.name} {self.sae_id} feature {self.feature}")
            self.notify(f"copied the feature's id ({self.lab.entry.no_page_reason(self.sae_id)})", timeout=4)
        else:
            self.app.copy_to_clipboard(link)
            self.notify(f"copied {link}", timeout=4, markup=False)

    def action_label(self) -> None:
        if self.ws is None:
            self.notify("labels are kept in a session; open the card from the explorer", severity="warning")
            return
        title = Text("Label of ")
        title.append_text(feature_title(self.sae_id, self.feature))

        def done(text: str | None) -> None:
            if text is None or self.ws is None:
                return
            kept = self.ws.set_label(self.sae_id, self.feature, text)
            self.changed = True
            self.notify(f"label kept: {visible(kept)}" if kept else "label removed", timeout=3, markup=False)
            if self.card is not None:
                self.show_card()
            else:
                self.query_one("#card-title", Static).update(self._title())

        self.app.push_screen(LabelScreen(title, self._label()), done)
