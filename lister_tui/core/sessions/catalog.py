"""The sessions folder as a catalogue: list sessions (and sweep folders) with their size and
contents, and resolve a name or a path to a session folder."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.schema import (
    FORMAT_VERSION,
    MANIFEST,
    manifest_version,
)
from lister_tui.core.sessions.store import read_manifest


@dataclass(frozen=True)
class SessionInfo:
    path: Path
    kind: str  # "session" or "sweep"
    model: str | None
    created: str | None
    updated: str | None
    samples: int | None
    runs: int | None
    size_bytes: int
    format_version: int | None
    problem: str | None = None  # why it cannot be opened, if it cannot

    @property
    def name(self) -> str:
        return self.path.name


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def is_sweep_folder(folder: Path) -> bool:
    try:
        m = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and m.get("tool") == "lister-tui sweep"


def session_info(folder: Path) -> SessionInfo:
    folder = Path(folder)
    size = folder_size(folder)
    try:
        m = read_manifest(folder)
    except ListerError as exc:
        return SessionInfo(folder, "session", None, None, None, None, None, size, None, str(exc))
    if m.get("tool") == "lister-tui sweep":
        n = len((m.get("seeds") or {}).get("per_sample", []))
        return SessionInfo(folder, "sweep", (m.get("model") or {}).get("name"), m.get("started"), m.get("finished") or m.get("started"), n, None, size, m.get("format_version"))
    version = manifest_version(m)
    model = m.get("model")
    model_name = model.get("name") if isinstance(model, dict) else model
    counts = m.get("counts") or {}
    problem = None
    if version > FORMAT_VERSION:
        problem = f"format {version} is newer than this lister-tui reads ({FORMAT_VERSION})"
    samples = counts.get("samples", len(m.get("samples", [])) if version == 0 else None)
    return SessionInfo(folder, "session", model_name, m.get("created"), m.get("updated"), samples, counts.get("runs"), size, version, problem)


def list_sessions(sessions_dir: str | Path) -> list[SessionInfo]:
    """Every session (and sweep folder) in ``sessions_dir``, the most recently updated first."""
    folder = Path(sessions_dir)
    if not folder.is_dir():
        return []
    infos = [session_info(p) for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).exists()]
    return sorted(infos, key=lambda i: i.updated or "", reverse=True)


def resolve_session(name_or_path: str | Path, sessions_dir: str | Path) -> Path:
    """A session folder from a name in ``sessions_dir`` or a path."""
    text = str(name_or_path)
    candidate = Path(text).expanduser()
    if candidate.is_dir() and (os.sep in text or text.startswith(".") or not (Path(sessions_dir) / text).is_dir()):
        return candidate
    in_dir = Path(sessions_dir) / text
    if in_dir.is_dir():
        return in_dir
    names = [i.name for i in list_sessions(sessions_dir)][:10]
    hint = f"sessions in {sessions_dir}: {', '.join(names)}" if names else f"{sessions_dir} holds no sessions"
    raise ListerError(f"no session {text!r} (neither a folder nor a name in the sessions folder); {hint}")
