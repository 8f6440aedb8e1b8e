"""Replay a session: regenerate every saved list from its seed and compare token ids.

Each sample is sampled again from its prompt (or its saved prefix) with its own
seed and the sampling values the session recorded; each run's base and ablated
regenerations are redone from the same prefix, under the same ablation. With the
same model weights and package versions every list must come out identical, token
for token; anything else is reported as a :class:`Mismatch`. Lists are sampled in
batches, as the explorer's first sampling does (``bench`` compares a replay with that
sampling).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from lister_tui.core.engine.ablation import Ablation
from lister_tui.core.engine.generation import ListSample, sample_lists
from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.engine.prompts import PromptSpec
from lister_tui.core.engine.sampling import SamplingSettings
from lister_tui.core.errors import ListerError
from lister_tui.core.engine.interventions import InterventionSet
from lister_tui.core.sessions.workspace import Workspace, only_zeroes, to_ablation, to_interventions
from lister_tui.core.study.experiment import regeneration_prefix
from lister_tui.core.study.settings import SAMPLING_PRESETS


@dataclass(frozen=True)
class Mismatch:
    key: str
    what: str  # "sample", "run 0 base", "run 0 ablated"
    position: int | None  # first differing token position (None: same tokens, other difference)
    saved: tuple[int, ...]
    replayed: tuple[int, ...]
    cause: str = ""  # for "prompt": what the prompt was rebuilt from
    not_replayed: int = 0  # lists of this sample left out because of this mismatch

    def describe(self, to_str: Callable[[list[int]], list[str]] | None = None) -> str:
        if self.what == "prompt":
            p = self.position
            a = self.saved[p] if p is not None and p < len(self.saved) else None
            b = self.replayed[p] if p is not None and p < len(self.replayed) else None
            if to_str is not None:
                a = "end" if a is None else repr(to_str([a])[0])
                b = "end" if b is None else repr(to_str([b])[0])
            return (
                f"{self.key} prompt: the saved prompt ({len(self.saved)} tokens) is not the one {self.cause} gives "
                f"({len(self.replayed)} tokens; first differs at position {p}: saved {a}, rebuilt {b}); "
                f"the template or topic was edited (or this lister-tui builds prompts differently), "
                f"so its {self.not_replayed} list(s) were not replayed"
            )
        if self.position is None:
            return f"{self.key} {self.what}: {len(self.saved)} tokens saved, {len(self.replayed)} replayed"
        p = self.position
        a = self.saved[p] if p < len(self.saved) else None
        b = self.replayed[p] if p < len(self.replayed) else None
        if to_str is not None:
            a = "end" if a is None else repr(to_str([a])[0])
            b = "end" if b is None else repr(to_str([b])[0])
        return f"{self.key} {self.what}: first differs at position {p} (saved {a}, replayed {b})"


@dataclass
class ReplayReport:
    checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def settings_for(preset: str, recorded: dict | None) -> SamplingSettings:
    """The sampling values a session recorded for ``preset`` (else the preset's current values)."""
    values = (recorded or {}).get(preset)
    if values:
        return SamplingSettings(**values)
    if preset not in SAMPLING_PRESETS:
        raise ListerError(f"the session uses sampling preset {preset!r}, which this lister-tui does not know and the manifest does not record")
    return SAMPLING_PRESETS[preset]


def _first_difference(a: tuple[int, ...], b: tuple[int, ...]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _compare(report: ReplayReport, key: str, what: str, saved: ListSample, replayed: ListSample) -> None:
    report.checked += 1
    if saved.tokens != replayed.tokens:
        report.mismatches.append(Mismatch(key, what, _first_difference(saved.tokens, replayed.tokens), saved.tokens, replayed.tokens))


def check_replayable(loaded: LoadedModel, ws: Workspace, recorded_sampling: dict | None = None) -> None:
    """Before any sampling: every saved token id within the model's vocabulary, every template known,
    every preset's sampling values valid (a session from elsewhere may hold anything)."""
    from lister_tui.core.engine.prompts import template_text

    d_vocab = getattr(getattr(loaded.model, "cfg", None), "d_vocab", None)
    for key, st in ws.samples.items():
        template_text(st.sample.spec.template, "")  # "unknown template ..."
        settings_for(st.preset, recorded_sampling)
        sides = [("sample", st.sample)] + [(f"run {i} {side}", getattr(r, side)) for i, r in enumerate(st.runs) for side in ("base", "ablated")]
        for what, s in sides:
            bad = [t for t in s.tokens if d_vocab is not None and not 0 <= t < d_vocab]
            if bad:
                raise ListerError(
                    f"{key} {what}: token id {bad[0]} is outside {loaded.entry.name}'s vocabulary (0 to {d_vocab - 1}); "
                    "the session was made with another model or is damaged"
                )


@dataclass(frozen=True)
class _Job:
    """One list to sample again: where its result is compared, and how it is sampled."""

    key: str
    what: str  # "sample", "run 0 base", "run 0 ablated"
    saved: ListSample
    spec: PromptSpec
    settings: SamplingSettings
    prefix: tuple[int, ...] | None  # None: from the prompt (built again from the template)
    ablation: Ablation | InterventionSet  # a run that scales, clamps, steers or changes a transcoder feature: its interventions

    @property
    def identity(self) -> tuple:
        """Jobs with the same identity sample the same tokens (e.g. the base of two runs of a sample)."""
        return (self.spec, self.settings, self.prefix, self.ablation)


def prompt_mismatches(loaded: LoadedModel, ws: Workspace) -> list[Mismatch]:
    """Samples whose saved prompt is not the prompt their template and topic give now (a session whose
    topic or template was edited): one mismatch each, and none of their lists can be replayed."""
    from lister_tui.core.engine.prompts import prompt_ids

    out = []
    for key, st in ws.samples.items():
        s = st.sample
        saved = tuple(s.tokens[: s.prompt_len])
        rebuilt = tuple(prompt_ids(loaded, s.spec.template, s.spec.topic))
        if saved != rebuilt:
            cause = f"template {s.spec.template!r} with topic {s.spec.topic!r}"
            out.append(Mismatch(key, "prompt", _first_difference(saved, rebuilt), saved, rebuilt, cause, 1 + 2 * len(st.runs)))
    return out


def _jobs(ws: Workspace, recorded_sampling: dict | None, skip: set[str] = frozenset()) -> list[_Job]:
    """Every list of ``ws`` to replay, in report order: each sample, then its runs' base and ablated."""
    jobs = []
    for key, st in ws.samples.items():
        if key in skip:
            continue
        s = st.sample
        prefix = None if s.prefix_len is None else tuple(s.tokens[: s.prefix_len])
        jobs.append(_Job(key, "sample", s, s.spec, settings_for(st.preset, recorded_sampling), prefix, Ablation()))
        for i, run in enumerate(st.runs):
            settings = settings_for(run.preset, recorded_sampling)
            start = tuple(regeneration_prefix(s, run.from_attribution_pos))
            jobs.append(_Job(key, f"run {i} base", run.base, s.spec, settings, start, Ablation()))
            how = to_ablation(run.choices) if only_zeroes(run.choices) else to_interventions(run.choices)  # as ablation_run chose
            jobs.append(_Job(key, f"run {i} ablated", run.ablated, s.spec, settings, start, how))
    return jobs


def _finished(tokens: list[int], stops: set[int], cap: int) -> bool:
    return bool(tokens) and (tokens[-1] in stops or len(tokens) >= cap)


def replay(
    loaded: LoadedModel,
    ws: Workspace,
    recorded_sampling: dict | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> ReplayReport:
    """Regenerate every list of ``ws`` and compare; ``on_progress(done, total, what)`` as lists finish.

    Lists are sampled in batches, as the explorer samples them: one :func:`sample_lists` call per
    (sampling values, ablation, from the prompt or from a prefix), in which lists of equal prefix
    length share a batch. A list's tokens depend only on its prefix, seed, ablation and the model,
    not on its batch (``generate``'s common random numbers; tests/test_sampling.py and
    tests/test_replay_batched.py check batched against one by one), so the batches only save
    time. A list asked for twice (the base of two runs from the same prefix) is sampled once.
    A list that differs in its batch is sampled once more alone before it is reported, so a
    float rounding that depends on the batch size (possible on a GPU) is never the reason.
    A sample whose saved prompt is not the one its template and topic give (the session was
    edited) is reported as a "prompt" mismatch and its lists are not sampled.
    """
    check_replayable(loaded, ws, recorded_sampling)
    edited = prompt_mismatches(loaded, ws)
    jobs = _jobs(ws, recorded_sampling, {m.key for m in edited})
    total = len(jobs)
    unique: dict[tuple, list[int]] = {}  # identity -> indices of the jobs it answers
    for i, job in enumerate(jobs):
        unique.setdefault(job.identity, []).append(i)
    groups: dict[tuple, list[tuple]] = {}  # (settings, ablation, from the prompt) -> identities
    for identity in unique:
        spec, settings, prefix, ablation = identity
        groups.setdefault((settings, ablation, prefix is None), []).append(identity)
    stops = set(loaded.ids.stops)
    replayed: dict[tuple, ListSample] = {}
    done = 0

    def report_done(indices: list[int]) -> None:
        nonlocal done
        for i in indices:
            done += 1
            if on_progress is not None:
                on_progress(done, total, f"{jobs[i].key} {jobs[i].what}")

    for (settings, ablation, from_prompt), identities in groups.items():
        reported = [False] * len(identities)

        def on_step(steps: int, tokens: list[list[int]], identities=identities, reported=reported, cap=settings.max_new_tokens) -> bool:
            # progress per list as it finishes: a batch of 24 lists is one call
            for row, toks in enumerate(tokens):
                if not reported[row] and _finished(toks, stops, cap):
                    reported[row] = True
                    report_done(unique[identities[row]])
            return False

        out = sample_lists(
            loaded,
            [identity[0] for identity in identities],
            settings,
            prefixes=None if from_prompt else [list(identity[2]) for identity in identities],
            **_under(ablation),
            on_step=on_step if on_progress is not None else None,
        )
        for row, (identity, sample) in enumerate(zip(identities, out)):
            replayed[identity] = sample
            if not reported[row]:  # cancelled or never stepped (max_new_tokens 0 is refused; kept for safety)
                report_done(unique[identity])
    report = ReplayReport(checked=len(edited), mismatches=list(edited))
    for job in jobs:
        again = replayed[job.identity]
        if again.tokens != job.saved.tokens:
            # Sampled again alone, as the explorer regenerates a run: on hardware whose kernels round
            # differently by batch size, the batch must not be what makes a list differ.
            again = _alone(loaded, job)
        _compare(report, job.key, job.what, job.saved, again)
    return report


def _alone(loaded: LoadedModel, job: _Job) -> ListSample:
    return sample_lists(
        loaded,
        [job.spec],
        job.settings,
        prefixes=None if job.prefix is None else [list(job.prefix)],
        **_under(job.ablation),
    )[0]


def _under(how: Ablation | InterventionSet) -> dict:
    """``sample_lists``'s keyword for a job's ablation or interventions (none when empty)."""
    if how.is_empty():
        return {}
    return {"interventions": how} if isinstance(how, InterventionSet) else {"ablation": how}
