"""Writing a sweep to a folder: tables as CSV, Parquet and Markdown, and a manifest.

Every file is written to a temporary file in the same folder and moved into place
with ``os.replace``, so a file is always either the previous complete version or the
new one. Tables are rewritten after each condition; ``manifest.json`` says whether
the run is complete (``"complete": true`` only after the last condition), and holds
every setting, the seeds, package versions and a fingerprint of the weights, so the
run can be repeated exactly (``repeat_command``).
"""

from __future__ import annotations

import json
import math
import platform
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import pandas as pd

from lister_tui.core.atomic import atomic_write
from lister_tui.core.errors import ListerError
from lister_tui.core.fingerprint import weights_fingerprint
from lister_tui.core.loading import LoadedModel
from lister_tui.core.sweep import SweepResult, SweepSettings
from lister_tui.core.tables import TABLE_DESCRIPTIONS, build_tables, describe

MANIFEST = "manifest.json"
FORMATS = ("csv", "parquet", "md")
TABLE_NAMES = tuple(TABLE_DESCRIPTIONS)
FORMAT_VERSION = 1
PACKAGES = ("lister-tui", "torch", "transformer-lens", "sae-lens", "transformers", "numpy", "pandas", "pyarrow")


def output_files() -> list[str]:
    """Every file name a sweep may write (what --overwrite replaces; nothing else is touched)."""
    return [f"{t}.{f}" for t in TABLE_NAMES for f in FORMATS] + [MANIFEST]


def check_out_folder(out: Path, overwrite: bool) -> None:
    """Refuse a file, or a non-empty folder unless ``overwrite``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ListerError(f"output path {str(out)!r} is a file; give a folder (new or empty) with --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ListerError(
            f"output folder {str(out)!r} exists and is not empty; pass --overwrite to replace a previous sweep's "
            "files there, or give another --out"
        )


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    out["platform"] = platform.platform()
    return out


def _cell(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("\n", "\\n").replace("|", "\\|")


def markdown_table(frame: pd.DataFrame, title: str, description: str) -> str:
    """A GitHub-flavoured Markdown table with a title, a description and a column glossary."""
    lines = [f"# {title}", "", description, ""]
    if frame.empty:
        lines.append("(no rows yet)")
    else:
        lines.append("| " + " | ".join(frame.columns) + " |")
        lines.append("|" + "|".join("---" for _ in frame.columns) + "|")
        for row in frame.itertuples(index=False):
            lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    lines += ["", "Columns:", ""] + [f"- `{c}`: {describe(c)}" for c in frame.columns]
    return "\n".join(lines) + "\n"


def write_table(folder: Path, name: str, frame: pd.DataFrame) -> list[str]:
    """``name``.csv, .parquet and .md in ``folder``, each atomically; returns the file names."""
    atomic_write(folder / f"{name}.csv", lambda p: frame.to_csv(p, index=False))
    atomic_write(folder / f"{name}.parquet", lambda p: frame.to_parquet(p, index=False))
    text = markdown_table(frame, name, TABLE_DESCRIPTIONS.get(name, ""))
    atomic_write(folder / f"{name}.md", lambda p: p.write_text(text, encoding="utf-8"))
    return [f"{name}.{f}" for f in FORMATS]


def read_table(folder: Path, name: str) -> pd.DataFrame:
    """A written table, from its Parquet file."""
    return pd.read_parquet(Path(folder) / f"{name}.parquet")


class SweepWriter:
    """Writes one sweep's folder as it goes; ``write`` may be called any number of times."""

    def __init__(self, out: Path, *, overwrite: bool = False, command: Sequence[str] | None = None):
        self.out = Path(out)
        self.overwrite = overwrite
        self.command = list(command) if command is not None else None
        self.manifest: dict = {}

    def start(self, loaded: LoadedModel, settings: SweepSettings, runtime: dict | None = None) -> None:
        """Prepare the folder (replacing a previous sweep's files if allowed) and write a first manifest.

        ``runtime`` records how the run was executed without being a setting (e.g. torch threads).
        """
        check_out_folder(self.out, self.overwrite)
        self.out.mkdir(parents=True, exist_ok=True)
        for name in output_files():
            (self.out / name).unlink(missing_ok=True)
        entry = loaded.entry
        sae_ids = settings.sae_ids(entry)
        cfg = loaded.model.cfg
        self.manifest = {
            "tool": "lister-tui sweep",
            "format_version": FORMAT_VERSION,
            "complete": False,
            "status": "running",
            "started": now(),
            "finished": None,
            "command": self.command,
            "repeat_command": shlex.join(["lister-tui", "sweep", *settings.cli_args(entry)]),
            "settings": settings.to_dict(entry),
            "model": {
                "name": entry.name,
                "source": entry.source,
                "hf_model_name": entry.hf_model_name,
                "device": loaded.device,
                "dtype": str(loaded.dtype).removeprefix("torch."),
                "n_layers": cfg.n_layers,
                "d_model": cfg.d_model,
                "d_vocab": cfg.d_vocab,
                "token_ids": {
                    "blank": loaded.ids.blank,
                    "newline": loaded.ids.newline,
                    "item_marker": loaded.ids.item_marker,
                    "stops": list(loaded.ids.stops),
                    "bos": loaded.ids.bos,
                },
                "saes": {s: entry.site(s).hook_name for s in sae_ids},
                "fingerprint": weights_fingerprint(loaded.entry, sae_ids),
            },
            "versions": package_versions(),
            "runtime": runtime or {},
            "seeds": {"base_seed": settings.seed, "per_sample": []},
        }
        self._write_manifest()

    def write(self, result: SweepResult, status: str | None = None, error: str | None = None) -> None:
        """Rewrite every table from ``result`` and the manifest (complete only if ``result`` is)."""
        tables = build_tables(result.generations, result.faithfulness if self.manifest["settings"]["faithfulness"] else None)
        written = {}
        for name, frame in tables.items():
            written[name] = {"files": write_table(self.out, name, frame), "rows": len(frame), "description": TABLE_DESCRIPTIONS[name]}
        m = self.manifest
        m["complete"] = bool(result.complete)
        m["status"] = status or ("complete" if result.complete else "running")
        if error is not None:
            m["error"] = error
        if result.complete or m["status"] != "running":
            m["finished"] = now()
        m["seeds"]["per_sample"] = [
            {"template": s.spec.template, "topic": s.spec.topic, "sample": s.spec.sample, "seed": s.spec.seed}
            for s in result.samples
        ]
        m["progress"] = {
            "units_done": result.units_done,
            "units_total": result.units_total,
            "conditions": result.conditions,
            "conditions_done": result.conditions_done,
            "samples_attributed": len(result.samples),
            "samples_dropped_without_complete_item": result.dropped,
        }
        m["baselines"] = result.baselines
        m["tables"] = written
        m["columns"] = {c: describe(c) for frame in tables.values() for c in frame.columns}
        self._write_manifest()

    def fail(self, status: str, error: str | None = None) -> None:
        """Mark the run as not complete (interrupted or failed) without touching the tables."""
        if not self.manifest:
            return
        self.manifest.update(complete=False, status=status, finished=now())
        if error is not None:
            self.manifest["error"] = error
        self._write_manifest()

    def _write_manifest(self) -> None:
        text = json.dumps(self.manifest, indent=2, ensure_ascii=False, default=str) + "\n"
        atomic_write(self.out / MANIFEST, lambda p: p.write_text(text, encoding="utf-8"))
