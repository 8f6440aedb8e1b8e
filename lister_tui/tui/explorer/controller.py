"""The explorer's controller: the workspace's changes, the workers and every state transition.

:class:`ExplorerController` is an invisible widget on the main screen (a widget, so that
it can own Textual workers and receive their messages). Each user intent the screen
forwards (select a sample, toggle a feature, regenerate, …) changes the workspace
and :class:`~lister_tui.tui.explorer.state.ExplorerState` here, starts the work it
needs in a cancellable thread worker, and posts :class:`ExplorerChanged` naming the
parts of the screen to redraw. Every number comes from :mod:`lister_tui.core`; the
controller never formats it (:mod:`lister_tui.tui.explorer.views` does).

Long because it is the one place where the explorer's transitions live, and they must
see each other: a toggle cancels a stale regeneration, a finished batch attribution
opens the matrix, a failure ends the busy state. Its sections follow the screen's
areas (selection, samples, attribution, features table, ablation, regeneration).
"""

from __future__ import annotations

from dataclasses import replace

import time
from textual import work
from textual.widget import Widget
from textual.worker import Worker, WorkerState, get_current_worker

from lister_tui.core.engine.generation import ListSample, metric_curve, sample_lists
from lister_tui.core.errors import Cancelled, ListerError
from lister_tui.core.sessions.runs import ablation_run, regeneration_prefix
from lister_tui.core.engine.interventions import MAX_ABS_VALUE
from lister_tui.core.limits import MAX_RELATIVE_CLAMP
from lister_tui.core.sessions.workspace import KIND_CYCLE, KIND_DEFAULT_VALUE, KIND_STEP, RELATIVE_DEFAULT, RELATIVE_STEP, AblationChoice
from lister_tui.core.study.experiment import DEFAULT_IG_STEPS, attributable, attribute_lists, top_k_ablation
from lister_tui.core.study.settings import SAMPLING_PRESETS
from lister_tui.tui.explorer.state import DENSITY_VIEWS, TOP_K, ExplorerState
from lister_tui.tui.explorer.views import FeatureRows, TokenStrings
from lister_tui.tui.messages import (
    AttributionReady,
    CurveReady,
    ExplorerChanged,
    DensitiesReady,
    GenerationProgress,
    PeaksReady,
    RegenerationCancelled,
    RegenerationFinished,
    RegenerationStarted,
    RegenerationStep,
    SamplesGenerated,
    TaskFailed,
)
from lister_tui.tui.screens.error import ErrorScreen
from lister_tui.tui.screens.generate import GenerateRequest
from lister_tui.tui.widgets.feature_table import SORT_KEYS

STREAM_INTERVAL_S = 0.1  # redraw a streaming regeneration at most 10 times a second: each redraw takes the GIL from the sampler

# Everything but the sample browser, which is redrawn only when samples come or go: redrawing
# it moves its cursor, and a moved cursor selects a sample.
EVERYTHING = frozenset({"status", "tokens", "features", "ablation"})


