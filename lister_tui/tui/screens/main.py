"""The main screen: sample browser, token view, metric strip, features and ablation.

Every number shown comes from the engine (lister_tui.core); the screen only asks for
it in workers, keeps it in the app's Workspace, and formats it.
"""

from __future__ import annotations

import time
from dataclasses import replace

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, ProgressBar, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState, get_current_worker

from lister_tui.core.engine.ablation import Ablation
from lister_tui.core.engine.generation import ListSample, metric_curve, sample_lists, with_metric
from lister_tui.core.engine.listing import parse_structure
from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.workspace import AblationChoice, AblationRun, to_ablation
from lister_tui.core.study.experiment import (
    DEFAULT_IG_STEPS,
    attributable,
    attribute_lists,
    metric_under_ablation,
    regenerate,
    top_k_ablation,
)
from lister_tui.core.study.features import dataset_ranking, pairs_table
from lister_tui.core.study.settings import SAMPLING_PRESETS
from lister_tui.tui.keymap import MAIN_KEYS, bindings
from lister_tui.tui.messages import (
    AttributionReady,
    CurveReady,
    GenerationProgress,
    RegenerationCancelled,
    RegenerationFinished,
    RegenerationStarted,
    RegenerationStep,
    SamplesGenerated,
    TaskFailed,
)
from lister_tui.tui.screens.error import ErrorScreen
from lister_tui.tui.screens.generate import GenerateRequest, GenerateScreen
from lister_tui.tui.widgets.ablation_panel import AblationPanel, ChoiceTable, delta_summary
from lister_tui.tui.widgets.feature_table import (
    SORT_KEYS,
    FeatureRow,
    FeatureTable,
    filter_rows,
    rows_from_pairs,
    rows_from_ranking,
    sort_rows,
)
from lister_tui.tui.widgets.metric_strip import Curve, MetricStrip
from lister_tui.tui.widgets.sample_table import SampleTable
from lister_tui.tui.widgets.token_view import TokenDoc, TokenView

STREAM_INTERVAL_S = 0.1  # redraw a streaming regeneration at most 10 times a second: each redraw takes the GIL from the sampler
TOP_K = 5  # the post's k for the study's top-k ablation and the dataset ranking


