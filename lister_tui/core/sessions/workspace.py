"""What an exploration holds: samples, their attributions, ablations tried, notes.

A plain data model with no UI: the explorer keeps one :class:`Workspace` and renders
from it, and a session file can save and restore it. Nothing here runs the model;
the numbers stored come from the engine (generation, experiment) and are kept as
returned, so whatever shows them shows the engine's figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterable, Literal, Sequence

import numpy as np

from lister_tui.core.engine.ablation import EVERY_POSITION, Ablation, FeatureAblation
from lister_tui.core.engine.interventions import Intervention, InterventionSet
from lister_tui.core.engine.generation import ListSample
from lister_tui.core.errors import ListerError
from lister_tui.core.study.circuits.graph import Circuit
from lister_tui.core.study.graphs.record import GraphRecord
from lister_tui.core.study.experiment import AblationOutcome, SAEListAttribution, select_samples

if TYPE_CHECKING:  # its module runs the model (torch); sessions are read without it
    from lister_tui.core.study.intervention_batch import BatchExperiment

LABEL_MAX_CHARS = 200


_SITE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def check_site_id(sae_id: str) -> bool:
    """True for a short SAE id (letters, digits, _ . -, not starting with a dot): never a path."""
    return bool(_SITE_ID.match(sae_id)) and ".." not in sae_id


def one_line(text: str) -> str:
    """A label as stored: line breaks and tabs become spaces, ends trimmed, at most LABEL_MAX_CHARS."""
    for ch in "\r\n\t":
        text = text.replace(ch, " ")
    return text.strip()[:LABEL_MAX_CHARS]


DELTA_METRICS: tuple[str, ...] = ("n_items", "n_tokens", "repeated_items", "diversity", "metric_at_attribution")

AblationMode = Literal["position", "every"]


def sample_key(sample: ListSample) -> str:
    """A stable name for a sample: template/topic/index and its seed."""
    return f"{sample.spec.key}@{sample.spec.seed}"


@dataclass(frozen=True)
class AblationChoice:
    """One feature intervened on (switched off by default): at its attributed position, or at every position."""

    sae_id: str
    feature: int
    pos: int  # the attributed position (kept in "every" mode, to show where it came from)
    mode: AblationMode = "position"
    kind: str = "zero"  # zero | scale | clamp | steer (core.engine.interventions)
    value: float = 0.0  # k for scale, the value for clamp, c for steer

    def to_intervention(self) -> Intervention:
        return Intervention(self.sae_id, self.feature, self.kind, float(self.value), "all" if self.mode == "every" else self.pos)

    def kind_text(self) -> str:
        """``zero``, ``×0.5``, ``=3``, ``+2`` (literal characters only)."""
        if self.kind == "scale":
            return f"×{self.value:g}"
        if self.kind == "clamp":
            return f"={self.value:g}"
        if self.kind == "steer":
            return f"{self.value:+g}"
        return "zero"

    @property
    def ident(self) -> tuple[str, int, int]:
        return (self.sae_id, self.feature, self.pos)

    def to_feature_ablation(self) -> FeatureAblation:
        positions = EVERY_POSITION if self.mode == "every" else (self.pos,)
        return FeatureAblation(self.sae_id, self.feature, positions)


def to_ablation(choices: Iterable[AblationChoice]) -> Ablation:
    """The zero-ablation of the choices (their kinds aside: see :func:`to_interventions`)."""
    return Ablation(tuple(c.to_feature_ablation() for c in choices))


def to_interventions(choices: Iterable[AblationChoice], name: str = "") -> InterventionSet:
    """The choices as an intervention set, each with its kind and value."""
    return InterventionSet(tuple(c.to_intervention() for c in choices), name)


def only_zeroes(choices: Iterable[AblationChoice]) -> bool:
    """Every choice zeroes its feature (the plain ablation)."""
    return all(c.kind == "zero" for c in choices)


# the order k cycles kinds in, and the value a kind starts from
KIND_CYCLE: tuple[str, ...] = ("zero", "scale", "clamp", "steer")
KIND_DEFAULT_VALUE = {"zero": 0.0, "scale": 0.5, "clamp": 0.0, "steer": 2.0}
KIND_STEP = {"zero": 0.0, "scale": 0.25, "clamp": 0.5, "steer": 0.5}


@dataclass(frozen=True)
class AblationRun:
    """One regeneration of a sample under a set of choices, and its unablated twin."""

    sample_key: str
    choices: tuple[AblationChoice, ...]
    from_attribution_pos: bool
    preset: str
    base: ListSample  # regenerated from the same prefix and seed, no ablation
    ablated: ListSample
    base_curve: tuple[float, ...]  # metric at every position of base.tokens
    ablated_curve: tuple[float, ...]  # metric at every position of ablated.tokens, ablation applied
    # The metric at the sample's own attribution position on its original tokens, without
    # and with the ablation (a real forward pass each: the ablation's direct effect).
    metric_before: float | None = None
    metric_under_ablation: float | None = None
    # Non-zero feature activations the ablation zeroed while the ablated list was scored
    # (its prefix and, for "every" choices, its new tokens). 0: the ablation changed nothing,
    # every chosen feature was already 0 where it applied. None: not recorded (older sessions).
    activations_zeroed: int | None = None

    @property
    def zeroed_nothing(self) -> bool:
        """The ablation switched nothing off (no choice, or every chosen feature 0 where it applied)."""
        return self.activations_zeroed == 0

    @property
    def ablation(self) -> Ablation:
        return to_ablation(self.choices)

    def outcome(self, index: int = 0) -> AblationOutcome:
        return AblationOutcome(index, self.ablation, self.base, self.ablated)

    def deltas(self) -> dict[str, tuple[float | None, float | None, float | None]]:
        """Per metric of :data:`DELTA_METRICS`: (base, ablated, ablated − base)."""
        out = {}
        outcome = self.outcome()
        for name in DELTA_METRICS:
            b, a = getattr(self.base.metrics, name), getattr(self.ablated.metrics, name)
            delta = outcome.delta(name) if a is not None and b is not None else None
            out[name] = (b, a, delta)
        return out


@dataclass
class SampleState:
    sample: ListSample
    preset: str
    curve: tuple[float, ...] | None = None  # metric at every position of sample.tokens
    attribution: dict[str, SAEListAttribution] | None = None  # per SAE, over this one sample
    choices: list[AblationChoice] = field(default_factory=list)  # the ablation being edited
    runs: list[AblationRun] = field(default_factory=list)
    note: str = ""


@dataclass
class BatchAttribution:
    """An attribution over several samples, for dataset rankings and expression matrices."""

    keys: list[str]
    by_sae: dict[str, SAEListAttribution]


@dataclass
class Workspace:
    """Everything one exploration produced, keyed by :func:`sample_key`."""

    model_name: str
    samples: dict[str, SampleState] = field(default_factory=dict)
    batch: BatchAttribution | None = None
    notes: str = ""
    # the user's one-line names of features: (sae_id, feature) -> label
    labels: dict[tuple[str, int], str] = field(default_factory=dict)
    circuits: list[Circuit] = field(default_factory=list)  # every circuit found, oldest first
    experiments: list[BatchExperiment] = field(default_factory=list)  # every batch experiment, oldest first
    graphs: list[GraphRecord] = field(default_factory=list)  # every attribution graph saved, oldest first
    # samples the user removed, with everything they held: kept in the session (written with
    # a ``removed`` flag) so that a removal can be undone, even after a save
    removed: dict[str, SampleState] = field(default_factory=dict)
    # bumped by every change made through the methods below, so that a session can
    # autosave after each change (and coalesce a burst of them into one save)
    revision: int = field(default=0, compare=False)

    def touch(self) -> None:
        """Record a change made outside the methods below (e.g. editing a SampleState in place)."""
        self.revision += 1

    # --- samples ---------------------------------------------------------------

    def add_samples(self, samples: Sequence[ListSample], preset: str) -> list[str]:
        """Add a batch; returns its keys in order.

        A session only grows: a sample whose key (template/topic/index and seed) is already
        here keeps its state (attributions, choices, runs, note), and one that was removed
        comes back with its own. Only new keys get a fresh state."""
        keys = []
        for s in samples:
            key = sample_key(s)
            if key in self.removed:
                self.samples[key] = self.removed.pop(key)
            elif key not in self.samples:
                self.samples[key] = SampleState(s, preset)
            keys.append(key)
        self.touch()
        return keys

    def remove_sample(self, key: str) -> SampleState:
        """Take a sample out of view (the user asked); kept in :attr:`removed` for :meth:`restore_sample`."""
        st = self.state(key)
        del self.samples[key]
        self.removed[key] = st
        self.touch()
        return st

    def restore_sample(self, key: str | None = None) -> str | None:
        """Bring back a removed sample (the last removed one by default); returns its key."""
        if key is None:
            key = next(reversed(self.removed), None) if self.removed else None
        if key is None or key not in self.removed:
            return None
        self.samples[key] = self.removed.pop(key)
        self.touch()
        return key

    def state(self, key: str) -> SampleState:
        try:
            return self.samples[key]
        except KeyError:
            raise ListerError(f"no sample {key!r} in this workspace") from None

    def keys(self) -> list[str]:
        return list(self.samples)

    def set_curve(self, key: str, curve: Sequence[float]) -> None:
        self.state(key).curve = tuple(float(v) for v in curve)
        self.touch()

    def set_note(self, key: str, text: str) -> None:
        self.state(key).note = text
        self.touch()

    def set_notes(self, text: str) -> None:
        """The session's own notes (not tied to a sample)."""
        self.notes = text
        self.touch()

    # --- feature labels ----------------------------------------------------------

    def label(self, sae_id: str, feature: int) -> str:
        """The user's name for a feature ("" when it has none)."""
        return self.labels.get((sae_id, int(feature)), "")

    def set_label(self, sae_id: str, feature: int, text: str) -> str:
        """Name a feature (one line, at most LABEL_MAX_CHARS); an empty text removes the label. Returns
        the label kept. A feature outside [0, 2^22) or an SAE id that is not a short id is refused."""
        from lister_tui.core.limits import MAX_D_SAE

        if not isinstance(sae_id, str) or not check_site_id(sae_id):
            raise ListerError(f"cannot label a feature of SAE {str(sae_id)[:60]!r}: not an SAE id (letters, digits, _ . -)")
        if isinstance(feature, bool) or not isinstance(feature, (int, np.integer)) or not 0 <= feature < MAX_D_SAE:
            raise ListerError(f"cannot label feature {feature!r} of {sae_id}: valid features are 0..{MAX_D_SAE - 1}")
        text = one_line(text)
        key = (sae_id, int(feature))
        if text:
            self.labels[key] = text
        else:
            self.labels.pop(key, None)
        self.touch()
        return text

    # --- attribution -----------------------------------------------------------

    def set_attribution(self, key: str, by_sae: dict[str, SAEListAttribution]) -> None:
        """Attribution of one sample (each SAEListAttribution covers that sample alone)."""
        self.state(key).attribution = dict(by_sae)
        self.touch()

    def set_batch_attribution(self, keys: Sequence[str], by_sae: dict[str, SAEListAttribution]) -> None:
        """Attribution over ``keys`` (in that order); also fills each sample's own attribution."""
        self.batch = BatchAttribution(list(keys), dict(by_sae))
        for i, key in enumerate(keys):
            self.set_attribution(key, {sae: select_samples(attr, [i]) for sae, attr in by_sae.items()})

    # --- circuits --------------------------------------------------------------

    def add_circuit(self, circuit: Circuit) -> int:
        """Keep a circuit (settings and results); returns its index. Circuits are only added."""
        self.circuits.append(circuit)
        self.touch()
        return len(self.circuits) - 1

    def add_experiment(self, experiment: BatchExperiment) -> int:
        """Keep a batch experiment (finished or stopped); returns its index. Experiments are only added."""
        self.experiments.append(experiment)
        self.touch()
        return len(self.experiments) - 1

    def add_graph(self, record: GraphRecord) -> int:
        """Keep an attribution graph of one of the session's samples; returns its index. Graphs are only added."""
        if record.sample not in self.samples and record.sample not in self.removed:
            raise ListerError(f"no sample {record.sample!r} in this session; add the sample before its graph")
        self.graphs.append(record)
        self.touch()
        return len(self.graphs) - 1

    def graphs_of(self, key: str) -> list[GraphRecord]:
        """The saved graphs of ``key``'s sample, oldest first."""
        return [g for g in self.graphs if g.sample == key]

    def set_choice(self, key: str, choice: AblationChoice) -> None:
        """Replace the choice of the same feature and position (its kind, value or mode changed)."""
        choices = self.state(key).choices
        for i, c in enumerate(choices):
            if c.ident == choice.ident:
                choices[i] = choice
                self.touch()
                return
        raise ListerError(f"{choice.sae_id} f{choice.feature} @{choice.pos} is not in the ablation of {key}")

    def circuits_of(self, key: str) -> list[Circuit]:
        """The circuits whose samples include ``key``'s sample."""
        spec_key = self.state(key).sample.spec.key
        return [c for c in self.circuits if spec_key in c.samples]

    # --- ablation --------------------------------------------------------------

    def find_choice(self, key: str, ident: tuple[str, int, int]) -> AblationChoice | None:
        return next((c for c in self.state(key).choices if c.ident == ident), None)

    def toggle(self, key: str, choice: AblationChoice) -> bool:
        """Switch ``choice`` on (True) or, if the same feature at the same position is on, off (False)."""
        choices = self.state(key).choices
        existing = self.find_choice(key, choice.ident)
        self.touch()
        if existing is not None:
            choices.remove(existing)
            return False
        choices.append(choice)
        return True

    def set_mode(self, key: str, ident: tuple[str, int, int], mode: AblationMode) -> AblationChoice | None:
        choices = self.state(key).choices
        for i, c in enumerate(choices):
            if c.ident == ident:
                choices[i] = replace(c, mode=mode)
                self.touch()
                return choices[i]
        return None

    def clear_choices(self, key: str) -> None:
        self.state(key).choices.clear()
        self.touch()

    def current_ablation(self, key: str) -> Ablation:
        return to_ablation(self.state(key).choices)

    def record_ablation(self, key: str, run: AblationRun) -> None:
        self.state(key).runs.append(run)
        self.touch()

    def latest_run(self, key: str) -> AblationRun | None:
        runs = self.state(key).runs
        return runs[-1] if runs else None
