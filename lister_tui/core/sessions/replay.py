"""Replay a session: regenerate every saved list from its seed and compare token ids.

Each sample is sampled again from its prompt (or its saved prefix) with its own
seed and the sampling values the session recorded; each run's base and ablated
regenerations are redone from the same prefix, under the same ablation. With the
same model weights and package versions every list must come out identical, token
for token; anything else is reported as a :class:`Mismatch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from lister_tui.core.engine.generation import ListSample, sample_lists
from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.engine.sampling import SamplingSettings
from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.workspace import Workspace, to_ablation
from lister_tui.core.study.experiment import regeneration_prefix
from lister_tui.core.study.settings import SAMPLING_PRESETS


@dataclass(frozen=True)
class Mismatch:
    key: str
    what: str  # "sample", "run 0 base", "run 0 ablated"
    position: int | None  # first differing token position (None: same tokens, other difference)
    saved: tuple[int, ...]
    replayed: tuple[int, ...]

    def describe(self, to_str: Callable[[list[int]], list[str]] | None = None) -> str:
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


def replay(
    loaded: LoadedModel,
    ws: Workspace,
    recorded_sampling: dict | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> ReplayReport:
    """Regenerate every list of ``ws`` and compare; ``on_progress(done, total, what)``."""
    check_replayable(loaded, ws, recorded_sampling)
    report = ReplayReport()
    total = sum(1 + 2 * len(st.runs) for st in ws.samples.values())
    done = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total, what)

    for key, st in ws.samples.items():
        s = st.sample
        settings = settings_for(st.preset, recorded_sampling)
        prefixes = None if s.prefix_len is None else [list(s.tokens[: s.prefix_len])]
        again = sample_lists(loaded, [s.spec], settings, prefixes=prefixes)[0]
        _compare(report, key, "sample", s, again)
        step(f"{key} sample")
        for i, run in enumerate(st.runs):
            run_settings = settings_for(run.preset, recorded_sampling)
            prefix = regeneration_prefix(s, run.from_attribution_pos)
            base = sample_lists(loaded, [s.spec], run_settings, prefixes=[prefix])[0]
            _compare(report, key, f"run {i} base", run.base, base)
            step(f"{key} run {i} base")
            ablated = sample_lists(loaded, [s.spec], run_settings, prefixes=[prefix], ablation=to_ablation(run.choices))[0]
            _compare(report, key, f"run {i} ablated", run.ablated, ablated)
            step(f"{key} run {i} ablated")
    return report
