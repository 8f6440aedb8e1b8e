"""Writing a sweep to a folder: tables as CSV, Parquet and Markdown, a manifest, and its shards.

Every file is written to a temporary file in the same folder and moved into place
with ``os.replace``, so a file is always either the previous complete version or the
new one. Tables are rewritten as the sweep goes; ``manifest.json`` says whether the
run is complete (``"complete": true`` only after the last shard), and holds every
setting, the seeds, package versions and a fingerprint of the weights, so the run can
be repeated exactly (``repeat_command``), and which shard ran where. Each finished
shard's rows are kept in ``shards/<shard id>.json``, so an interrupted sweep can be
resumed (``lister-tui sweep --resume``) by running only the shards missing there.

Long because the folder's whole life is here: start, resume, checkpoints, stop and failure, each
keeping the manifest and the files consistent; the shard files and what their checksum does and does
not protect against; the tables written and read back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import platform
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from lister_tui.core.engine.fingerprint import fingerprint_differences, weights_fingerprint
from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.engine.registry import ModelEntry, get_entry
from lister_tui.core.engine.registry_file import entry_record
from lister_tui.core.errors import ListerError
from lister_tui.core.files.atomic import atomic_write, atomic_write_bytes, check_path_name
from lister_tui.core.files.clock import now
from lister_tui.core.files.json_read import parse_json
from lister_tui.core.files.process import this_process, writer_state
from lister_tui.core.study.columns import migrate_frame, migrate_row
from lister_tui.core.sweep.run import SweepResult
from lister_tui.core.sweep.settings import SweepSettings
from lister_tui.core.sweep.shards import Shard
from lister_tui.core.sweep.tables import TABLE_DESCRIPTIONS, build_tables, describe

MANIFEST, INTERVENTIONS = "manifest.json", "interventions.json"  # the manifest; the sweep's --interventions sets
SHARDS = "shards"  # the folder of finished shards' rows
FORMATS = ("csv", "parquet", "md")
TABLE_NAMES = tuple(TABLE_DESCRIPTIONS)
FORMAT_VERSION = 1
PACKAGES = ("lister-tui", "torch", "transformer-lens", "sae-lens", "transformers", "numpy", "pandas", "pyarrow")


def output_files() -> list[str]:
    """Every file name a sweep may write beside ``shards/`` (what --overwrite replaces; nothing else is touched)."""
    return [f"{t}.{f}" for t in TABLE_NAMES for f in FORMATS] + [MANIFEST, INTERVENTIONS]


def check_out_folder(out: Path, overwrite: bool) -> None:
    """Refuse a file, or a non-empty folder unless ``overwrite``."""
    out = check_path_name(Path(out), "--out")
    if out.exists() and not out.is_dir():
        raise ListerError(f"output path {str(out)!r} is a file; give a folder (new or empty) with --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ListerError(
            f"output folder {str(out)!r} exists and is not empty; pass --overwrite to replace a previous sweep's "
            "files there, or give another --out"
        )
    if out.is_dir():
        refuse_live_writer(out)  # --overwrite never replaces a sweep that is being written


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


def read_table(folder: Path, name: str, columns: Sequence[str] = ()) -> pd.DataFrame:
    """A written table, from its Parquet file (a column under an older name gets today's); a
    missing, truncated or foreign file, or one without ``columns``, is a ListerError naming it."""
    path = Path(folder) / f"{name}.parquet"
    try:
        frame = migrate_frame(pd.read_parquet(path))
    except FileNotFoundError:
        raise ListerError(f"{path} does not exist; give a sweep's output folder") from None
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError and others for a damaged file
        raise ListerError(f"{path} cannot be read as a sweep table ({type(exc).__name__}: {str(exc)[:200]}); the file is damaged") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ListerError(f"{path} has no column {missing[0]!r}; it is not a sweep's {name} table (or it is damaged)")
    return frame


def model_manifest(loaded: LoadedModel, sae_ids: Sequence[str]) -> dict:
    """The manifest's ``model``: what was loaded, where, and a fingerprint of its weights."""
    entry = loaded.entry
    cfg = loaded.model.cfg
    return {
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
        # the entry in full (sites' releases and sae_ids or folder fingerprints, chat format, metric
        # tokens), so the sweep can be resumed or read where its registry file is absent
        "entry": entry_record(entry),
        "parity": loaded.parity,  # a Hugging Face folder's check against transformers (engine.parity)
    }


def template_texts(names, entry: ModelEntry) -> dict:
    """Each template's text and length group, as the prompts were made (user templates included)."""
    from lister_tui.core.engine.prompts import get_template

    return {n: {"text": get_template(n, entry).text, "length": get_template(n, entry).length} for n in names}


def read_manifest(out: Path) -> dict:
    """A sweep folder's manifest, or a clear error naming what is wrong with it."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise ListerError(f"no sweep to resume in {str(out)!r}: {MANIFEST} is missing")
    try:
        manifest = parse_json(path.read_text(encoding="utf-8"), str(path))
    except ListerError:
        raise
    except (OSError, ValueError) as exc:
        raise ListerError(f"cannot read {path} ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("tool") != "lister-tui sweep" or not isinstance(manifest.get("settings"), dict):
        raise ListerError(f"{path} is not a sweep's manifest")
    return manifest


def settings_differences(recorded: Mapping, settings: SweepSettings, entry: ModelEntry) -> list[str]:
    """Each setting whose value differs from the ``recorded`` ones (a manifest's), named with both values."""
    current = json.loads(json.dumps(settings.to_dict(entry)))
    keys = list(current) + [k for k in recorded if k not in current]
    return [
        f"{key} (the sweep has {recorded.get(key)!r}, this run {current.get(key)!r})"
        for key in keys
        if recorded.get(key) != current.get(key)
    ]


def settings_hash(settings: SweepSettings, entry: ModelEntry | None = None) -> str:
    """SHA-256 of the settings as the manifest records them (a shard belongs to one set of settings)."""
    return hashlib.sha256(json.dumps(settings.to_dict(entry), sort_keys=True, default=str).encode()).hexdigest()


def _record_digest(record: Mapping) -> str:
    body = {k: v for k, v in record.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class ShardFiles:
    """Finished shards as ``<out>/shards/<shard id>.json``: its output rows and where it ran.

    JSON keeps every value of a row exactly (floats round-trip by their repr), so rows
    read back give the same tables as rows just computed. Each file carries the SHA-256 of its
    own contents and of the sweep's settings: ``--resume`` refuses a shard that was edited or that
    belongs to other settings, naming it, rather than putting its numbers into the tables.

    What the checksum does and does not protect against: it is a plain SHA-256 kept in the same
    file, with no key. It catches accidents (a truncated or half-copied file, a flipped byte, a
    hand edit that forgot the checksum, a shard copied in from a sweep with other settings). It
    does not catch a deliberate change: whoever can write the file can compute the SHA-256 of the
    edited record and store it ("re-sign" it), and such a shard is trusted like any other. The
    numbers of a sweep are only as trustworthy as the folder's write permissions; keep a copy, or
    check a sweep you did not run by running its settings again into a new folder and comparing
    the tables (on the same weights, device and package versions they agree).
    """

    def __init__(self, out: Path, settings_sha256: str | None = None):
        self.folder = Path(out) / SHARDS
        self.settings_sha256 = settings_sha256  # set by the writer once the settings are known

    def path(self, shard: Shard) -> Path:
        return self.folder / f"{shard.id}.json"

    def save(self, shard: Shard, output: dict, meta: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"format_version": FORMAT_VERSION, "shard": asdict(shard), "settings_sha256": self.settings_sha256, "meta": meta, "output": output}
        # the digest covers the record as JSON reads it back (floats by their repr)
        record = json.loads(json.dumps(record, ensure_ascii=False))
        record["sha256"] = _record_digest(record)
        text = json.dumps(record, ensure_ascii=False)
        atomic_write(self.path(shard), lambda p: p.write_text(text, encoding="utf-8"))

    def load(self, plan: Sequence[Shard]) -> dict[str, tuple[dict, dict]]:
        """The saved shards of ``plan``: id -> (output, meta). A shard file whose checksum or settings
        do not match is refused with a ListerError naming it (its numbers would go into the tables)."""
        found = {}
        for shard in plan:
            path = self.path(shard)
            if not path.is_file():
                continue
            try:
                record = parse_json(path.read_text(encoding="utf-8"), str(path))
            except (OSError, ValueError) as exc:
                raise ListerError(f"shard file {path} cannot be read ({exc}); delete it to run that shard again") from None
            if not isinstance(record, dict) or record.get("shard") != asdict(shard) or "output" not in record:
                raise ListerError(f"shard file {path} does not hold shard {shard.id}; delete it to run that shard again")
            if record.get("sha256") != _record_digest(record):
                raise ListerError(
                    f"shard file {path} does not match its checksum: it was changed after the sweep wrote it. "
                    "Delete it to run that shard again (or start a new sweep)"
                )
            if self.settings_sha256 is not None and record.get("settings_sha256") != self.settings_sha256:
                raise ListerError(f"shard file {path} was written with other settings than this sweep's; delete it to run that shard again")
            found[shard.id] = (_migrate_output(record["output"]), record.get("meta") or {})
        return found

    def clear(self) -> None:
        """Remove every saved shard (a new sweep in this folder)."""
        if self.folder.is_dir():
            for path in self.folder.glob("*.json"):
                path.unlink()


def _migrate_output(output):
    """A saved shard's rows with today's column names (a shard saved before a rename resumes)."""
    if isinstance(output, dict):
        for key in ("generations", "faithfulness"):
            if isinstance(output.get(key), list):
                output[key] = [migrate_row(r) if isinstance(r, dict) else r for r in output[key]]
    return output


def _entry(model: LoadedModel | dict, settings: SweepSettings) -> ModelEntry:
    return model.entry if isinstance(model, LoadedModel) else get_entry(settings.model)


def _run(runtime: dict | None, resumed: bool) -> dict:
    """One execution of the sweep, as the manifest's ``runs`` lists it (a resumed sweep has several).

    ``pid`` and ``host`` name the process writing the folder, so that a manifest left saying
    "running" by a killed process can be told from one that is being written now."""
    runtime = runtime or {}
    return {"run": runtime.get("run_id"), "mode": runtime.get("mode", "local"), "started": now(), "resumed": resumed,
            **this_process()}


def refuse_live_writer(out: Path) -> str:
    """Refuse a sweep folder another live process is writing; the stale-run sentence otherwise ("" if none)."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        return ""
    try:
        manifest = parse_json(path.read_text(encoding="utf-8"), str(path))
    except (ListerError, OSError, ValueError):
        return ""  # a damaged manifest is refused, with its reason, where it is read
    if not isinstance(manifest, dict):
        return ""
    state, why = writer_state(manifest)
    if state == "live":
        raise ListerError(f"the sweep in {str(out)!r} is being written: {why}; wait for it to finish or stop it (kill {why.split()[1]}) first")
    return why


class SweepWriter:
    """Writes one sweep's folder as it goes; ``write`` may be called any number of times."""

    def __init__(self, out: Path, *, overwrite: bool = False, command: Sequence[str] | None = None):
        self.out = Path(out)
        self.overwrite = overwrite
        self.command = list(command) if command is not None else None
        self.manifest: dict = {}
        self.shards = ShardFiles(self.out)

    def start(self, model: LoadedModel | dict, settings: SweepSettings, runtime: dict | None = None) -> None:
        """Prepare the folder (replacing a previous sweep's files if allowed) and write a first manifest.

        ``model`` is the loaded model, or its :func:`model_manifest` (a Ray sweep's driver
        gets it from a worker). ``runtime`` records how the run was executed without being
        a setting (e.g. torch threads, Ray workers).
        """
        check_out_folder(self.out, self.overwrite)
        self.out.mkdir(parents=True, exist_ok=True)
        for name in output_files():
            (self.out / name).unlink(missing_ok=True)
        self.shards.clear()
        entry = _entry(model, settings)
        sets_file = self.out / INTERVENTIONS if settings.interventions else None  # --interventions, for the repeat command
        if sets_file:
            atomic_write_bytes(sets_file, (json.dumps({"sets": [dict(r) for r in settings.interventions]}, indent=2) + "\n").encode())
        info = model if isinstance(model, dict) else model_manifest(model, settings.sae_ids(entry))
        self.manifest = {
            "tool": "lister-tui sweep",
            "format_version": FORMAT_VERSION,
            "complete": False,
            "status": "running",
            "started": now(),
            "finished": None,
            "command": self.command,
            "repeat_command": shlex.join(["lister-tui", "sweep", *settings.cli_args(entry, sets_file)]),
            "settings": settings.to_dict(entry),
            "model": info,
            "templates": template_texts(settings.templates, entry),
            "versions": package_versions(),
            "runtime": runtime or {},
            "seeds": {"base_seed": settings.seed, "per_sample": []},
            "runs": [_run(runtime, resumed=False)],
        }
        self.shards.settings_sha256 = settings_hash(settings, entry)
        self._write_manifest()

    def resume(self, model: LoadedModel | dict, settings: SweepSettings, runtime: dict | None = None) -> None:
        """Go on writing the sweep in ``out``: refused when a setting or the weights differ from its manifest's."""
        manifest = read_manifest(self.out)
        entry = _entry(model, settings)
        differs = settings_differences(manifest["settings"], settings, entry)
        if differs:
            raise ListerError(
                f"cannot resume the sweep in {str(self.out)!r}: its settings differ: {'; '.join(differs)}. "
                f"Resume with the same settings (its repeat_command: {manifest.get('repeat_command')})"
            )
        info = model if isinstance(model, dict) else model_manifest(model, settings.sae_ids(entry))
        weights = fingerprint_differences((manifest.get("model") or {}).get("fingerprint"), info.get("fingerprint"))
        if weights:
            raise ListerError(
                f"cannot resume the sweep in {str(self.out)!r}: the weights differ from the ones it ran with "
                f"({', '.join(weights)}); start a new sweep"
            )
        self.shards.settings_sha256 = settings_hash(settings, entry)
        manifest.update(complete=False, status="running", finished=None, command=self.command, runtime=runtime or {})
        manifest.pop("error", None)
        manifest.setdefault("runs", []).append(_run(runtime, resumed=True))
        self.manifest = manifest
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
            {"template": s.template, "topic": s.topic, "sample": s.sample, "seed": s.seed} for s in result.samples
        ]
        m["progress"] = {
            "units_done": result.units_done,
            "units_total": result.units_total,
            "conditions": result.conditions,
            "conditions_done": result.conditions_done,
            "samples_attributed": len(result.samples),
            "samples_dropped_without_complete_item": result.dropped,
            "shards_done": sum(1 for s in result.shards.values() if s["done"]),
            "shards_total": len(result.shards),
        }
        m["baselines"] = result.baselines
        m["shards"] = result.shards
        m["tables"] = written
        m["columns"] = {c: describe(c) for frame in tables.values() for c in frame.columns}
        self._write_manifest()

    def stop(self, result: SweepResult | None, status: str, reason: str) -> None:
        """Record a stop (``"failed"`` or ``"interrupted"``) and its reason, with the tables so far when
        ``result`` is given. A second Ctrl-C meanwhile is ignored (or, if it came first, the manifest
        alone is written), so the manifest never stays "running"; a full disk leaves the tables as they were."""
        import signal
        import threading

        if not self.manifest:
            return
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
        try:
            try:
                if result is not None:
                    self.write(result, status=status, error=reason)
                    return
            except (OSError, KeyboardInterrupt):
                pass
            with contextlib.suppress(OSError):
                self.fail(status, reason)
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, previous)

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
