"""Timing, ratios with their spread, verdicts, the machine and the report: what every comparison shares.

Timing on a shared machine. Variants run side by side in one process, interleaved,
with the order reversed every other round (A B, B A, …) so that a change in load or
a drift hits every variant alike. Each variant runs once first as a warm-up whose time
is discarded (caches, allocator, lazy initialisation). The reported time is the
*minimum* over the rounds: other processes only ever add time, so the least-disturbed
run is the best estimate of what the code costs; the median, min–max and the
coefficient of variation (CV = standard deviation / mean) stand beside it.

Ratios. A ratio of two variants is estimated as the ratio of their minima. Its spread
comes from the *paired* ratios: round r's ratio uses the two variants' times from the
same round, run back to back under about the same load, so a slow round moves both.
With n paired ratios the range is that of the paired ratios after dropping the
⌊n/5⌋ lowest and ⌊n/5⌋ highest (with 5–9 rounds, one at each end: one disturbed
round can't widen it), stretched to include the estimate.

Verdicts. For a target "≥ T": **met** when the whole range is ≥ T, **missed** when the
whole range is < T, **unresolved** when the range straddles T (lower end < T ≤ upper
end); for "≤ T" mirrored. An unresolved verdict says the machine's noise is larger
than the margin: rerun on a quieter machine, or with more repeats, rather than believe
either side.
"""

from __future__ import annotations

import csv
import gc
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from lister_tui.organism.build import cpu_model


