"""The main screen: the layout of the explorer's panes, and its keys.

The screen composes the panes (:mod:`lister_tui.tui.panes`) and the
:class:`~lister_tui.tui.explorer.controller.ExplorerController`. A key's action asks the
controller for the change (select, toggle, regenerate, …); the controller changes the
workspace and the state, runs the work in a worker, and posts
:class:`~lister_tui.tui.messages.ExplorerChanged`; the screen then hands each named pane
what :mod:`lister_tui.tui.explorer.views` computes from the new state. Every number shown
comes from the engine (:mod:`lister_tui.core`).

Long because it holds one small action per key of the explorer (each forwards to the
controller); the logic of each lives in the controller and the views.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, ProgressBar, Static, TabbedContent, TabPane

from lister_tui.core.sessions.workspace import AblationChoice
from lister_tui.safe_text import text as text_of
from lister_tui.tui.explorer import views
from lister_tui.tui.explorer.controller import ExplorerController
from lister_tui.tui.keymap import MAIN_KEYS, bindings
from lister_tui.tui.messages import AttributionReady, ExplorerChanged, GenerationProgress, TaskFailed
from lister_tui.tui.panes import FeaturesPane, InspectorPane, TokensPane
from lister_tui.tui.screens.error import ErrorScreen
from lister_tui.tui.screens.generate import GenerateRequest, GenerateScreen
from lister_tui.tui.widgets.ablation_panel import AblationPanel, ChoiceTable
from lister_tui.tui.widgets.feature_table import query_sae, with_sae
from lister_tui.tui.widgets.message_line import MessageLine
from lister_tui.tui.widgets.sample_table import SampleTable
from lister_tui.tui.widgets.token_view import TokenView


class MainScreen(Screen):
    BINDINGS = bindings(MAIN_KEYS)

    DEFAULT_CSS = """
    MainScreen #banner { height: auto; max-height: 4; background: $warning; color: $background; text-style: bold; padding: 0 1; display: none; }
    MainScreen #banner.-shown { display: block; }
    MainScreen #statusbar { height: auto; max-height: 2; background: $panel; }
    MainScreen #status { width: 1fr; height: auto; max-height: 2; padding: 0 1; }
    MainScreen #progress { width: 30; height: 1; display: none; }
    MainScreen #progress.-busy { display: block; }
    MainScreen #body { height: 1fr; }
    MainScreen #samples { width: 30; scrollbar-size-vertical: 1; border-top: solid $primary-darken-2; border-title-color: $text; }
    MainScreen TokensPane { border-top: solid $primary-darken-2; border-title-color: $text; }
    MainScreen.-wide #samples { width: 36; }
    MainScreen #main { width: 1fr; }
    MainScreen #tabs { height: 10; }
    MainScreen.-tall #tabs { height: 45%; }
    MainScreen TabPane { padding: 0; }
    MainScreen Footer.-compact FooterLabel { margin: 0 1 0 0; }
    """

    def __init__(self, initial: GenerateRequest | None = None) -> None:
        super().__init__()
        self.controller = ExplorerController(initial)
        self.state = self.controller.state

    # --- layout ---------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield self.controller
        yield Static("", id="banner", markup=False)
        with Horizontal(id="statusbar"):
            yield Static("", id="status", markup=False)
            yield ProgressBar(id="progress", show_eta=False, show_percentage=True)
        with Horizontal(id="body"):
            yield SampleTable(id="samples")
            with Vertical(id="main"):
                yield TokensPane(id="token-row")
                yield InspectorPane(id="inspector")
                with TabbedContent(id="tabs", initial="features"):
                    with TabPane("Features", id="features"):
                        yield FeaturesPane(id="features-pane")
                    with TabPane("Interventions", id="ablation"):
                        yield AblationPanel(id="ablation-panel")
        yield MessageLine(id="message-line")
        yield Footer(compact=True)  # compact, so that the focus keys fit 80 columns

    @property
    def tokens(self) -> TokensPane:
        return self.query_one(TokensPane)

    @property
    def features(self) -> FeaturesPane:
        return self.query_one(FeaturesPane)

    @property
    def message_line(self) -> MessageLine | None:
        """Where the app shows this screen's notifications (see ``ListerApp.notify``); None
        before the screen is composed (the app then shows a toast)."""
        lines = self.query(MessageLine)
        return lines.first() if lines else None

    @property
    def ws(self):
        return self.app.workspace

    def on_mount(self) -> None:
        self.tokens.base.focus()
        self._apply_size()
        self.refresh_banner()
        self.controller.start()

    def on_resize(self) -> None:
        self._apply_size()

    def _apply_size(self) -> None:
        self.set_class(self.size.width >= 140, "-wide")
        self.set_class(self.size.height >= 40, "-tall")

    # --- rendering: each pane gets what the views compute ------------------------

    def on_explorer_changed(self, message: ExplorerChanged) -> None:
        parts = message.parts
        if "status" in parts:
            self.refresh_status()
        if "samples" in parts:
            self.query_one("#samples", SampleTable).show(self.ws.samples, self.state.current)
            self.refresh_sample_title()
        if "runs" in parts:
            table = self.query_one("#samples", SampleTable)
            for key, st in self.ws.samples.items():
                if st.runs:
                    table.update_runs(key, len(st.runs))
        if "tokens" in parts:
            self.refresh_tokens()
        elif "stream" in parts:
            self.refresh_stream()
        elif "metric" in parts:
            self.refresh_metric()
        if "features" in parts:
            self.refresh_features()
        if "ablation" in parts:
            self.refresh_ablation()

    def refresh_sample_title(self) -> None:
        removed = len(self.ws.removed)
        self.query_one("#samples", SampleTable).border_title = f"samples {len(self.ws.samples)}" + (f" · {removed} removed (u)" if removed else "")

    def refresh_banner(self) -> None:
        banner = self.query_one("#banner", Static)
        text = getattr(self.app, "banner", None)
        banner.update(text_of(text or "", keep_newlines=True))  # a banner names the session's model
        banner.set_class(bool(text), "-shown")

    def refresh_status(self) -> None:
        session = self.app.session_status() if hasattr(self.app, "session_status") else ""
        text = views.status_text(self.app.lab, self.ws, self.state, self.controller.preset, session)
        self.query_one("#status", Static).update(text_of(text))  # model, session and topic names
        self.query_one("#progress", ProgressBar).set_class(bool(self.state.busy), "-busy")

    def refresh_tokens(self) -> None:
        key = self.state.current
        compare_shown = False
        if key is None:
            self.tokens.base.placeholder = "Sampling the first batch…" if self.state.busy else "No sample yet: press g to generate."
            self.tokens.show(None, None, False)
        else:
            st = self.ws.state(key)
            sample = views.sample_doc(st, self.controller.strings)
            if self.state.compare and (views.shown_run(st, self.state) is not None or self.state.streaming is not None):
                cached = self.controller.base_cache.get((key, self.state.from_attr, st.preset))
                base, ablated = views.run_docs(self.app.lab, st, self.state, self.controller.strings, cached)
                self.tokens.show(base or sample, ablated, True)
                compare_shown = True
            else:
                self.tokens.show(sample, None, False)
        # the title holds the sample key (its topic comes from the session): text, never markup
        self.tokens.border_title = text_of(views.tokens_title(self.ws, self.state, compare_shown))
        self.refresh_metric()

    def refresh_stream(self) -> None:
        if self.state.streaming is None or self.state.current is None or not self.state.compare:
            return
        view = self.tokens.ablated
        if view.doc is None or not view.doc.streaming or not self.tokens.has_class("-compare"):
            self.refresh_tokens()  # the first token: the base beside it too
        st = self.ws.state(self.state.current)
        self.tokens.stream(views.streaming_doc(self.app.lab, st, self.state.streaming, self.state.stream_prefix, self.controller.strings))

    def refresh_metric(self) -> None:
        inspector = self.query_one(InspectorPane)
        if self.state.current is None:
            inspector.show([], 0, 0, "", "")
            return
        view = self.tokens.focused_view()
        st = self.ws.state(self.state.current)
        pos, doc = view.cursor, view.doc
        label = repr(doc.strings[pos]) if doc is not None and pos < len(doc.strings) else ""
        start = 0 if view.show_prompt else st.sample.prompt_len - 1
        rows = self.controller.rows.of_sample(st, self.state.current)
        inspector.show(views.metric_curves(st, self.state), start, pos, label, views.cursor_info(st, doc, pos, rows))

    def refresh_features(self) -> None:
        self.features.show(views.features_view(self.app.lab, self.ws, self.state, self.controller.rows, self.features.query_text, self.controller.shown_densities()))

    def refresh_ablation(self) -> None:
        panel = self.query_one("#ablation-panel", AblationPanel)
        n = len(self.ws.state(self.state.current).choices) if self.state.current else 0
        # the active count shows on the tab itself, so the features tab says it too
        self.query_one("#tabs", TabbedContent).get_tab("ablation").label = f"Interventions {n}" if n else "Interventions"
        if self.state.current is None:
            panel.show([], [], None, "no sample")
            return
        st = self.ws.state(self.state.current)
        panel.show(st.choices, self.controller.strings(st.sample.tokens), views.shown_run(st, self.state), views.ablation_status(self.state, st), self.ws.labels)

    # --- what the panes and workers report ------------------------------------------

    @on(DataTable.RowHighlighted, "#samples")
    def _sample_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value in self.ws.samples:
            self.controller.select(event.row_key.value)

    def on_token_view_cursor_moved(self, event: TokenView.CursorMoved) -> None:
        if event.view is self.tokens.focused_view():
            self.refresh_metric()

    def on_features_pane_query_changed(self, event: FeaturesPane.QueryChanged) -> None:
        self.controller.set_query_sae(query_sae(event.query))
        self.refresh_features()

    def on_generation_progress(self, message: GenerationProgress) -> None:
        self.query_one("#progress", ProgressBar).update(total=message.total, progress=message.done)

    def on_attribution_ready(self, message: AttributionReady) -> None:
        if message.batch and self.state.pending_matrix:
            self.state.pending_matrix = False
            self.action_matrix()
        elif not message.batch:
            self.query_one("#tabs", TabbedContent).active = "features"

    def on_task_failed(self, message: TaskFailed) -> None:
        if message.expected:
            self.notify(message.error, title=f"{message.task} failed", severity="error", timeout=10)
        else:
            self.app.push_screen(ErrorScreen(f"{message.task} failed", message.error))

    # --- actions: samples and attribution ----------------------------------------------

    def action_generate(self) -> None:
        if self.controller.needs_model("generate"):
            return

        def done(request: GenerateRequest | None) -> None:
            if request is not None:
                self.controller.start_generation(request)

        self.app.push_screen(GenerateScreen(self.controller.last_request), done)

    def action_attribute(self) -> None:
        self.controller.attribute("grad")

    def action_attribute_ig(self) -> None:
        self.controller.attribute("ig")

    def action_attribute_batch(self) -> None:
        self.controller.attribute_batch()

    # --- actions: the features table -----------------------------------------------------

    def action_density(self) -> None:
        self.controller.cycle_density()

    def action_ranking(self) -> None:
        self.controller.toggle_ranking()

    def action_next_sae(self) -> None:
        sae = self.controller.next_sae()
        box = self.features.query_one("#filter", Input)
        box.value = with_sae(box.value, sae)  # Input.Changed redraws the table from the one query

    def action_sort(self) -> None:
        self.controller.next_sort()

    def action_filter(self) -> None:
        self.query_one("#tabs", TabbedContent).active = "features"
        self.features.focus_filter()

    def action_tab(self, name: str) -> None:
        self.query_one("#tabs", TabbedContent).active = name

    # --- actions: ablation ----------------------------------------------------------------

    def _highlighted_choice(self) -> AblationChoice | None:
        """The choice under the cursor: from the ablation list when it has focus, else the features table."""
        if isinstance(self.focused, ChoiceTable):
            return self.focused.highlighted()
        row = self.features.highlighted()
        return None if row is None else views.choice_for_row(row)

    def action_toggle_feature(self) -> None:
        if self.controller.no_sample():
            return
        choice = self._highlighted_choice()
        if choice is None:
            self.notify("no feature highlighted: attribute (a), then pick a row in the Features tab", severity="warning")
            return
        self.controller.toggle_feature(choice)

    def action_toggle_mode(self) -> None:
        if self.state.current is None:
            return
        choice = self._highlighted_choice()
        if choice is not None:
            self.controller.toggle_mode(choice)

    def action_cycle_kind(self) -> None:
        if self.state.current is None:
            return
        choice = self._highlighted_choice()
        if choice is not None:
            self.controller.cycle_kind(choice)

    def action_toggle_relative(self) -> None:
        if self.state.current is None:
            return
        choice = self._highlighted_choice()
        if choice is not None:
            self.controller.toggle_relative(choice)

    def action_step_value(self, direction: int) -> None:
        if self.state.current is None:
            return
        choice = self._highlighted_choice()
        if choice is not None:
            self.controller.step_value(choice, direction)

    def action_top_k(self) -> None:
        if not self.controller.no_sample():
            self.controller.add_top_k()

    def action_clear_ablation(self) -> None:
        if self.message_line is not None:
            self.message_line.clear()  # c clears: the ablation, its deltas, the status and the message
        if self.state.current is not None:
            self.controller.clear_ablation()

    def action_regen_from(self) -> None:
        self.controller.toggle_regen_from()

    def action_live(self) -> None:
        self.controller.toggle_live()

    def action_cancel(self) -> None:
        if isinstance(self.focused, Input):
            self.features.table.focus()
            return
        self.controller.cancel()

    def action_regenerate(self) -> None:
        self.controller.regenerate()

    def action_remove_sample(self) -> None:
        from lister_tui.tui.screens.confirm import ConfirmScreen

        key = self.state.current
        if key is None:
            self.notify("no sample selected", severity="warning")
            return
        st = self.ws.state(key)
        what = f"{len(st.runs)} ablation run(s)" + (", its attribution" if st.attribution else "") + (", its note" if st.note else "")

        def done(yes: bool | None) -> None:
            if yes:
                self.controller.remove_sample(key)

        self.app.push_screen(ConfirmScreen(f"Remove sample {key} with {what}?\nIt stays in the session: u brings it back."), done)

    def action_undo_remove(self) -> None:
        self.controller.undo_remove()

    # --- actions: notes ---------------------------------------------------------------

    def action_note(self) -> None:
        from lister_tui.tui.screens.sessions import NoteScreen

        key = self.state.current
        if key is None:
            self.notify("no sample selected", severity="warning")
            return

        def done(text: str | None) -> None:
            if text is not None:
                self.controller.set_note(key, text)

        self.app.push_screen(NoteScreen(f"Note on {key}", self.ws.state(key).note), done)

    def action_session_notes(self) -> None:
        from lister_tui.tui.screens.sessions import NoteScreen

        def done(text: str | None) -> None:
            if text is not None:
                self.controller.set_session_notes(text)

        self.app.push_screen(NoteScreen("Session notes", self.ws.notes), done)

    # --- actions: views ---------------------------------------------------------------

    def action_compare(self) -> None:
        self.controller.set_compare(not self.state.compare)

    def action_metric_colour(self) -> None:
        self.tokens.toggle("metric_colours")

    def action_show_prompt(self) -> None:
        self.tokens.toggle("show_prompt")
        self.refresh_metric()

    def action_sidebar(self) -> None:
        table = self.query_one("#samples", SampleTable)
        table.display = not table.display

    def action_focus_tokens(self) -> None:
        self.tokens.base.focus()

    def action_focus_samples(self) -> None:
        table = self.query_one("#samples", SampleTable)
        table.display = True
        table.focus()

    def action_focus_features(self) -> None:
        self.query_one("#tabs", TabbedContent).active = "features"
        self.features.table.focus()

    def action_copy_link(self) -> None:
        row = self.features.highlighted()
        if row is None:
            self.notify("no feature highlighted", severity="warning")
            return
        entry = self.app.lab.entry
        link = entry.feature_link(row.sae_id, row.feature)
        if link is None:
            self.app.copy_to_clipboard(f"{entry.name} {row.sae_id} feature {row.feature}")
            self.notify(f"{entry.no_page_reason(row.sae_id)}; copied the feature id", timeout=4)
        else:
            self.app.copy_to_clipboard(link)
            self.notify(f"copied {link}", timeout=4)

    @on(DataTable.RowSelected, "#feature-table")
    @on(DataTable.RowSelected, "#choices")
    def action_feature_card(self, event: DataTable.RowSelected | None = None) -> None:
        self.controller.open_card(self._highlighted_choice())

    def action_copy_text(self) -> None:
        view = self.tokens.focused_view()
        if view.doc is None:
            return
        text = self.app.lab.tokenizer.decode(list(view.doc.ids[view.doc.prompt_len :]))
        self.app.copy_to_clipboard("-" + text)
        self.notify(f"copied {len(text)} characters of list text", timeout=3)

    def action_matrix(self) -> None:
        from lister_tui.tui.screens.matrix import MatrixScreen

        if self.ws.batch is None:
            self.state.pending_matrix = True
            self.notify("attributing the batch first…", timeout=3)
            self.controller.attribute_batch()
            return

        def opened(key: str | None) -> None:
            self.controller.changed("features", "ablation", "tokens")  # labels or toggles made from a card
            if key is not None and key in self.ws.samples:
                self.query_one("#samples", SampleTable).show(self.ws.samples, key)
                self.controller.select(key)

        self.app.push_screen(MatrixScreen(self.ws.batch, self.ws.samples, self.controller.sae_ids), opened)

    def action_experiment(self) -> None:
        """X: the current sample's interventions over a scope of lists (a dialog: every list, one template or
        this list) × N seeds (4 by default)."""
        from lister_tui.tui.screens.experiment_scope import ExperimentScopeScreen

        if self.controller.no_sample():
            return
        if getattr(self.app, "lab", None) is None:
            self.notify("this session is open without its model (read-only): the batch experiment needs it", severity="warning")
            return
        st = self.ws.state(self.state.current)
        if not st.choices:
            self.notify("choose features first (space; k for the kind), then X measures them over every list", severity="warning")
            return
        waiting = [c for c in st.choices if c.waiting_for_peak]
        if waiting:
            self.controller.find_peaks(waiting[0].sae_id)
            self.notify(f"{waiting[0].sae_id} f{waiting[0].feature}'s relative clamp waits for its maximum activation; X again once the row shows it", severity="warning", markup=False)
            return
        self.app.push_screen(ExperimentScopeScreen(self.ws.samples, self.state.current), self._run_experiment)

    def _run_experiment(self, scope) -> None:
        from lister_tui.core.engine.interventions import InterventionSet
        from lister_tui.core.engine.prompts import prompt_ids
        from lister_tui.core.sessions.workspace import to_interventions
        from lister_tui.tui.screens.experiment import ExperimentScreen

        if scope is None or self.state.current is None:
            return
        st = self.ws.state(self.state.current)
        keys = scope.keys(self.ws.samples, self.state.current)
        iset: InterventionSet = to_interventions(st.choices, name=f"{len(st.choices)} feature(s) from {self.state.current}")
        shortest = min(len(prompt_ids(self.app.lab, self.ws.samples[k].sample.spec.template, self.ws.samples[k].sample.spec.topic)) for k in keys)
        far = [c for c in st.choices if c.mode == "position" and c.pos >= shortest]
        if far:
            c = far[0]
            self.notify(
                f"{c.sae_id} f{c.feature} is at position {c.pos}, past the shortest prompt ({shortest} tokens): a position in "
                "one list's text means nothing in another's. Switch it to every position (e) for the batch experiment",
                severity="warning", timeout=8, markup=False,
            )  # fmt: skip
            return
        exclude = set()
        for k in keys:
            for sae_id, attr in (self.ws.samples[k].attribution or {}).items():
                exclude |= {(sae_id, p.feature) for pairs in attr.top for p in pairs[:10]}
        self.app.push_screen(ExperimentScreen(self.app.lab, self.ws, iset, exclude or None, n_seeds=scope.n_seeds, keys=keys, scope=scope.describe()))

    def action_batch(self) -> None:
        from lister_tui.tui.screens.batch import BatchScreen

        session = self.app.session  # its manifest's source says whether a sweep made this session
        self.app.push_screen(BatchScreen(self.ws, session.extra if session is not None else None))
