"""Timing, machine description and the report: what every comparison shares.

A comparison runs its variants side by side in one process, several repeats each,
interleaved (A B A B …) so that a change in machine load hits every variant alike;
the report gives the median and min–max, and ratios of medians.
"""

from __future__ import annotations

import csv
import gc
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch


@dataclass(frozen=True)
class Timing:
    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def low(self) -> float:
        return min(self.seconds)

    @property
    def high(self) -> float:
        return max(self.seconds)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_side_by_side(
    variants: dict[str, Callable[[], object]], repeats: int, device: str = "cpu", warmup: int = 1
) -> dict[str, Timing]:
    """Run each variant ``warmup`` times, then ``repeats`` rounds of every variant in turn."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            gc.collect()
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            seconds[name].append(time.perf_counter() - start)
    return {name: Timing(tuple(values)) for name, values in seconds.items()}


@dataclass
class Row:
    """One line of the report: a measured variant, and its ratio to the comparison's reference."""

    comparison: str
    variant: str
    setting: str
    median: float
    low: float
    high: float
    unit: str = "s"
    ratio: float | None = None  # see `ratio_meaning`
    ratio_meaning: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""


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
            self.rows.append(Row(comparison, variant, setting, t.median * scale, t.low * scale, t.high * scale, unit))

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

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        lines += [f"- {key}: {value}" for key, value in self.settings.items()]
        lines += ["", "## Targets", "", "| comparison | setting | ratio | target | met |", "|---|---|---|---|---|"]
        for r in self.rows:
            if r.target:
                met = "n/a" if r.met is None else ("yes" if r.met else "**no**")
                lines.append(f"| {r.comparison} | {r.setting} | {r.ratio:.2f} ({r.ratio_meaning}) | {r.target} | {met} |")
        lines += [
            "",
            "## Measurements (median of the repeats, min–max)",
            "",
            "| comparison | variant | setting | median | min–max | unit |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.comparison} | {r.variant} | {r.setting} | {_fmt(r.median)} | {_fmt(r.low)}–{_fmt(r.high)} | {r.unit} |"
            )
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def _fmt(value: float) -> str:
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
        "machine": f"{platform.machine()}, {_cpu_name()}, {torch.get_num_threads()} torch threads",
        "python": platform.python_version(),
        "versions": ", ".join(f"{name} {version(name)}" for name in ("lister-tui", "torch", "transformer-lens", "sae-lens")),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def ratio_row(
    report: Report,
    comparison: str,
    setting: str,
    numerator: Timing,
    denominator: Timing,
    meaning: str,
    target: str = "",
    met: Callable[[float], bool] | None = None,
    note: str = "",
) -> float:
    """Append a row for the ratio numerator.median / denominator.median."""
    ratio = numerator.median / denominator.median
    report.rows.append(
        Row(
            comparison,
            "ratio",
            setting,
            ratio,
            numerator.low / denominator.high,
            numerator.high / denominator.low,
            "×",
            ratio,
            meaning,
            target,
            None if met is None else bool(met(ratio)),
            note,
        )
    )
    return ratio


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
