"""The sessions folder as a catalogue: list sessions (and sweep folders) with their size and
contents, and resolve a name or a path to a session folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.checks import parse_json
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
    try:
        return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    except OSError:  # a file removed by a save while counting, or an unreadable subfolder
        return 0


def is_sweep_folder(folder: Path) -> bool:
    path = Path(folder) / MANIFEST
    try:
        m = parse_json(path.read_text(encoding="utf-8"), str(path))
    except (OSError, ValueError):  # ListerError is a ValueError
        return False
    return isinstance(m, dict) and m.get("tool") == "lister-tui sweep"


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def session_info(folder: Path) -> SessionInfo:
    """What the listing shows of ``folder``; a damaged folder is listed with its problem (one bad
    folder never breaks the listing of the others)."""
    folder = Path(folder)
    size = folder_size(folder)
    try:
        m = read_manifest(folder)
    except ListerError as exc:
        return SessionInfo(folder, "session", None, None, None, None, None, size, None, f"damaged: {exc}")
    try:
        return _info_of(folder, m, size)
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        return SessionInfo(folder, "session", None, None, None, None, None, size, None, f"damaged: {MANIFEST} has a field of the wrong type ({exc})")


def _info_of(folder: Path, m: dict, size: int) -> SessionInfo:
    if m.get("tool") == "lister-tui sweep":
        n = len((m.get("seeds") or {}).get("per_sample", []))
        started = _text(m.get("started"))
        return SessionInfo(folder, "sweep", _text((m.get("model") or {}).get("name")), started, _text(m.get("finished")) or started, n, None, size, _count(m.get("format_version")))
    version = manifest_version(m)
    model = m.get("model")
    model_name = model.get("name") if isinstance(model, dict) else model
    counts = m.get("counts") or {}
    problem = None
    if version > FORMAT_VERSION:
        problem = f"format {version} is newer than this lister-tui reads ({FORMAT_VERSION})"
    samples = counts.get("samples", len(m.get("samples", [])) if version == 0 else None)
    return SessionInfo(
        folder, "session", _text(model_name), _text(m.get("created")), _text(m.get("updated")), _count(samples), _count(counts.get("runs")), size, version, problem
    )


def list_sessions(sessions_dir: str | Path) -> list[SessionInfo]:
    """Every session (and sweep folder) in ``sessions_dir``, the most recently updated first."""
    folder = Path(sessions_dir)
    if not folder.is_dir():
        return []
    infos = [session_info(p) for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).exists()]
    return sorted(infos, key=lambda i: i.updated or "", reverse=True)


def resolve_session(name_or_path: str | Path, sessions_dir: str | Path) -> Path:
    """A session folder from a name in ``sessions_dir`` or a path."""
    from lister_tui.core.files.atomic import check_path_name

    text = str(name_or_path)
    candidate = check_path_name(Path(text).expanduser(), "the session's name or folder")
    if candidate.is_dir() and (os.sep in text or text.startswith(".") or not (Path(sessions_dir) / text).is_dir()):
        return candidate
    in_dir = Path(sessions_dir) / text
    if in_dir.is_dir():
        return in_dir
    names = [i.name for i in list_sessions(sessions_dir)][:10]
    hint = f"sessions in {sessions_dir}: {', '.join(names)}" if names else f"{sessions_dir} holds no sessions"
    raise ListerError(f"no session {text!r} (neither a folder nor a name in the sessions folder); {hint}")