class MainScreen(Screen):
    BINDINGS = bindings(MAIN_KEYS)

    DEFAULT_CSS = """
    MainScreen #banner { height: auto; background: $warning; color: $background; text-style: bold; padding: 0 1; display: none; }
    MainScreen #banner.-shown { display: block; }
    MainScreen #statusbar { height: 1; background: $panel; }
    MainScreen #status { width: 1fr; height: 1; padding: 0 1; }
    MainScreen #progress { width: 30; height: 1; display: none; }
    MainScreen #progress.-busy { display: block; }
    MainScreen #body { height: 1fr; }
    MainScreen #samples { width: 30; scrollbar-size-vertical: 1; }
    MainScreen.-wide #samples { width: 36; }
    MainScreen #main { width: 1fr; }
    MainScreen #token-row { height: 1fr; min-height: 4; }
    MainScreen #ablated-view { display: none; border-left: vkey $accent; }
    MainScreen.-compare #ablated-view { display: block; }
    MainScreen #cursor-info { height: 2; padding: 0 1; background: $panel; }
    MainScreen #tabs { height: 10; }
    MainScreen.-tall #tabs { height: 45%; }
    MainScreen TabPane { padding: 0; }
    MainScreen #feature-bar { height: 1; }
    MainScreen #feature-mode { width: auto; max-width: 60%; height: 1; padding: 0 1 0 0; }
    MainScreen #filter { width: 1fr; }
    """

    def __init__(self, initial: GenerateRequest | None = None) -> None:
        super().__init__()
        self.initial = initial
        self.last_request = initial
        self.current: str | None = None
        self.compare = False
        self.live = False
        self.from_attr = True
        self.dataset_mode = False
        self.sae_filter = 0  # 0: every SAE, i: the i-th SAE of the entry
        self.sort_index = 0
        self.run_id = 0
        self.streaming: tuple[int, ...] | None = None
        self.regen_state = ""
        self.busy = ""
        self.latency: dict[int, dict[str, float]] = {}
        self.pending_matrix = False
        self._stream_prefix: int | None = None
        self._strings: dict[int, str] = {}
        self._rows: dict[tuple, list[FeatureRow]] = {}
        self._base_cache: dict[tuple, tuple[ListSample, tuple[float, ...]]] = {}

    # --- shortcuts ------------------------------------------------------------

    @property
    def lab(self):
        return self.app.lab

    @property
    def ws(self):
        return self.app.workspace

    @property
    def sae_ids(self) -> list[str]:
        return [s.id for s in self.lab.entry.sites]

    def strings(self, ids) -> list[str]:
        missing = [i for i in dict.fromkeys(ids) if i not in self._strings]
        if missing:
            for i, s in zip(missing, self.lab.to_str_tokens(missing)):
                self._strings[i] = s
        return [self._strings[i] for i in ids]

    def token_str(self, token_id: int) -> str:
        return self.strings([token_id])[0]

    # --- layout ---------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("", id="banner", markup=False)
        with Horizontal(id="statusbar"):
            yield Static("", id="status", markup=False)
            yield ProgressBar(id="progress", show_eta=False, show_percentage=True)
        with Horizontal(id="body"):
            yield SampleTable(id="samples")
            with Vertical(id="main"):
                with Horizontal(id="token-row"):
                    yield TokenView(id="base-view")
                    yield TokenView(id="ablated-view")
                yield MetricStrip(id="metric")
                yield Static("", id="cursor-info", markup=False)
                with TabbedContent(id="tabs", initial="features"):
                    with TabPane("Features", id="features"):
                        with Horizontal(id="feature-bar"):
                            yield Static("", id="feature-mode")
                            yield Input(placeholder="/ filter: res_0 f12 pos:40", id="filter", compact=True)
                        yield FeatureTable(id="feature-table")
                    with TabPane("Ablation", id="ablation"):
                        yield AblationPanel(id="ablation-panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#base-view", TokenView).focus()
        self._apply_size()
        self.refresh_banner()
        if self.current is None and self.ws.samples:
            # an opened session: show its samples, the first one selected
            first = next(iter(self.ws.samples))
            self.query_one("#samples", SampleTable).show(self.ws.samples, first)
            self.select(first)
        self.refresh_all()
        if self.initial is not None and self.app.can_compute:
            self.start_generation(self.initial)

    def refresh_banner(self) -> None:
        banner = self.query_one("#banner", Static)
        text = getattr(self.app, "banner", None)
        banner.update(text or "")
        banner.set_class(bool(text), "-shown")

    def _needs_model(self, what: str) -> bool:
        """True (and a notification) when the model is not here to ``what``."""
        if self.app.can_compute:
            return False
        self.notify(f"cannot {what}: this session is read-only, its model is not available here", severity="warning")
        return True

    def on_resize(self) -> None:
        self._apply_size()

    def _apply_size(self) -> None:
        self.set_class(self.size.width >= 140, "-wide")
        self.set_class(self.size.height >= 40, "-tall")

    # --- refresh --------------------------------------------------------------

    def refresh_all(self) -> None:
        self.refresh_status()
        self.refresh_tokens()
        self.refresh_features()
        self.refresh_ablation()

    def refresh_status(self) -> None:
        n = len(self.ws.samples)
        preset = self.ws.state(self.current).preset if self.current else (self.last_request.preset if self.last_request else "code")
        parts = [self.lab.entry.name, f"{n} samples", f"preset {preset}", "regen from " + ("attr pos" if self.from_attr else "prompt")]
        if self.live:
            parts.append("live")
        if self.busy:
            parts.append(self.busy)
        session = self.app.session_status() if hasattr(self.app, "session_status") else ""
        if session:
            parts.append(session)
        if self.regen_state:
            parts.append(self.regen_state)
        self.query_one("#status", Static).update(" · ".join(parts))

    def _doc_for_sample(self, key: str) -> TokenDoc:
        st = self.ws.state(key)
        s = st.sample
        m = s.metrics
        metric = "" if m.metric_at_attribution is None else f" · metric@attr {m.metric_at_attribution:+.2f}"
        title = (
            f"{s.spec.template}/{s.spec.topic}/#{s.spec.sample} · seed {s.spec.seed} · {m.n_items} items · "
            f"{m.n_tokens} tok · {'end' if m.reached_end else 'cap'}{metric}"
        )
        return TokenDoc(title, s.tokens, self.strings(s.tokens), s.prompt_len, s.structure, st.curve, *self._marks(key))

    def _marks(self, key: str) -> tuple[frozenset[int], bool]:
        choices = self.ws.state(key).choices
        return frozenset(c.pos for c in choices if c.mode == "position"), any(c.mode == "every" for c in choices)

    def _run_docs(self, key: str) -> tuple[TokenDoc | None, TokenDoc | None]:
        st = self.ws.state(key)
        run = st.runs[-1] if st.runs else None
        marks, every = self._marks(key)
        if self.streaming is not None:
            toks = self.streaming
            structure = parse_structure(toks, self.lab.ids, st.sample.prompt_len - 1)
            base_doc = None
            cached = self._base_cache.get((key, self.from_attr, st.preset))
            if cached is not None:
                b = cached[0]
                base_doc = TokenDoc(f"base · regenerated from pos {b.prefix_len}, seed {b.spec.seed}", b.tokens, self.strings(b.tokens), b.prompt_len, b.structure, cached[1], marks, every, b.prefix_len)
            ablated = TokenDoc(
                f"ablated · {len(st.choices)} features", toks, self.strings(toks), st.sample.prompt_len, structure, None, marks, every,
                self._stream_prefix, streaming=True,
            )
            return base_doc, ablated
        if run is None:
            return None, None
        b, a = run.base, run.ablated
        base_doc = TokenDoc(
            f"base · regenerated from pos {b.prefix_len}, seed {b.spec.seed}", b.tokens, self.strings(b.tokens), b.prompt_len,
            b.structure, run.base_curve, frozenset(c.pos for c in run.choices if c.mode == "position"), False, b.prefix_len, a.tokens,
        )
        ablated_doc = TokenDoc(
            f"ablated · {len(run.choices)} features" + (" (stale: toggles changed)" if tuple(st.choices) != run.choices else ""),
            a.tokens, self.strings(a.tokens), a.prompt_len, a.structure, run.ablated_curve,
            frozenset(c.pos for c in run.choices if c.mode == "position"), any(c.mode == "every" for c in run.choices),
            a.prefix_len, b.tokens, info=delta_summary(run),
        )
        return base_doc, ablated_doc

    def refresh_tokens(self) -> None:
        base_view = self.query_one("#base-view", TokenView)
        ablated_view = self.query_one("#ablated-view", TokenView)
        if self.current is None:
            base_view.set_doc(None)
            ablated_view.set_doc(None)
            self.refresh_metric()
            return
        if self.compare:
            base_doc, ablated_doc = self._run_docs(self.current)
            base_view.set_doc(base_doc or self._doc_for_sample(self.current))
            ablated_view.placeholder = "No regeneration yet: toggle features (space), then r."
            ablated_view.set_doc(ablated_doc)
            if ablated_doc is not None and ablated_view.doc is not None:
                # the finished regeneration opens where the base's cursor is, not where streaming left it
                ablated_view.centre_on(base_view.cursor)
        else:
            base_view.set_doc(self._doc_for_sample(self.current))
        self.refresh_metric()

    def _focused_view(self) -> TokenView:
        focused = self.focused
        if isinstance(focused, TokenView):
            return focused
        return self.query_one("#base-view", TokenView)

    def refresh_metric(self) -> None:
        strip = self.query_one("#metric", MetricStrip)
        info = self.query_one("#cursor-info", Static)
        if self.current is None:
            strip.show([], 0, 0)
            info.update("")
            return
        view = self._focused_view()
        st = self.ws.state(self.current)
        run = st.runs[-1] if st.runs else None
        if self.compare and run is not None and self.streaming is None:
            curves = [Curve("base", run.base_curve), Curve("abl", run.ablated_curve)]
        else:
            curves = [Curve("metr", st.curve or ())]
        pos = view.cursor
        doc = view.doc
        label = repr(doc.strings[pos]) if doc is not None and pos < len(doc.strings) else ""
        start = 0 if view.show_prompt else st.sample.prompt_len - 1
        strip.show(curves, start, pos, label)
        info.update(self._cursor_info(view))

    def _cursor_info(self, view: TokenView) -> str:
        doc = view.doc
        if doc is None or not doc.ids:
            return ""
        pos = view.cursor
        tid = doc.ids[pos]
        s = doc.strings[pos]
        line1 = f"pos {pos} · id {tid} · {s!r}"
        structure = doc.structure
        if structure is not None:
            if structure.attribution_pos == pos:
                line1 += " · attr pos"
            if pos in structure.filler_positions:
                line1 += " · filler blank"
            if structure.end_pos == pos:
                line1 += " · end token"
        st = self.ws.state(self.current)
        if st.attribution is None:
            line2 = "features: not attributed yet (a)"
        elif pos >= len(st.sample.tokens) or doc.ids[: pos + 1] != st.sample.tokens[: pos + 1]:
            line2 = "features: not in the attributed sample"
        else:
            here = sorted((r for r in self._sample_rows(self.current) if r.pos == pos), key=lambda r: -r.attribution)[:4]
            line2 = "top here: " + (" · ".join(f"{r.sae_id} f{r.feature} {r.attribution:+.2f} (a {r.activation:.1f})" for r in here) or "no feature among the top pairs")
        return f"{line1}\n{line2}"

    # --- features -------------------------------------------------------------

    def _sample_rows(self, key: str) -> list[FeatureRow]:
        st = self.ws.state(key)
        if st.attribution is None:
            return []
        cache_key = ("sample", key, id(st.attribution))
        if cache_key not in self._rows:
            rows: list[FeatureRow] = []
            for sae in self.sae_ids:
                if sae in st.attribution:
                    rows += rows_from_pairs(pairs_table(st.attribution[sae], [st.sample], self.token_str))
            self._rows[cache_key] = rows
        return self._rows[cache_key]

    def _dataset_rows(self) -> list[FeatureRow]:
        batch = self.ws.batch
        if batch is None:
            return []
        cache_key = ("dataset", id(batch))
        if cache_key not in self._rows:
            samples = [self.ws.state(k).sample for k in batch.keys]
            rows: list[FeatureRow] = []
            for sae in self.sae_ids:
                if sae in batch.by_sae:
                    rows += rows_from_ranking(dataset_ranking(batch.by_sae[sae], samples, self.token_str, k=TOP_K))
            self._rows[cache_key] = rows
        return self._rows[cache_key]

    def refresh_features(self) -> None:
        table = self.query_one("#feature-table", FeatureTable)
        mode = self.query_one("#feature-mode", Static)
        sae = "all SAEs" if self.sae_filter == 0 else self.sae_ids[self.sae_filter - 1]
        sort = SORT_KEYS[self.sort_index]
        if self.dataset_mode:
            rows = self._dataset_rows()
            n = len(self.ws.batch.keys) if self.ws.batch else 0
            what = f"dataset ranking over {n} samples (top-{TOP_K} each)" if self.ws.batch else "dataset: attribute the batch (A)"
        else:
            rows = self._sample_rows(self.current) if self.current else []
            what = "this sample's top pairs" if rows else "not attributed (a, or I for integrated gradients)"
            attribution = self.ws.state(self.current).attribution if self.current else None
            if rows and attribution and any(a.method == "ig" for a in attribution.values()):
                what = "this sample's top pairs (IG)"
        if self.sae_filter:
            rows = [r for r in rows if r.sae_id == sae]
        rows = sort_rows(filter_rows(rows, self.query_one("#filter", Input).value), sort)
        mode.update(f"[b]{what}[/b] · {sae} (s) · by {sort} (o)")
        modes = {}
        if self.current is not None:
            for c in self.ws.state(self.current).choices:
                modes[f"{c.sae_id}:{c.feature}:{c.pos}"] = "∀" if c.mode == "every" else "@"
        links = self.lab.entry.feature_url is not None
        table.show(rows, modes, self.dataset_mode, links)

    def refresh_ablation(self) -> None:
        panel = self.query_one("#ablation-panel", AblationPanel)
        if self.current is None:
            panel.show([], [], None, "no sample")
            return
        st = self.ws.state(self.current)
        run = st.runs[-1] if st.runs else None
        status = (
            f"{len(st.choices)} active · regen from {'attribution pos' if self.from_attr else 'prompt'} (R) · "
            f"live {'on' if self.live else 'off'} (l) · space removes, e mode, c clears"
        )
        if self.regen_state:
            status = f"{self.regen_state} · {status}"
        panel.show(st.choices, self.strings(st.sample.tokens), run, status)

    # --- selection ------------------------------------------------------------

    def select(self, key: str) -> None:
        if key == self.current:
            return
        self.current = key
        self.streaming = None
        self.regen_state = ""
        st = self.ws.state(key)
        self.set_compare(bool(st.runs))
        if st.curve is None and self.app.can_compute:
            self.curve_worker(key, st.sample.tokens)
        self.refresh_all()

    @on(DataTable.RowHighlighted, "#samples")
    def _sample_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value in self.ws.samples:
            self.select(event.row_key.value)

    @on(TokenView.CursorMoved)
    def _cursor_moved(self, event: TokenView.CursorMoved) -> None:
        if event.pos != event.view.cursor:
            return  # stale: the cursor moved again since (syncing on it would ping-pong between views)
        other_id = "#ablated-view" if event.view.id == "base-view" else "#base-view"
        other = self.query_one(other_id, TokenView)
        if self.compare and other.doc is not None and event.pos < len(other.doc.ids):
            other.cursor = event.pos
        if event.view is self._focused_view():
            self.refresh_metric()

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        self.refresh_features()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        self.query_one("#feature-table").focus()

    def set_compare(self, on_: bool) -> None:
        self.compare = on_
        self.set_class(on_, "-compare")

    # --- actions: samples -----------------------------------------------------

    def action_generate(self) -> None:
        if self._needs_model("generate"):
            return

        def done(request: GenerateRequest | None) -> None:
            if request is not None:
                self.start_generation(request)

        self.app.push_screen(GenerateScreen(self.last_request), done)

    def start_generation(self, request: GenerateRequest) -> None:
        try:
            specs = request.specs()
        except ListerError as exc:
            self.notify(str(exc), title="Cannot generate", severity="error")
            return
        self.last_request = request
        self.busy = f"generating {len(specs)} samples"
        bar = self.query_one("#progress", ProgressBar)
        bar.update(total=100, progress=0)
        bar.add_class("-busy")
        self.refresh_status()
        self.generate_worker(specs, request.preset)

    @work(thread=True, exclusive=True, exit_on_error=False, group="generate", description="Generating samples")
    def generate_worker(self, specs, preset: str) -> None:
        worker = get_current_worker()
        settings = SAMPLING_PRESETS[preset]
        stops = set(self.lab.ids.stops)
        total = float(len(specs) * settings.max_new_tokens)

        def on_step(steps: int, tokens: list[list[int]]) -> bool:
            done = sum(settings.max_new_tokens if t and t[-1] in stops else len(t) for t in tokens)
            self.post_message(GenerationProgress(float(done), total))
            return worker.is_cancelled

        try:
            samples = sample_lists(self.lab, specs, settings, on_step=on_step)
        except Exception as exc:  # shown to the user, never as a traceback
            self.post_message(TaskFailed.of("generate", exc))
            return
        if not worker.is_cancelled:
            self.post_message(SamplesGenerated(samples, preset))

    def on_generation_progress(self, message: GenerationProgress) -> None:
        self.query_one("#progress", ProgressBar).update(total=message.total, progress=message.done)

    def on_samples_generated(self, message: SamplesGenerated) -> None:
        keys = self.ws.add_samples(message.samples, message.preset)
        self._end_busy()
        self.notify(f"{len(keys)} samples generated ({message.preset})", timeout=3)
        table = self.query_one("#samples", SampleTable)
        target = keys[0] if keys else self.current
        self.current = None if target != self.current else self.current
        table.show(self.ws.samples, target)
        if target is not None:
            self.select(target)

    def _end_busy(self) -> None:
        self.busy = ""
        self.query_one("#progress", ProgressBar).remove_class("-busy")
        self.refresh_status()

    @work(thread=True, exclusive=True, exit_on_error=False, group="curve", description="Metric curve")
    def curve_worker(self, key: str, tokens: tuple[int, ...]) -> None:
        try:
            curve = metric_curve(self.lab, tokens)
        except Exception as exc:
            self.post_message(TaskFailed.of("metric", exc))
            return
        self.post_message(CurveReady(key, tuple(float(v) for v in curve.tolist())))

    def on_curve_ready(self, message: CurveReady) -> None:
        if message.key in self.ws.samples:
            self.ws.set_curve(message.key, message.curve)
            if message.key == self.current:
                self.refresh_tokens()

    # --- actions: attribution -------------------------------------------------

    def action_attribute_ig(self) -> None:
        self.action_attribute(method="ig")

    def action_attribute(self, method: str = "grad") -> None:
        if self._needs_model("attribute"):
            return
        if self.current is None:
            self.notify("no sample selected; generate some with g", severity="warning")
            return
        sample = self.ws.state(self.current).sample
        if sample.structure.attribution_pos is None:
            self.notify("this sample has no complete item, so no attribution position", severity="error")
            return
        self.busy = "attributing" if method == "grad" else f"attributing (integrated gradients, {DEFAULT_IG_STEPS} steps)"
        self.refresh_status()
        self.attribute_worker([self.current], [sample], False, method)

    def action_attribute_batch(self) -> None:
        if self._needs_model("attribute"):
            return
        keys = list(self.ws.samples)
        samples = [self.ws.state(k).sample for k in keys]
        keep = attributable(samples)
        if not keep:
            self.notify("no sample has a complete item to attribute; generate some with g", severity="error")
            return
        self.busy = f"attributing {len(keep)} samples"
        bar = self.query_one("#progress", ProgressBar)
        bar.update(total=len(self.sae_ids) * len(keep), progress=0)
        bar.add_class("-busy")
        self.refresh_status()
        self.attribute_worker([keys[i] for i in keep], [samples[i] for i in keep], True)

    @work(thread=True, exclusive=True, exit_on_error=False, group="attribute", description="Attributing")
    def attribute_worker(self, keys: list[str], samples: list[ListSample], batch: bool, method: str = "grad") -> None:
        done: dict[str, int] = {}

        def on_progress(sae: str, n_done: int, n: int) -> None:
            done[sae] = n_done
            self.post_message(GenerationProgress(float(sum(done.values())), float(n * len(self.sae_ids))))

        try:
            by_sae = attribute_lists(self.lab, samples, self.sae_ids, on_progress=on_progress, method=method)
        except Exception as exc:
            self.post_message(TaskFailed.of("attribute", exc))
            return
        self.post_message(AttributionReady(keys, by_sae, batch))

    def on_attribution_ready(self, message: AttributionReady) -> None:
        if message.batch:
            self.ws.set_batch_attribution(message.keys, message.by_sae)
        else:
            self.ws.set_attribution(message.keys[0], message.by_sae)
        self._end_busy()
        self.refresh_features()
        self.refresh_metric()
        if message.batch and self.pending_matrix:
            self.pending_matrix = False
            self.action_matrix()
        elif not message.batch:
            self.query_one("#tabs", TabbedContent).active = "features"
            how = next(iter(message.by_sae.values())).method_label if message.by_sae else ""
            self.notify(f"attributed {len(message.by_sae)} SAEs ({how})", timeout=2)

    # --- actions: features table ---------------------------------------------

    def action_ranking(self) -> None:
        self.dataset_mode = not self.dataset_mode
        if self.dataset_mode and self.ws.batch is None:
            self.notify("dataset ranking needs the batch attributed: press A", severity="warning")
        self.refresh_features()

    def action_next_sae(self) -> None:
        self.sae_filter = (self.sae_filter + 1) % (len(self.sae_ids) + 1)
        self.refresh_features()

    def action_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(SORT_KEYS)
        self.refresh_features()

    def action_filter(self) -> None:
        self.query_one("#tabs", TabbedContent).active = "features"
        self.query_one("#filter", Input).focus()

    def action_tab(self, name: str) -> None:
        self.query_one("#tabs", TabbedContent).active = name

    # --- actions: ablation ----------------------------------------------------

    def _highlighted_choice(self) -> tuple[AblationChoice | None, FeatureRow | None]:
        """The choice under the cursor: from the ablation list when it has focus, else the features table."""
        if isinstance(self.focused, ChoiceTable):
            return self.focused.highlighted(), None
        row = self.query_one("#feature-table", FeatureTable).highlighted()
        if row is None:
            return None, None
        if row.pos is None:
            return AblationChoice(row.sae_id, row.feature, -1, "every"), row
        return AblationChoice(row.sae_id, row.feature, row.pos, "position"), row

    def action_toggle_feature(self) -> None:
        if self.current is None:
            return
        choice, row = self._highlighted_choice()
        if choice is None:
            self.notify("no feature highlighted: attribute (a), then pick a row in the Features tab", severity="warning")
            return
        if choice.mode == "position" and self.ws.find_choice(self.current, choice.ident) is None and not self._in_prefix(choice.pos):
            choice = AblationChoice(choice.sae_id, choice.feature, choice.pos, "every")
            self.notify(
                f"pos {choice.pos} is not in the regeneration prefix ({self._prefix_text()}), so {choice.sae_id} f{choice.feature} "
                "is ablated at every position (∀)",
                severity="warning",
                timeout=6,
            )
        self.ws.toggle(self.current, choice)
        self._after_toggle()

    def _prefix_len(self) -> int | None:
        sample = self.ws.state(self.current).sample
        return sample.structure.attribution_pos if self.from_attr else sample.prompt_len

    def _prefix_text(self) -> str:
        n = self._prefix_len()
        return f"tokens[:{n}]" + (" up to the attribution position" if self.from_attr else ", the prompt")

    def _in_prefix(self, pos: int) -> bool:
        n = self._prefix_len()
        return n is not None and 0 <= pos < n

    def action_toggle_mode(self) -> None:
        if self.current is None:
            return
        choice, row = self._highlighted_choice()
        if choice is None:
            return
        existing = self.ws.find_choice(self.current, choice.ident)
        if existing is None:
            self.ws.toggle(self.current, AblationChoice(choice.sae_id, choice.feature, choice.pos, "every"))
        elif existing.pos < 0:
            self.notify("a dataset-ranked feature is ablated at every position", severity="warning")
            return
        else:
            self.ws.set_mode(self.current, existing.ident, "position" if existing.mode == "every" else "every")
        self._after_toggle()

    def action_top_k(self) -> None:
        if self.current is None:
            return
        st = self.ws.state(self.current)
        if st.attribution is None:
            self.notify("attribute the sample first (a)", severity="warning")
            return
        sae = self.sae_ids[self.sae_filter - 1] if self.sae_filter else self.sae_ids[0]
        ablation = top_k_ablation(st.attribution[sae], 0, TOP_K)
        for fa in ablation.features:
            choice = AblationChoice(fa.sae_id, fa.feature, fa.positions[0], "position")
            if self.ws.find_choice(self.current, choice.ident) is None:
                self.ws.toggle(self.current, choice)
        self.notify(f"added the study's top-{TOP_K} pairs of {sae}", timeout=2)
        self._after_toggle()

    def action_clear_ablation(self) -> None:
        if self.current is None:
            return
        self.ws.clear_choices(self.current)
        self._after_toggle()

    def _after_toggle(self) -> None:
        # A new toggle makes any running regeneration stale: cancel it.
        if self.cancel_regeneration():
            self.regen_state = "cancelled (toggles changed)"
        self.refresh_features()
        self.refresh_ablation()
        self.refresh_tokens()
        self.refresh_status()
        if self.live:
            self.action_regenerate()

    def cancel_regeneration(self) -> bool:
        running = [w for w in self.app.workers if w.group == "regenerate" and w.state in (WorkerState.PENDING, WorkerState.RUNNING)]
        for w in running:
            w.cancel()
        if running:
            self.streaming = None
        return bool(running)

    def action_regen_from(self) -> None:
        self.from_attr = not self.from_attr
        self.notify("regenerate from " + ("the attribution position (the study's choice)" if self.from_attr else "the prompt"), timeout=3)
        self.refresh_status()
        self.refresh_ablation()

    def action_live(self) -> None:
        self.live = not self.live
        self.refresh_status()
        self.refresh_ablation()

    def action_cancel(self) -> None:
        if isinstance(self.focused, Input):
            self.query_one("#feature-table").focus()
            return
        cancelled = self.cancel_regeneration()
        for w in self.app.workers:
            if w.group in ("generate", "attribute") and w.state in (WorkerState.PENDING, WorkerState.RUNNING):
                w.cancel()
                cancelled = True
                self._end_busy()
        if cancelled:
            self.regen_state = "cancelled"
            self.refresh_all()

    def action_regenerate(self) -> None:
        if self._needs_model("regenerate"):
            return
        if self.current is None:
            self.notify("no sample selected", severity="warning")
            return
        st = self.ws.state(self.current)
        if self.from_attr and st.sample.structure.attribution_pos is None:
            self.notify("this sample has no attribution position; press R to regenerate from the prompt", severity="error")
            return
        self.run_id += 1
        rid = self.run_id
        self.latency[rid] = {"requested": time.perf_counter()}
        self.streaming = None
        self._stream_prefix = st.sample.structure.attribution_pos if self.from_attr else st.sample.prompt_len
        self.regen_state = "regenerating…"
        self.set_compare(True)
        self.refresh_status()
        self.regenerate_worker(self.current, rid, st.sample, tuple(st.choices), st.preset, self.from_attr)

    @work(thread=True, exclusive=True, exit_on_error=False, group="regenerate", description="Regenerating")
    def regenerate_worker(self, key: str, rid: int, sample: ListSample, choices: tuple, preset: str, from_attr: bool) -> None:
        worker = get_current_worker()
        settings = SAMPLING_PRESETS[preset]
        ablation = to_ablation(choices)
        self.post_message(RegenerationStarted(key, rid))
        prefix = tuple(sample.tokens[: sample.structure.attribution_pos] if from_attr else sample.tokens[: sample.prompt_len])

        last = [0.0]

        def on_step(steps: int, tokens: list[list[int]]) -> bool:
            if worker.is_cancelled:
                return True
            now = time.perf_counter()
            # the first token at once, then at most ~30 updates a second: drawing every
            # step would take the GIL from the sampler (the finished run shows the rest)
            if steps == 1 or now - last[0] >= STREAM_INTERVAL_S:
                last[0] = now
                self.post_message(RegenerationStep(key, rid, prefix + tuple(tokens[0])))
            return False

        try:
            ablated = regenerate(self.lab, sample, settings, ablation, from_attribution_pos=from_attr, on_step=on_step)
            if worker.is_cancelled:
                self.post_message(RegenerationCancelled(key, rid))
                return
            cache_key = (key, from_attr, preset)
            if cache_key not in self._base_cache:
                # From the prompt with the sample's own seed and preset, the unablated run is
                # the sample itself (common random numbers; tested), so only score it.
                if from_attr:
                    base = regenerate(self.lab, sample, settings, None, from_attribution_pos=True)
                else:
                    base = with_metric(self.lab, replace(sample, prefix_len=sample.prompt_len))
                self._base_cache[cache_key] = (base, tuple(metric_curve(self.lab, base.tokens).tolist()))
            base, base_curve = self._base_cache[cache_key]
            ablated_curve = tuple(metric_curve(self.lab, ablated.tokens, ablation).tolist())
            attr_pos = sample.structure.attribution_pos
            before = None if attr_pos is None else metric_under_ablation(self.lab, sample.tokens, Ablation(), attr_pos)
            under = None if attr_pos is None else metric_under_ablation(self.lab, sample.tokens, ablation, attr_pos)
        except ListerError as exc:
            where = f"tokens[:{sample.structure.attribution_pos}] (the attribution position)" if from_attr else "the prompt"
            self.post_message(TaskFailed("regenerate", f"{exc}. Regeneration starts from {where}; an ablation at a position acts on that prefix only, so ablate such a feature at every position (e) instead.", expected=True))
            return
        except Exception as exc:
            self.post_message(TaskFailed.of("regenerate", exc))
            return
        if worker.is_cancelled:
            self.post_message(RegenerationCancelled(key, rid))
            return
        run = AblationRun(key, tuple(choices), from_attr, preset, base, ablated, base_curve, ablated_curve, before, under)
        self.post_message(RegenerationFinished(key, rid, run))

    def on_regeneration_step(self, message: RegenerationStep) -> None:
        if message.run_id != self.run_id or message.key != self.current:
            return
        self.streaming = message.tokens
        stamps = self.latency.setdefault(message.run_id, {})
        first = "first_token" not in stamps
        view = self.query_one("#ablated-view", TokenView)
        if first:
            self.refresh_tokens()
        else:
            st = self.ws.state(message.key)
            toks = message.tokens
            structure = parse_structure(toks, self.lab.ids, st.sample.prompt_len - 1)
            marks, every = self._marks(message.key)
            view.set_doc(TokenDoc(f"ablated · {len(st.choices)} features", toks, self.strings(toks), st.sample.prompt_len, structure, None, marks, every, self._stream_prefix, streaming=True))
        view.cursor = len(message.tokens) - 1
        if first:
            stamps["first_token"] = time.perf_counter()

    def on_regeneration_finished(self, message: RegenerationFinished) -> None:
        self.ws.record_ablation(message.key, message.run)
        self.query_one("#samples", SampleTable).update_runs(message.key, len(self.ws.state(message.key).runs))
        if message.run_id != self.run_id:
            return
        self.latency.setdefault(message.run_id, {})["done"] = time.perf_counter()
        self.streaming = None
        self.regen_state = f"regenerated ({len(message.run.choices)} features)"
        if message.key == self.current:
            self.set_compare(True)
            self.refresh_all()

    def on_regeneration_cancelled(self, message: RegenerationCancelled) -> None:
        self.latency.setdefault(message.run_id, {})["cancelled"] = time.perf_counter()
        if message.run_id == self.run_id:
            self.streaming = None
            self.regen_state = "cancelled"
            self.refresh_all()

    def on_task_failed(self, message: TaskFailed) -> None:
        if message.task in ("generate", "attribute"):
            self._end_busy()
        if message.task == "regenerate":
            self.streaming = None
            self.regen_state = "regeneration failed"
            self.refresh_all()
        if message.expected:
            self.notify(message.error, title=f"{message.task} failed", severity="error", timeout=10)
        else:
            self.app.push_screen(ErrorScreen(f"{message.task} failed", message.error))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:  # not caught in the worker: still no traceback on screen
            self.app.push_screen(ErrorScreen(f"{event.worker.description or event.worker.name} failed", f"{type(event.worker.error).__name__}: {event.worker.error}"))

    # --- actions: notes -------------------------------------------------------

    def action_note(self) -> None:
        from lister_tui.tui.screens.sessions import NoteScreen

        if self.current is None:
            self.notify("no sample selected", severity="warning")
            return
        key = self.current

        def done(text: str | None) -> None:
            if text is not None and key in self.ws.samples and text != self.ws.state(key).note:
                self.ws.set_note(key, text)
                self.notify("note kept" + (" (saved with the session)" if self.app.session is not None else ""), timeout=2)

        self.app.push_screen(NoteScreen(f"Note on {key}", self.ws.state(key).note), done)

    def action_session_notes(self) -> None:
        from lister_tui.tui.screens.sessions import NoteScreen

        def done(text: str | None) -> None:
            if text is not None and text != self.ws.notes:
                self.ws.set_notes(text)
                self.notify("session notes kept", timeout=2)

        self.app.push_screen(NoteScreen("Session notes", self.ws.notes), done)

    # --- actions: views -------------------------------------------------------

    def action_compare(self) -> None:
        self.set_compare(not self.compare)
        self.refresh_tokens()

    def action_metric_colour(self) -> None:
        for view in self.query(TokenView):
            view.metric_colours = not view.metric_colours

    def action_show_prompt(self) -> None:
        for view in self.query(TokenView):
            view.show_prompt = not view.show_prompt
        self.refresh_metric()

    def action_sidebar(self) -> None:
        table = self.query_one("#samples", SampleTable)
        table.display = not table.display

    def action_focus_tokens(self) -> None:
        self.query_one("#base-view").focus()

    def action_focus_samples(self) -> None:
        table = self.query_one("#samples", SampleTable)
        table.display = True
        table.focus()

    def action_focus_features(self) -> None:
        self.query_one("#tabs", TabbedContent).active = "features"
        self.query_one("#feature-table").focus()

    def action_copy_link(self) -> None:
        row = self.query_one("#feature-table", FeatureTable).highlighted()
        if row is None:
            self.notify("no feature highlighted", severity="warning")
            return
        link = self.lab.entry.feature_link(row.sae_id, row.feature)
        if link is None:
            self.app.copy_to_clipboard(f"{self.lab.entry.name} {row.sae_id} feature {row.feature}")
            self.notify(f"{self.lab.entry.name} has no Neuronpedia pages; copied the feature id", timeout=3)
        else:
            self.app.copy_to_clipboard(link)
            self.notify(f"copied {link}", timeout=4)

    def action_copy_text(self) -> None:
        view = self._focused_view()
        if view.doc is None:
            return
        text = self.lab.tokenizer.decode(list(view.doc.ids[view.doc.prompt_len :]))
        self.app.copy_to_clipboard("-" + text)
        self.notify(f"copied {len(text)} characters of list text", timeout=3)

    def action_matrix(self) -> None:
        from lister_tui.tui.screens.matrix import MatrixScreen

        if self.ws.batch is None:
            self.pending_matrix = True
            self.notify("attributing the batch first…", timeout=3)
            self.action_attribute_batch()
            return

        def opened(key: str | None) -> None:
            if key is not None and key in self.ws.samples:
                self.query_one("#samples", SampleTable).show(self.ws.samples, key)
                self.select(key)

        self.app.push_screen(MatrixScreen(self.ws.batch, self.ws.samples, self.sae_ids), opened)