@dataclass(frozen=True)
class Timing:
    """The seconds of each measured round (warm-up excluded), in round order."""

    seconds: tuple[float, ...]
    warmup_seconds: float = math.nan
    peak_bytes: int | None = None  # peak memory of the warm-up run over what was allocated before it
    load: tuple[float, float] = (math.nan, math.nan)  # 1-minute load average before and after the rounds

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def low(self) -> float:
        return min(self.seconds)

    @property
    def high(self) -> float:
        return max(self.seconds)

    @property
    def cv(self) -> float:
        """Coefficient of variation of the rounds (0 with a single round)."""
        if len(self.seconds) < 2:
            return 0.0
        return statistics.stdev(self.seconds) / statistics.fmean(self.seconds)

    @property
    def n(self) -> int:
        return len(self.seconds)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def load_average() -> float:
    """The machine's 1-minute load average (nan where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return math.nan


def _trim() -> None:
    """glibc's malloc_trim(0): free pages go back to the OS (nothing where there is no glibc)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory in use between start() and stop(), over the amount in use at start().

    CUDA: ``torch.cuda.max_memory_allocated`` after a reset (exact, the caching
    allocator's own count). CPU: the resident set sampled every millisecond by a thread
    (torch releases the GIL inside its ops), which also counts the allocator's reuse
    and is coarse: use it only where tens of MiB don't matter. Before it starts, glibc is
    asked to hand freed memory back (``malloc_trim``), or a variant run after a bigger one
    would reuse pages already resident and show a peak near zero.
    """

    def __init__(self, device: str):
        self.device = device

    def start(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return
        import threading

        _trim()
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.base = self.peak = self._rss()
        self.running = True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _poll(self) -> None:
        while self.running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.001)

    def stop(self) -> int:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.base
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self._rss())
        return self.peak - self.base


def time_side_by_side(
    variants: dict[str, Callable[[], object]],
    repeats: int,
    device: str = "cpu",
    *,
    budget_s: float | None = None,
    min_repeats: int = 3,
    track_memory: bool = False,
) -> dict[str, Timing]:
    """One discarded warm-up of each variant, then up to ``repeats`` interleaved rounds.

    With ``budget_s``, the rounds are cut so that warm-up plus rounds fit in it, judged
    from the warm-up's duration, but never below ``min_repeats`` (nor above
    ``repeats``): a slow comparison gets fewer rounds, and the count is reported.
    ``track_memory`` measures each variant's peak memory during its warm-up run (so
    the sampling thread or the reset can't disturb a timed round).
    """
    load_before = load_average()
    warmup: dict[str, float] = {}
    peaks: dict[str, int | None] = {}
    for name, fn in variants.items():
        gc.collect()
        meter = PeakMemory(device) if track_memory else None
        if meter:
            meter.start()
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        warmup[name] = time.perf_counter() - start
        peaks[name] = meter.stop() if meter else None
    rounds = repeats
    if budget_s is not None:
        per_round = sum(warmup.values())  # a warm-up is at least as slow as a round
        rounds = max(min(repeats, min_repeats), min(repeats, int((budget_s - per_round) / max(per_round, 1e-9))))
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for r in range(rounds):
        for name in order if r % 2 == 0 else reversed(order):
            gc.collect()
            _sync(device)
            start = time.perf_counter()
            variants[name]()
            _sync(device)
            seconds[name].append(time.perf_counter() - start)
    load = (load_before, load_average())
    return {name: Timing(tuple(values), warmup[name], peaks[name], load) for name, values in seconds.items()}


@dataclass(frozen=True)
class Ratio:
    """numerator / denominator from paired rounds: estimate (ratio of minima) and range."""

    estimate: float
    low: float
    high: float
    paired: tuple[float, ...]

    @classmethod
    def of(cls, numerator: Timing, denominator: Timing) -> Ratio:
        paired = tuple(sorted(a / b for a, b in zip(numerator.seconds, denominator.seconds)))
        estimate = numerator.best / denominator.best
        drop = len(paired) // 5
        kept = paired[drop : len(paired) - drop] or paired
        return cls(estimate, min(kept[0], estimate), max(kept[-1], estimate), paired)

    def inverted(self) -> Ratio:
        return Ratio(1 / self.estimate, 1 / self.high, 1 / self.low, tuple(sorted(1 / p for p in self.paired)))


@dataclass(frozen=True)
class Target:
    """``value ≥ bound`` (at_least) or ``value ≤ bound``; ``text`` as the report shows it."""

    bound: float
    at_least: bool
    text: str = ""

    def __str__(self) -> str:
        return self.text or f"{'≥' if self.at_least else '≤'} {self.bound:g}"

    def verdict(self, low: float, high: float) -> str:
        """'met', 'missed' or 'unresolved' for a measured range [low, high] (see the module's doc)."""
        if self.at_least:
            return "met" if low >= self.bound else ("missed" if high < self.bound else "unresolved")
        return "met" if high <= self.bound else ("missed" if low > self.bound else "unresolved")


class Deadline:
    """A whole run's time box: steps ask before they start, and are skipped with a note if they can't fit."""

    def __init__(self, total_s: float | None):
        self.total_s = total_s
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def left(self) -> float:
        return math.inf if self.total_s is None else self.total_s - self.elapsed

    def allows(self, need_s: float) -> bool:
        return self.left >= need_s


@dataclass
class Row:
    """One line of the report: a measured variant, or a ratio between two (variant "ratio")."""

    comparison: str
    variant: str
    setting: str
    best: float  # the least-disturbed round (or the ratio's estimate)
    median: float
    low: float
    high: float
    unit: str = "s"
    cv: float = math.nan  # coefficient of variation of the rounds
    repeats: int = 1  # measured rounds, warm-up excluded
    load: str = ""  # 1-minute load average before–after the rounds
    ratio: float | None = None  # see `ratio_meaning`; the ratio of the minima
    ratio_low: float | None = None  # the ratio's range from paired rounds (see the module's doc)
    ratio_high: float | None = None
    ratio_meaning: str = ""
    target: str = ""
    verdict: str = ""  # met / missed / unresolved; empty without a target; "not assessed" in smoke runs
    note: str = ""


def _load_text(load: tuple[float, float]) -> str:
    return "" if any(math.isnan(x) for x in load) else f"{load[0]:.1f}–{load[1]:.1f}"


@dataclass
class Report:
    title: str
    settings: dict
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_timings(
        self,
        comparison: str,
        setting: str,
        timings: dict[str, Timing],
        *,
        scale: float = 1.0,
        unit: str = "s",
    ) -> None:
        for variant, t in timings.items():
            self.rows.append(
                Row(comparison, variant, setting, t.best * scale, t.median * scale, t.low * scale, t.high * scale,
                    unit, t.cv, t.n, _load_text(t.load))
            )

    def add_rate(self, comparison: str, variant: str, setting: str, work: float, t: Timing, unit: str) -> None:
        """A throughput row, ``work`` per second of ``t`` (best = work / fastest round)."""
        self.rows.append(
            Row(comparison, variant, setting, work / t.best, work / t.median, work / t.high, work / t.low,
                unit, t.cv, t.n, _load_text(t.load))
        )

    def write(self, folder: Path) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        csv_path = folder / "results.csv"
        with csv_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(asdict(self.rows[0]).keys()) if self.rows else ["comparison"])
            writer.writeheader()
            for row in self.rows:
                writer.writerow(asdict(row))
        md_path = folder / "report.md"
        md_path.write_text(self.markdown())
        return md_path, csv_path

    def target_lines(self) -> list[str]:
        """One line per target: what was measured, its range, and the verdict."""
        lines = []
        for r in self.rows:
            if r.target:
                lines.append(
                    f"{r.comparison} {r.setting}: {_fmt(r.ratio)} ({r.ratio_meaning}; range {_fmt(r.ratio_low)}–"
                    f"{_fmt(r.ratio_high)}, {r.repeats} rounds, load {r.load or 'n/a'}) target {r.target}: {r.verdict}"
                )
        return lines

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        lines += [f"- {key}: {value}" for key, value in self.settings.items()]
        lines += [
            "",
            "## Targets",
            "",
            "Ratio = ratio of the two variants' fastest rounds; range = paired per-round ratios, the ⌊n/5⌋ "
            "most extreme at each end dropped; verdict: met / missed when the whole range is on one side "
            "of the target, unresolved when it straddles it (bench/harness.py).",
            "",
            "| comparison | setting | ratio | range | target | verdict | rounds | load |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            if r.target:
                verdict = r.verdict if r.verdict != "missed" else "**missed**"
                lines.append(
                    f"| {r.comparison} | {r.setting} | {_fmt(r.ratio)} ({r.ratio_meaning}) | {_fmt(r.ratio_low)}–"
                    f"{_fmt(r.ratio_high)} | {r.target} | {verdict} | {r.repeats} | {r.load} |"
                )
        lines += [
            "",
            "## Measurements (best = fastest round; median, min–max and CV of the rounds)",
            "",
            "| comparison | variant | setting | best | median | min–max | CV | rounds | load | unit |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            cv = "" if math.isnan(r.cv) else f"{r.cv:.0%}"
            lines.append(
                f"| {r.comparison} | {r.variant} | {r.setting} | {_fmt(r.best)} | {_fmt(r.median)} | "
                f"{_fmt(r.low)}–{_fmt(r.high)} | {cv} | {r.repeats} | {r.load} | {r.unit} |"
            )
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def machine(device: str) -> dict:
    from importlib.metadata import version

    info = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
        "load average at the start (1 min)": f"{load_average():.2f}",
        "python": platform.python_version(),
        "versions": ", ".join(f"{name} {version(name)}" for name in ("lister-tui", "torch", "transformer-lens", "sae-lens")),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def ratio_row(
    report: Report,
    comparison: str,
    setting: str,
    numerator: Timing,
    denominator: Timing,
    meaning: str,
    target: Target | None = None,
    note: str = "",
) -> Ratio:
    """Append a row for numerator / denominator (ratio of minima, range from paired rounds) and its verdict."""
    ratio = Ratio.of(numerator, denominator)
    verdict = target.verdict(ratio.low, ratio.high) if target else ""
    n = min(numerator.n, denominator.n)
    cv = max(numerator.cv, denominator.cv)
    load = _load_text((min(numerator.load[0], denominator.load[0]), max(numerator.load[1], denominator.load[1])))
    median = statistics.median(ratio.paired)
    report.rows.append(
        Row(comparison, "ratio", setting, ratio.estimate, median, ratio.paired[0], ratio.paired[-1], "×", cv, n, load,
            ratio.estimate, ratio.low, ratio.high, meaning, str(target) if target else "", verdict, note)
    )
    return ratio


def value_row(
    report: Report, comparison: str, variant: str, setting: str, timing: Timing, target: Target, unit: str = "s"
) -> None:
    """A row judging one variant's own time against an absolute target: the estimate is its
    fastest round, the range that of its rounds with the ⌊n/5⌋ most extreme at each end dropped."""
    rounds = sorted(timing.seconds)
    drop = len(rounds) // 5
    kept = rounds[drop : len(rounds) - drop] or rounds
    low, high = timing.best, kept[-1]
    report.rows.append(
        Row(comparison, variant, setting, timing.best, timing.median, timing.low, timing.high, unit, timing.cv, timing.n,
            _load_text(timing.load), timing.best, low, high, "fastest round, s", str(target), target.verdict(low, high))
    )


def linearity(sizes: Sequence[int], seconds: Sequence[float]) -> str:
    """Where time per unit of work stops being flat: the first size whose cost per unit
    exceeds the smallest's by more than 25%, or 'linear over the range'."""
    per_unit = [s / n for n, s in zip(sizes, seconds)]
    base = per_unit[0]
    for n, p in zip(sizes, per_unit):
        if p > 1.25 * base:
            return f"super-linear from {n} ({p / base:.2f}× the cost per unit of {sizes[0]})"
    best = min(per_unit)
    return f"linear or better over {sizes[0]}–{sizes[-1]} (cost per unit {best / base:.2f}–1.00× of the smallest)"