class ExplorerController(Widget):
    """Owns the explorer's state and work; posts :class:`ExplorerChanged` after each change."""

    DEFAULT_CSS = "ExplorerController { display: none; }"

    def __init__(self, initial: GenerateRequest | None = None) -> None:
        super().__init__(id="controller")
        self.state = ExplorerState()
        self.initial = initial
        self.last_request = initial
        self.latency: dict[int, dict[str, float]] = {}  # per regeneration: requested / first_token / done / cancelled
        self.base_cache: dict[tuple, tuple[ListSample, tuple[float, ...]]] = {}
        self._strings: TokenStrings | None = None
        self._rows: FeatureRows | None = None
        self.peaks: dict[tuple[str, frozenset], object] = {}  # (SAE, the session's sample keys) -> max activation per feature
        self.peaks_pending: set[str] = set()
        self.densities: dict[tuple[str, frozenset], object] = {}  # (SAE, the session's sample keys) -> density per feature

    @property
    def strings(self) -> TokenStrings:
        if self._strings is None:
            self._strings = TokenStrings(self.lab)
        return self._strings

    @property
    def rows(self) -> FeatureRows:
        if self._rows is None:
            self._rows = FeatureRows(self.sae_ids, self.strings.one)
        return self._rows

    # --- what the controller works on -------------------------------------------------

    @property
    def lab(self):
        return self.app.lab

    @property
    def ws(self):
        return self.app.workspace

    @property
    def sae_ids(self) -> list[str]:
        return [s.id for s in self.lab.entry.sites]

    @property
    def preset(self) -> str:
        """The sampling preset of the selected sample (else of the last request)."""
        if self.state.current:
            return self.ws.state(self.state.current).preset
        return self.last_request.preset if self.last_request else "code"

    def changed(self, *parts: str) -> None:
        self.post_message(ExplorerChanged(frozenset(parts) or EVERYTHING))

    def no_sample(self) -> bool:
        """True (and a notification) when there is no sample to work on: still sampling, or none."""
        if self.state.current is not None:
            return False
        if self.state.busy:
            self.notify(f"loading…: {self.state.busy}; the first sample shows when it is done", timeout=3)
        else:
            self.notify("no sample selected; generate some with g", severity="warning")
        return True

    def needs_model(self, what: str) -> bool:
        """True (and a notification) when the model is not here to ``what``."""
        if self.app.can_compute:
            return False
        self.notify(f"cannot {what}: this session is read-only, its model is not available here", severity="warning")
        return True

    # the workers that run the model (under hooks, which are the model's state)
    MODEL_GROUPS = frozenset({"generate", "curve", "attribute", "density", "peaks", "regenerate"})

    def model_busy(self, what: str) -> bool:
        """True (and a notification naming it) while one of this screen's workers runs the model:
        a circuit or a graph computed beside it would share the model's hooks."""
        running = [w for w in self.app.workers if w.node is self and w.group in self.MODEL_GROUPS and w.is_running]
        if not running:
            return False
        self.notify(f"cannot {what} yet: {running[0].description.lower()} is still running; wait for it, or cancel it (escape)",
                    severity="warning", markup=False)
        return True

    def start(self) -> None:
        """The screen is up: show an opened session's first sample, or sample the first batch."""
        if self.state.current is None and self.ws.samples:
            self.select(next(iter(self.ws.samples)))
        self.changed("samples", *EVERYTHING)
        if self.initial is not None and self.app.can_compute:
            self.start_generation(self.initial)

    # --- selection ---------------------------------------------------------------------

    def select(self, key: str) -> None:
        if key == self.state.current:
            return
        self.state.current = key
        self.state.streaming = None
        self.state.regen_state = ""
        self.state.run_hidden = False
        st = self.ws.state(key)
        if st.curve is None and self.app.can_compute:
            self.curve_worker(key, st.sample.tokens)
        self.changed()

    def set_compare(self, on: bool) -> None:
        """The compare mode, the user's choice: kept across runs and samples, and said."""
        self.state.compare = on
        self.notify(
            "compare view on: base and ablated side by side (d hides)" if on else "compare view off: the sample alone (d shows base and ablated)",
            timeout=3,
        )
        self.changed("tokens", "status")

    # --- samples -----------------------------------------------------------------------

    def start_generation(self, request: GenerateRequest) -> None:
        try:
            specs = request.specs()
        except ListerError as exc:
            self.notify(str(exc), title="Cannot generate", severity="error")
            return
        self.last_request = request
        self.state.busy = f"generating {len(specs)} samples"
        self.post_message(GenerationProgress(0.0, 100.0))
        self.changed("status", "tokens")
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

    def on_samples_generated(self, message: SamplesGenerated) -> None:
        message.stop()
        keys = self.ws.add_samples(message.samples, message.preset)
        self.end_busy()
        self.notify(f"{len(keys)} samples generated ({message.preset})", timeout=3)
        target = keys[0] if keys else self.state.current
        if target is not None:
            self.select(target)
        self.changed("samples")  # after select: the browser's cursor goes to the selected sample

    def remove_sample(self, key: str) -> None:
        """Remove ``key`` (the user confirmed); the workspace keeps it for :meth:`undo_remove`."""
        if key not in self.ws.samples:
            return
        keys = list(self.ws.samples)
        index = keys.index(key)
        self.ws.remove_sample(key)
        rest = list(self.ws.samples)
        if key == self.state.current:
            self.state.current = None
            self.state.streaming = None
            self.state.regen_state = ""
            if rest:
                self.select(rest[min(index, len(rest) - 1)])
        self.notify(f"removed {key}; u brings it back", timeout=4)
        self.changed("samples", *EVERYTHING)

    def undo_remove(self) -> None:
        key = self.ws.restore_sample()
        if key is None:
            self.notify("nothing removed to bring back", severity="warning", timeout=3)
            return
        self.notify(f"brought back {key}", timeout=3)
        self.select(key)
        self.changed("samples", *EVERYTHING)

    def end_busy(self) -> None:
        self.state.busy = ""
        self.changed("status", "progress")

    @work(thread=True, exclusive=True, exit_on_error=False, group="curve", description="Metric curve")
    def curve_worker(self, key: str, tokens: tuple[int, ...]) -> None:
        try:
            curve = metric_curve(self.lab, tokens)
        except Exception as exc:
            self.post_message(TaskFailed.of("metric", exc))
            return
        self.post_message(CurveReady(key, tuple(float(v) for v in curve.tolist())))

    def on_curve_ready(self, message: CurveReady) -> None:
        message.stop()
        if message.key in self.ws.samples:
            self.ws.set_curve(message.key, message.curve)
            if message.key == self.state.current:
                self.changed("tokens")

    # --- attribution --------------------------------------------------------------------

    def attribute(self, method: str = "grad") -> None:
        if self.needs_model("attribute") or self.no_sample():
            return
        sample = self.ws.state(self.state.current).sample
        if sample.structure.attribution_pos is None:
            self.notify("this sample has no complete item, so no attribution position", severity="error")
            return
        self.state.busy = "attributing" if method == "grad" else f"attributing (integrated gradients, {DEFAULT_IG_STEPS} steps)"
        self.changed("status")
        self.attribute_worker([self.state.current], [sample], False, method)

    def attribute_batch(self) -> None:
        if self.needs_model("attribute"):
            return
        keys = list(self.ws.samples)
        samples = [self.ws.state(k).sample for k in keys]
        keep = attributable(samples)
        if not keep:
            self.notify("no sample has a complete item to attribute; generate some with g", severity="error")
            return
        self.state.busy = f"attributing {len(keep)} samples"
        self.post_message(GenerationProgress(0.0, float(len(self.sae_ids) * len(keep))))
        self.changed("status")
        self.attribute_worker([keys[i] for i in keep], [samples[i] for i in keep], True)

    @work(thread=True, exclusive=True, exit_on_error=False, group="attribute", description="Attributing")
    def attribute_worker(self, keys: list[str], samples: list[ListSample], batch: bool, method: str = "grad") -> None:
        worker = get_current_worker()
        done: dict[str, int] = {}

        def on_progress(sae: str, n_done: int, n: int) -> bool:
            done[sae] = n_done
            self.post_message(GenerationProgress(float(sum(done.values())), float(n * len(self.sae_ids))))
            return worker.is_cancelled  # escape: stop after this SAE (the work so far is dropped)

        try:
            by_sae = attribute_lists(self.lab, samples, self.sae_ids, on_progress=on_progress, method=method)
        except Cancelled:
            return
        except Exception as exc:
            self.post_message(TaskFailed.of("attribute", exc))
            return
        if not worker.is_cancelled:
            self.post_message(AttributionReady(keys, by_sae, batch))

    def on_attribution_ready(self, message: AttributionReady) -> None:
        # not stopped: the screen also shows the features tab or opens the matrix
        if message.batch:
            self.ws.set_batch_attribution(message.keys, message.by_sae)
        else:
            self.ws.set_attribution(message.keys[0], message.by_sae)
        self.end_busy()
        self.changed("features", "metric")
        if not message.batch:
            how = next(iter(message.by_sae.values())).method_label if message.by_sae else ""
            self.notify(f"attributed {len(message.by_sae)} SAEs ({how})", timeout=2)
        else:
            self.notify(batch_attributed(len(message.keys), len(self.ws.samples), len(message.by_sae)), timeout=8)

    # --- the features table's mode --------------------------------------------------------

    def toggle_ranking(self) -> None:
        self.state.dataset_mode = not self.state.dataset_mode
        if self.state.dataset_mode and self.ws.batch is None:
            self.notify("dataset ranking needs the batch attributed: press A", severity="warning")
        self.changed("features")

    def cycle_density(self) -> None:
        """D: plain → dense features flagged → down-weighted → plain; densities found once per SAE (a worker)."""
        self.state.density_view = DENSITY_VIEWS[(DENSITY_VIEWS.index(self.state.density_view) + 1) % len(DENSITY_VIEWS)]
        words = {"plain": "plain ranking", "flag": "dense features flagged d", "downweight": "ranked by attribution × density weight"}
        self.notify(f"features table: {words[self.state.density_view]}", timeout=3)
        # the SAE the table is filtered to (s), else every SAE: one corpus pass each, cached on disk
        wanted = [self.sae_ids[self.state.sae_filter - 1]] if self.state.sae_filter else self.sae_ids
        missing = [s for s in wanted if self._peaks_key(s) not in self.densities]
        if self.state.density_view != "plain" and missing and self.needs_model("find the features' densities"):
            missing = []
        if self.state.density_view != "plain" and missing:
            self.density_worker(missing, {k: st.sample for k, st in self.ws.samples.items()}, frozenset(self.ws.samples))
        self.changed("features")

    def shown_densities(self) -> dict:
        """{SAE: density per feature} known for the session's samples as they are now."""
        return {s: self.densities[self._peaks_key(s)] for s in self.sae_ids if self._peaks_key(s) in self.densities}

    @work(thread=True, exclusive=True, exit_on_error=False, group="density", description="Feature densities")
    def density_worker(self, sae_ids: list[str], samples: dict, sample_keys: frozenset) -> None:
        from lister_tui.core.study.cards import corpus_parts
        from lister_tui.core.study.corpus import PassCancelled, default_corpus
        from lister_tui.core.study.features import feature_densities

        worker = get_current_worker()
        try:
            corpus = default_corpus(self.lab, samples)
            for n, sae_id in enumerate(sae_ids):
                def progress(done: int, total: int, n: int = n, sae_id: str = sae_id) -> bool:
                    self.post_message(GenerationProgress(float(n * total + done), float(len(sae_ids) * total)))
                    return worker.is_cancelled

                parts = corpus_parts(self.lab, sae_id, corpus, on_progress=progress)
                self.post_message(DensitiesReady(sae_id, sample_keys, feature_densities(acts for _, acts in parts)))
        except PassCancelled:
            return
        except Exception as exc:  # a worker's failure becomes a message, never a traceback
            self.post_message(TaskFailed.of("feature density", exc))

    def on_densities_ready(self, message: DensitiesReady) -> None:
        message.stop()
        self.densities[(message.sae_id, message.sample_keys)] = message.densities
        self.changed("features")

    def next_sae(self) -> str | None:
        """The next SAE choice (all, then each SAE); the screen writes it into the filter as sae:NAME."""
        self.state.sae_filter = (self.state.sae_filter + 1) % (len(self.sae_ids) + 1)
        return self.sae_ids[self.state.sae_filter - 1] if self.state.sae_filter else None

    def set_query_sae(self, sae: str | None) -> None:
        """The filter text names ``sae`` (typed, or written by s): it is the SAE choice K uses."""
        self.state.sae_filter = self.sae_ids.index(sae) + 1 if sae in self.sae_ids else 0

    def next_sort(self) -> None:
        self.state.sort_index = (self.state.sort_index + 1) % len(SORT_KEYS)
        self.changed("features")

    # --- ablation ------------------------------------------------------------------------

    def prefix_len(self) -> int | None:
        sample = self.ws.state(self.state.current).sample
        return sample.structure.attribution_pos if self.state.from_attr else sample.prompt_len

    def prefix_text(self) -> str:
        n = self.prefix_len()
        return f"tokens[:{n}]" + (" up to the attribution position" if self.state.from_attr else ", the prompt")

    def in_prefix(self, pos: int) -> bool:
        n = self.prefix_len()
        return n is not None and 0 <= pos < n

    def beyond_prefix(self, choice: AblationChoice) -> bool:
        """An at-position choice outside the regeneration prefix: its ablation would act on nothing."""
        return choice.mode == "position" and choice.pos >= 0 and not self.in_prefix(choice.pos)

    def say_every(self, switched: list[AblationChoice]) -> None:
        """The one toast for pairs that the prefix rule switched to every position (∀)."""
        if not switched:
            return
        one = len(switched) == 1
        positions = ", ".join(str(c.pos) for c in switched)
        features = ", ".join(f"{c.sae_id} f{c.feature}" for c in switched)
        self.notify(
            f"pos {positions} {'is' if one else 'are'} not in the regeneration prefix ({self.prefix_text()}), so {features} "
            f"{'is' if one else 'are'} ablated at every position (∀)",
            severity="warning",
            timeout=6,
        )

    def toggle_feature(self, choice: AblationChoice) -> None:
        key = self.state.current
        switched = []
        if self.ws.find_choice(key, choice.ident) is None and self.beyond_prefix(choice):
            choice = AblationChoice(choice.sae_id, choice.feature, choice.pos, "every")
            switched.append(choice)
        self.ws.toggle(key, choice)
        self.say_every(switched)
        self.after_toggle()

    def toggle_mode(self, choice: AblationChoice) -> None:
        key = self.state.current
        existing = self.ws.find_choice(key, choice.ident)
        if existing is None:
            self.ws.toggle(key, AblationChoice(choice.sae_id, choice.feature, choice.pos, "every"))
        elif existing.pos < 0:
            self.notify("a dataset-ranked feature is ablated at every position", severity="warning")
            return
        elif existing.mode == "every" and self.beyond_prefix(AblationChoice(existing.sae_id, existing.feature, existing.pos, "position")):
            self.notify(
                f"pos {existing.pos} is not in the regeneration prefix ({self.prefix_text()}): {existing.sae_id} f{existing.feature} "
                "stays ablated at every position (∀)",
                severity="warning",
                timeout=6,
            )
            return
        else:
            self.ws.set_mode(key, existing.ident, "position" if existing.mode == "every" else "every")
        self.after_toggle()

    def cycle_kind(self, choice: AblationChoice) -> None:
        """The next intervention kind of a chosen feature: zero → scale → clamp → steer → zero."""
        key = self.state.current
        existing = self.ws.find_choice(key, choice.ident)
        if existing is None:
            self.notify("switch the feature on first (space), then k picks how to change it", severity="warning")
            return
        kind = KIND_CYCLE[(KIND_CYCLE.index(existing.kind) + 1) % len(KIND_CYCLE)]
        self.ws.set_choice(key, replace(existing, kind=kind, value=KIND_DEFAULT_VALUE[kind], relative=False, peak=None))
        self.after_toggle()

    def toggle_relative(self, choice: AblationChoice) -> None:
        """A clamp's value: absolute, or k × the feature's maximum activation from its card (``v``)."""
        key = self.state.current
        existing = self.ws.find_choice(key, choice.ident)
        if existing is None or existing.kind != "clamp":
            self.notify("v makes a clamp relative to the feature's maximum activation: k picks clamp first", severity="warning")
            return
        if existing.relative:  # back to absolute, at the value it stood for
            value = round(existing.value * existing.peak, 6) if existing.peak is not None else KIND_DEFAULT_VALUE["clamp"]
            self.ws.set_choice(key, replace(existing, relative=False, peak=None, value=value))
        else:
            peaks = self.peaks.get(self._peaks_key(existing.sae_id))
            peak = None if peaks is None else float(peaks[existing.feature])
            self.ws.set_choice(key, replace(existing, relative=True, value=RELATIVE_DEFAULT, peak=peak))
            if peak is None:
                self.find_peaks(existing.sae_id)
        self.after_toggle()

    def _peaks_key(self, sae_id: str) -> tuple[str, frozenset]:
        return (sae_id, frozenset(self.ws.samples))  # the cards' corpus holds the session's samples

    def find_peaks(self, sae_id: str) -> None:
        """Start the search for ``sae_id``'s maximum activations (known already: filled in at once)."""
        known = self.peaks.get(self._peaks_key(sae_id))
        if known is not None:
            self.post_message(PeaksReady(sae_id, "", known))
            return
        if sae_id in self.peaks_pending or self.needs_model("find the maximum activation"):
            return
        self.peaks_pending.add(sae_id)
        self.notify(f"finding the maximum activations of {sae_id} (the cards' corpus pass, cached after the first time)", timeout=4)
        samples = {k: st.sample for k, st in self.ws.samples.items()}
        self.peak_worker(sae_id, samples, self._peaks_key(sae_id))

    @work(thread=True, exit_on_error=False, group="peaks", description="Maximum activations")
    def peak_worker(self, sae_id: str, samples: dict, cache_key: tuple) -> None:
        from lister_tui.core.study.cards import max_activations
        from lister_tui.core.study.corpus import PassCancelled, default_corpus

        worker = get_current_worker()
        try:
            corpus = default_corpus(self.lab, samples)
            peaks = max_activations(self.lab, sae_id, corpus, on_progress=lambda done, total: worker.is_cancelled)
        except PassCancelled:
            self.peaks_pending.discard(sae_id)
            return
        except Exception as exc:  # a worker's failure becomes a message, never a traceback
            self.peaks_pending.discard(sae_id)
            self.post_message(TaskFailed.of("maximum activation", exc))
            return
        self.peaks[cache_key] = peaks
        self.post_message(PeaksReady(sae_id, corpus.description, peaks))

    def on_peaks_ready(self, message: PeaksReady) -> None:
        """Every relative clamp of ``message.sae_id`` still waiting gets its feature's maximum."""
        message.stop()
        self.peaks_pending.discard(message.sae_id)
        filled = []
        for key, st in self.ws.samples.items():
            for c in list(st.choices):
                if c.sae_id == message.sae_id and c.waiting_for_peak:
                    peak = float(message.peaks[c.feature])
                    self.ws.set_choice(key, replace(c, peak=peak))
                    filled.append((c.feature, peak))
        for feature, peak in filled[:3]:
            note = " (it never fires on the corpus: the clamp is 0)" if peak == 0 else ""
            self.notify(f"{message.sae_id} f{feature}: maximum activation {peak:.3g}{note}", timeout=4, markup=False)
        if filled:
            self.after_toggle()

    def step_value(self, choice: AblationChoice, direction: int) -> None:
        """Raise (+1) or lower (−1) a scale, clamp or steer value by its step (``]`` / ``[``)."""
        key = self.state.current
        existing = self.ws.find_choice(key, choice.ident)
        if existing is None or existing.kind == "zero":
            self.notify("a zeroed feature has no value: k picks scale, clamp or steer first", severity="warning")
            return
        step, bound = (RELATIVE_STEP, MAX_RELATIVE_CLAMP) if existing.relative else (KIND_STEP[existing.kind], MAX_ABS_VALUE)
        value = round(existing.value + direction * step, 6)
        if abs(value) > bound:
            what = "k of a relative clamp" if existing.relative else "value"
            self.notify(f"the {what} stays within ±{bound:g}", severity="warning")
            return
        self.ws.set_choice(key, replace(existing, value=value))
        self.after_toggle()

    def add_top_k(self) -> None:
        key = self.state.current
        st = self.ws.state(key)
        if st.attribution is None:
            self.notify("attribute the sample first (a)", severity="warning")
            return
        sae = self.sae_ids[self.state.sae_filter - 1] if self.state.sae_filter else self.sae_ids[0]
        ablation = top_k_ablation(st.attribution[sae], 0, TOP_K)
        if ablation.is_empty():
            # e.g. the last layer: act×grad is exactly 0 before the attribution position
            self.notify(
                f"{sae} has no pair with a positive attribution before the attribution position (at the last layer "
                "act×grad is 0 there), so the study's top-k adds nothing; an ablation of it would zero nothing",
                severity="warning",
                timeout=6,
                markup=False,
            )
            return
        switched = []
        for fa in ablation.features:
            choice = AblationChoice(fa.sae_id, fa.feature, fa.positions[0], "position")
            if self.ws.find_choice(key, choice.ident) is None:
                if self.beyond_prefix(choice):
                    choice = AblationChoice(choice.sae_id, choice.feature, choice.pos, "every")
                    switched.append(choice)
                self.ws.toggle(key, choice)
        self.notify(f"added the study's top-{TOP_K} pairs of {sae}", timeout=2)
        self.say_every(switched)
        self.after_toggle()

    def clear_ablation(self) -> None:
        self.ws.clear_choices(self.state.current)
        # a clean slate: the old deltas and a failed run's status go too (the runs stay in the session)
        self.state.regen_state = ""
        self.state.run_hidden = True
        self.after_toggle()

    def after_toggle(self) -> None:
        # A new toggle makes any running regeneration stale: cancel it.
        if self.cancel_regeneration():
            self.state.regen_state = "cancelled (toggles changed)"
        self.changed("features", "ablation", "tokens", "status")
        if self.state.live:
            self.regenerate()

    def cancel_regeneration(self) -> bool:
        running = [w for w in self.app.workers if w.group == "regenerate" and w.state in (WorkerState.PENDING, WorkerState.RUNNING)]
        for w in running:
            w.cancel()
        if running:
            self.state.streaming = None
        return bool(running)

    def toggle_regen_from(self) -> None:
        self.state.from_attr = not self.state.from_attr
        self.notify("regenerate from " + ("the attribution position (the study's choice)" if self.state.from_attr else "the prompt"), timeout=3)
        key = self.state.current
        if key is not None:
            # the prefix changed: chosen pairs now outside it switch to every position, as space does
            switched = [c for c in self.ws.state(key).choices if self.beyond_prefix(c)]
            for c in switched:
                self.ws.set_mode(key, c.ident, "every")
            if switched:
                self.say_every([AblationChoice(c.sae_id, c.feature, c.pos, "every") for c in switched])
                self.changed("features", "ablation", "tokens")
        self.changed("status", "ablation")

    def toggle_live(self) -> None:
        self.state.live = not self.state.live
        self.changed("status", "ablation")

    def cancel(self) -> None:
        """Cancel every running regeneration, generation and attribution."""
        cancelled = self.cancel_regeneration()
        for w in self.app.workers:
            if w.group in ("generate", "attribute", "density", "peaks") and w.state in (WorkerState.PENDING, WorkerState.RUNNING):
                w.cancel()
                cancelled = True
                self.end_busy()
        if cancelled:
            self.state.regen_state = "cancelled"
            self.changed()

    # --- regeneration ----------------------------------------------------------------------

    def regenerate(self) -> None:
        if self.needs_model("regenerate") or self.no_sample():
            return
        st = self.ws.state(self.state.current)
        if self.state.from_attr and st.sample.structure.attribution_pos is None:
            self.notify("this sample has no attribution position; press R to regenerate from the prompt", severity="error")
            return
        waiting = [c for c in st.choices if c.waiting_for_peak]
        if waiting:
            c = waiting[0]
            self.find_peaks(c.sae_id)  # again if a cancel (escape) stopped the search
            self.notify(
                f"{c.sae_id} f{c.feature}'s relative clamp waits for its maximum activation (being found); r again once the row shows it",
                severity="warning", markup=False,
            )  # fmt: skip
            return
        marker = st.sample.prompt_len - 1
        if not 0 <= marker < len(st.sample.tokens) or st.sample.tokens[marker] != self.lab.ids.item_marker:
            # a session edited by hand or saved with another model's tokens: nothing to regenerate from
            self.notify(f"cannot regenerate: this list's tokens do not match {self.lab.entry.name}'s (no item marker at position {marker})", severity="error")
            return
        self.state.run_id += 1
        rid = self.state.run_id
        self.latency[rid] = {"requested": time.perf_counter()}
        self.state.streaming = None
        self.state.stream_prefix = st.sample.structure.attribution_pos if self.state.from_attr else st.sample.prompt_len
        self.state.regen_state = "regenerating…"
        self.state.run_hidden = False
        self.changed("status", "tokens")
        self.regenerate_worker(self.state.current, rid, st.sample, tuple(st.choices), st.preset, self.state.from_attr)

    @work(thread=True, exclusive=True, exit_on_error=False, group="regenerate", description="Regenerating")
    def regenerate_worker(self, key: str, rid: int, sample: ListSample, choices: tuple, preset: str, from_attr: bool) -> None:
        worker = get_current_worker()
        self.post_message(RegenerationStarted(key, rid))
        prefix = regeneration_prefix(sample, from_attr)
        last = [0.0]

        def on_step(steps: int, tokens: list[list[int]]) -> bool:
            if worker.is_cancelled:
                return True
            now = time.perf_counter()
            # the first token at once, then at most 1 / STREAM_INTERVAL_S updates a second:
            # drawing every step would take the GIL from the sampler (the finished run shows the rest)
            if steps == 1 or now - last[0] >= STREAM_INTERVAL_S:
                last[0] = now
                self.post_message(RegenerationStep(key, rid, prefix + tuple(tokens[0])))
            return False

        try:
            run = ablation_run(
                self.lab, key, sample, choices, preset, from_attr,
                on_step=on_step, base_cache=self.base_cache, cancelled=lambda: worker.is_cancelled,
            )
        except ListerError as exc:
            where = f"tokens[:{sample.structure.attribution_pos}] (the attribution position)" if from_attr else "the prompt"
            self.post_message(
                TaskFailed(
                    "regenerate",
                    f"{exc}. Regeneration starts from {where}; an ablation at a position acts on that prefix only, "
                    "so ablate such a feature at every position (e) instead.",
                    expected=True,
                )
            )
            return
        except Exception as exc:
            self.post_message(TaskFailed.of("regenerate", exc))
            return
        if run is None or worker.is_cancelled:
            self.post_message(RegenerationCancelled(key, rid))
            return
        self.post_message(RegenerationFinished(key, rid, run))

    def on_regeneration_started(self, message: RegenerationStarted) -> None:
        message.stop()

    def on_regeneration_step(self, message: RegenerationStep) -> None:
        message.stop()
        if message.run_id != self.state.run_id or message.key != self.state.current:
            return
        self.state.streaming = message.tokens
        stamps = self.latency.setdefault(message.run_id, {})
        self.changed("stream")
        if "first_token" not in stamps:
            stamps["first_token"] = time.perf_counter()

    def on_regeneration_finished(self, message: RegenerationFinished) -> None:
        message.stop()
        self.ws.record_ablation(message.key, message.run)
        self.changed("runs")
        if message.run_id != self.state.run_id:
            return
        self.latency.setdefault(message.run_id, {})["done"] = time.perf_counter()
        self.state.streaming = None
        n = len(message.run.choices)
        self.state.regen_state = f"regenerated ({n} feature{'' if n == 1 else 's'})" + ("" if self.state.compare else " · d shows it")
        if message.run.zeroed_nothing:
            # not a measured "no effect": nothing was switched off (e.g. a feature chosen where it is 0)
            self.state.regen_state = f"regenerated ({n} feature{'' if n == 1 else 's'}) · the ablation zeroed nothing"
            why = (
                "no feature is chosen"
                if n == 0
                else "every chosen feature's activation is already 0 at the positions it is ablated"
            )
            self.notify(
                f"the ablation zeroed nothing: {why}, so the ablated list is the base's and its deltas are no "
                "measured effect; choose features active in the prefix (the Features tab's activation column), "
                "or ablate one at every position (e)",
                title="Ablation zeroed nothing",
                severity="warning",
                timeout=8,
                markup=False,
            )
        self.state.run_hidden = False
        if message.key == self.state.current:
            self.changed()

    def on_regeneration_cancelled(self, message: RegenerationCancelled) -> None:
        message.stop()
        self.latency.setdefault(message.run_id, {})["cancelled"] = time.perf_counter()
        if message.run_id == self.state.run_id:
            self.state.streaming = None
            self.state.regen_state = "cancelled"
            self.changed()

    def on_task_failed(self, message: TaskFailed) -> None:
        # not stopped: the screen shows the error
        if message.task in ("generate", "attribute"):
            self.end_busy()
        if message.task == "regenerate":
            self.state.streaming = None
            self.state.regen_state = "regeneration failed"
            self.changed()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:  # not caught in the worker: still no traceback on screen
            self.app.push_screen(ErrorScreen(f"{event.worker.description or event.worker.name} failed", f"{type(event.worker.error).__name__}: {event.worker.error}"))

    # --- circuits -----------------------------------------------------------------------

    def open_circuit(self) -> None:
        """Push the circuit screen of the current sample; its toggles and runs are the sample's."""
        from lister_tui.tui.screens.circuit import circuit_screen

        key = self.state.current
        if key is not None and not self.needs_model("find a circuit") and not self.model_busy("find a circuit"):
            circuit_screen(self, self.ws, key, on_close=lambda _: self.changed())

    def open_graph(self) -> None:
        """Push the attribution graph screen of the current sample; its interventions are the sample's."""
        from lister_tui.tui.screens.graph import graph_screen

        key = self.state.current
        if key is not None and not self.needs_model("compute an attribution graph") and not self.model_busy("compute an attribution graph"):
            graph_screen(self, self.app.lab, self.ws.state(key).sample, key, self.ws, on_close=lambda _: self.changed())

    # --- feature cards ------------------------------------------------------------------

    def open_card(self, choice: AblationChoice | None) -> None:
        """Push the card of ``choice``'s feature; its toggles come back through :meth:`toggle_feature`."""
        from lister_tui.tui.screens.feature_card import FeatureCardScreen

        if choice is None:
            self.notify("no feature highlighted: attribute (a), then pick a row in the Features tab", severity="warning")
            return
        key = self.state.current
        card = FeatureCardScreen(
            self.app.lab, choice.sae_id, choice.feature, workspace=self.ws, sample_key=key, on_toggle=self.toggle_feature if key else None
        )
        # a label or a toggle: every pane that names features
        self.app.push_screen(card, lambda changed: changed and self.changed("features", "ablation", "tokens", "status"))

    # --- notes --------------------------------------------------------------------------

    def set_note(self, key: str, text: str) -> None:
        if key in self.ws.samples and text != self.ws.state(key).note:
            self.ws.set_note(key, text)
            self.notify("note kept" + (" (saved with the session)" if self.app.session is not None else ""), timeout=2)

    def set_session_notes(self, text: str) -> None:
        if text != self.ws.notes:
            self.ws.set_notes(text)
            self.notify("session notes kept", timeout=2)


def batch_attributed(n_done: int, n_samples: int, n_saes: int) -> str:
    """What A did: how many samples it attributed, which it skipped, and where the result shows."""
    skipped = n_samples - n_done
    why = f"; {skipped} without a complete item skipped" if skipped else ""
    return (
        f"attributed {n_done} of {n_samples} samples with {n_saes} SAEs{why}: "
        "t shows the dataset ranking, x the expression matrix"
    )
