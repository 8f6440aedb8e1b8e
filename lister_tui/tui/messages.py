"""Messages posted by the explorer's workers (from threads) to its screens."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from lister_tui.core.engine.generation import ListSample
from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.workspace import AblationRun
from lister_tui.core.study.cards import FeatureCard
from lister_tui.core.study.experiment import SAEListAttribution


@dataclass
class GenerationProgress(Message):
    """A batch generation advanced: ``done`` of ``total`` token steps (an estimate)."""

    done: float
    total: float

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GenerationProgress)


@dataclass
class SamplesGenerated(Message):
    samples: list[ListSample]
    preset: str


@dataclass
class CurveReady(Message):
    key: str
    curve: tuple[float, ...]


@dataclass
class DensitiesReady(Message):
    """Every feature's density of one SAE over the cards' corpus (the features table's density option)."""

    sae_id: str
    sample_keys: frozenset
    densities: object  # numpy array [d_sae]


@dataclass
class PeaksReady(Message):
    """Every feature's maximum activation of one SAE over the cards' corpus (relative clamps)."""

    sae_id: str
    corpus: str
    peaks: object  # numpy array [d_sae]


@dataclass
class AttributionReady(Message):
    keys: list[str]
    by_sae: dict[str, SAEListAttribution]
    batch: bool


@dataclass
class RegenerationStarted(Message):
    key: str
    run_id: int


@dataclass
class RegenerationStep(Message):
    """Tokens of the ablated regeneration so far (prefix included)."""

    key: str
    run_id: int
    tokens: tuple[int, ...]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RegenerationStep) and message.run_id == self.run_id


@dataclass
class RegenerationFinished(Message):
    key: str
    run_id: int
    run: AblationRun


@dataclass
class RegenerationCancelled(Message):
    key: str
    run_id: int


@dataclass
class CardProgress(Message):
    """A feature card's corpus pass advanced: ``done`` of ``total`` tokens."""

    done: int
    total: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, CardProgress)


@dataclass
class CardReady(Message):
    card: FeatureCard


@dataclass
class TaskFailed(Message):
    """A worker failed: ``expected`` errors (bad input) become a notification, others a modal."""

    task: str
    error: str
    expected: bool

    @classmethod
    def of(cls, task: str, exc: BaseException) -> TaskFailed:
        """A ListerError is bad input (expected, its message as is); anything else is a bug."""
        if isinstance(exc, ListerError):
            return cls(task, str(exc), expected=True)
        return cls(task, f"{type(exc).__name__}: {exc}", expected=False)


@dataclass
class SessionSaved(Message):
    """An autosave (or save-as) finished: the session's folder and the revision written."""

    path: str
    revision: int
    workspace_revision: int


@dataclass
class SessionSaveFailed(Message):
    path: str
    error: str
    conflict: bool


@dataclass
class SessionOpened(Message):
    """A session was read (in a worker) and paired with a model: a SessionView."""

    view: object


@dataclass
class ExportDone(Message):
    folder: str
    files: list[str]


@dataclass
class ExplorerChanged(Message):
    """The explorer's state or workspace changed: redraw these parts of the main screen.

    Parts: "status", "progress", "samples", "runs" (a sample's run count), "tokens",
    "stream" (the streaming regeneration only), "metric", "features", "ablation".
    """

    parts: frozenset[str]


@dataclass
class CircuitProgress(Message):
    """The circuit worker reached a step (node effects, edges into a site, a faithfulness point)."""

    text: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, CircuitProgress)


@dataclass
class CircuitReady(Message):
    """A circuit was found (``report``: the site report's rows)."""

    key: str
    circuit: object  # lister_tui.core.study.circuits.Circuit
    report: list[dict]


@dataclass
class CircuitRegenerated(Message):
    """The list regenerated under the nodes toggled into the ablation."""

    key: str
    run: AblationRun


@dataclass
class ExperimentProgress(Message):
    """A batch experiment's rows so far (a worker posts it after every chunk, and once at the end)."""

    experiment: object  # core.study.intervention_batch.BatchExperiment (its rows only grow)
    done: bool = False


@dataclass
class GraphProgress(Message):
    """The attribution graph's worker reached a step (the estimate, backward pass ``done`` of ``total``)."""

    text: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GraphProgress)


@dataclass
class GraphReady(Message):
    """An attribution graph was computed (``entry``: the graph screen's cache entry)."""

    entry: object  # lister_tui.tui.screens.graph.CachedGraph


@dataclass
class GraphPruned(Message):
    """The graph was pruned at new thresholds (``view``: core.study.graphs.view.GraphView)."""

    view: object


@dataclass
class GraphDetail(Message):
    """Head shares ({(target, source): per-head parts}) or checks ({node: check row}) came in."""

    heads: dict
    checks: dict
