"""Sessions on disk: save and open a :class:`Workspace` (listing them: :mod:`lister_tui.core.sessions.catalog`).

A session is a folder (``sessions/<name>/``) with ``manifest.json`` and one Parquet
file per table (the format: :mod:`lister_tui.core.sessions.format`, described in
sessions/README.md). Saving is safe against crashes and against a second writer:

- every file is written to a temporary file in the same folder, flushed with
  ``fsync`` and moved into place with ``os.replace``;
- a table file's name carries the revision that wrote it
  (``samples.r000012.parquet``) and is never rewritten in place; the manifest is
  written last and names the files (with their SHA-256) it belongs with, and files
  no manifest names any more are deleted only after it. A reader therefore always
  sees a complete earlier or a complete new state: a ``kill -9`` mid-save loses at
  most the change being saved;
- a save holds an exclusive ``fcntl.flock`` on ``<session>/.lock``, so two
  processes never interleave their writes; a process that finds the session saved
  by another since it last read it gets a :class:`SessionConflict` (or overwrites,
  if it asks to).

Long because saving and reading share the file layout, the lock and the revision rules (a
reader that meets a save re-reads the new manifest), which stay together in one place.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from lister_tui.core.errors import ListerError
from lister_tui.core.files.atomic import atomic_write_bytes, exclusive_file, remove_dead_temporaries
from lister_tui.core.files.clock import now
from lister_tui.core.sessions.checks import (
    check_rows,
    check_session_manifest,
    parse_json,
)
from lister_tui.core.sessions.format import (
    ADDED_COLUMNS,
    MIGRATIONS,
    workspace_fields,
    workspace_from_rows,
    workspace_rows,
)
from lister_tui.core.sessions.schema import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    SCHEMAS,
    TABLE_DESCRIPTIONS,
    ModelInfo,
    check_version,
    manifest_version,
    required_fields,
    to_arrow,
)
from lister_tui.core.sessions.workspace import SampleState, Workspace

try:  # POSIX; elsewhere saves are atomic but not locked against a second writer
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


LOCK = ".lock"


LOCK_TIMEOUT_S = 10.0


NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


_TABLE_FILE_RE = re.compile(r"^(?P<table>[a-z_]+)\.r(?P<rev>\d+)\.parquet$")


class SessionConflict(ListerError):
    """The session was saved by another process since this one last read or wrote it."""


def lister_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lister-tui")
    except PackageNotFoundError:
        return "unknown"


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise ListerError(
            f"session name {name!r} is not valid; use letters, digits, '.', '_' and '-' (at most 100, not starting with '.' or '-')"
        )
    return name


def default_name(model: str) -> str:
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{model}"


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    # page checksums: a flipped byte in a table is caught on reading even where the manifest's sha256 is gone
    pq.write_table(table, buf, compression="zstd", write_page_checksum=True)
    return buf.getvalue()


def _writable_error(folder: Path, exc: OSError) -> ListerError:
    return ListerError(
        f"cannot write to the sessions folder {folder} ({exc.strerror or exc}); choose a writable one with "
        f"--sessions-dir or the LISTER_TUI_SESSIONS environment variable"
    )


@contextmanager
def session_lock(folder: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """An exclusive lock on ``folder/.lock`` (waits up to ``timeout`` seconds)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    path = Path(folder) / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() > deadline:
                    holder = ""
                    try:
                        holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                    except OSError:
                        pass
                    raise ListerError(
                        f"session {folder} is being saved by another lister-tui ({holder or 'unknown process'}) for more "
                        f"than {timeout:.0f} s; try again, or remove {path} if that process is gone"
                    ) from None
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read_manifest(folder: Path) -> dict:
    """The manifest of ``folder`` as stored (any version), or a ListerError saying what is wrong."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ListerError(f"no session folder {folder}")
    if not path.is_file():
        raise ListerError(
            f"{folder} has no {MANIFEST}, so it is not a lister-tui session (or its first save was cut off: "
            "nothing was saved; delete the folder)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ListerError(f"cannot read {path} ({exc})") from exc
    if not text.strip():
        raise ListerError(f"{path} is empty (truncated); the session is damaged: restore the folder from a backup or delete it")
    try:
        manifest = parse_json(text, str(path))
    except json.JSONDecodeError as exc:
        raise ListerError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); it is corrupt or truncated: "
            "restore the folder from a backup or delete it"
        ) from exc
    manifest_version(manifest, str(path))
    return manifest


class _TableGone(ListerError):
    """A table file the manifest names is not there: damage, or a save that moved on during the read."""


READ_ATTEMPTS = 5


def _read_table(folder: Path, name: str, info: dict) -> list[dict]:
    where = f"{folder / MANIFEST}: tables.{name}"
    if not isinstance(info, dict) or "file" not in info:
        raise ListerError(f"{where} has no field 'file'; the manifest is damaged")
    path = folder / str(info["file"])
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _TableGone(
            f"table file {path} (table {name!r}, listed in {MANIFEST}) is missing; the session is incomplete: restore the "
            "file from a backup"
        ) from None
    except OSError as exc:
        raise ListerError(f"cannot read table file {path} ({exc.strerror or exc})") from exc
    if info.get("sha256") and hashlib.sha256(data).hexdigest() != info["sha256"]:
        raise ListerError(f"table file {path} (table {name!r}) does not match its checksum in {MANIFEST}: it is corrupt; restore it from a backup")
    try:
        table = pq.read_table(io.BytesIO(data), page_checksum_verification=True)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise ListerError(f"table file {path} (table {name!r}) is not readable Parquet ({exc}); restore it from a backup") from exc
    if name in SCHEMAS:
        optional = ADDED_COLUMNS.get(name, ())
        missing = [f.name for f in SCHEMAS[name] if f.name not in table.column_names and f.name not in optional]
        if missing:
            raise ListerError(f"table file {path} (table {name!r}) lacks the columns {', '.join(missing)}; it is damaged")
    return table.to_pylist()


@dataclass
class OpenedSession:
    """A session read from disk: its workspace, manifest and what it records of the model."""

    path: Path
    manifest: dict
    workspace: Workspace
    model: ModelInfo
    vocab: dict[int, str] = field(default_factory=dict)
    migrated_from: int | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def revision(self) -> int:
        return int(self.manifest.get("revision", 0))


def read_session(folder: str | Path) -> OpenedSession:
    """Read a session folder (migrating an older format in memory; refusing a newer one).

    A save that lands during the read deletes the table files its new manifest no longer names; a
    table file found missing is therefore read again from the manifest then current, and reported as
    missing only when the manifest has not moved on."""
    folder = Path(folder)
    for attempt in range(READ_ATTEMPTS):
        try:
            return _read_session_once(folder)
        except _TableGone as gone:
            try:
                moved = read_manifest(folder).get("revision") != gone.revision
            except ListerError:
                moved = False
            if not moved or attempt == READ_ATTEMPTS - 1:
                raise ListerError(str(gone)) from None
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _read_session_once(folder: Path) -> OpenedSession:
    manifest = read_manifest(folder)
    version = manifest_version(manifest, str(folder / MANIFEST))
    check_version(version, str(folder / MANIFEST))
    tables: dict[str, list[dict]] | None = None
    migrated_from = None
    while version < FORMAT_VERSION:
        manifest, migrated_tables = MIGRATIONS[version](manifest)
        tables = migrated_tables if migrated_tables is not None else tables
        migrated_from = version if migrated_from is None else migrated_from
        version = manifest_version(manifest)
    where = str(folder / MANIFEST)
    if tables is None:
        required_fields(manifest, where)
        check_session_manifest(manifest, where)
        try:
            tables = {name: _read_table(folder, name, info) for name, info in manifest["tables"].items() if name in SCHEMAS}
        except _TableGone as gone:
            gone.revision = manifest.get("revision")
            raise
    else:
        check_session_manifest(manifest, where, with_tables=False)
    for name in SCHEMAS:
        tables.setdefault(name, [])
    check_rows(tables, f"session {folder}")
    try:
        ws = workspace_from_rows(manifest, tables)
    except ListerError as exc:
        raise ListerError(f"session {folder}: {exc}") from exc
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ListerError(f"session {folder}: a table row lacks a valid field ({exc!r}); the session is damaged") from exc
    model = ModelInfo.from_dict(manifest["model"], str(folder / MANIFEST))
    vocab = {int(r["id"]): str(r["string"]) for r in tables.get("vocab", [])}
    return OpenedSession(folder, manifest, ws, model, vocab, migrated_from)


def _snapshot(ws: Workspace) -> Workspace:
    """A copy that a worker thread can serialise while the UI goes on changing ``ws``."""
    copy = Workspace(
        ws.model_name, batch=ws.batch, notes=ws.notes, labels=dict(ws.labels), revision=ws.revision,
        circuits=list(ws.circuits), experiments=list(ws.experiments), graphs=list(ws.graphs),
    )
    for target, source in ((copy.samples, ws.samples), (copy.removed, ws.removed)):
        for key, st in list(source.items()):
            target[key] = SampleState(
                st.sample, st.preset, st.curve, None if st.attribution is None else dict(st.attribution), list(st.choices), list(st.runs), st.note
            )
    return copy


snapshot = _snapshot


class SessionStore:
    """One session folder to save into (created on the first save)."""

    def __init__(self, path: str | Path, *, revision: int | None = None, created: str | None = None, extra: dict | None = None):
        self.path = Path(path)
        self.revision = revision  # the revision this process last read or wrote (None: a new session)
        self.created = created
        self.extra = dict(extra or {})  # manifest fields kept from an opened session (source, migrated_from, ...)

    @classmethod
    def new(cls, sessions_dir: str | Path, name: str) -> "SessionStore":
        folder = Path(sessions_dir) / check_name(name)
        if folder.exists() and (folder / MANIFEST).exists():
            raise ListerError(f"a session called {name!r} exists already in {sessions_dir}; choose another name")
        return cls(folder)

    @classmethod
    def of(cls, opened: OpenedSession) -> "SessionStore":
        keep = {k: opened.manifest[k] for k in ("source", "migrated_from") if k in opened.manifest}
        # a migrated session has no tables of the new format yet: treat it as unsaved
        return cls(opened.path, revision=opened.revision, created=opened.manifest.get("created"), extra=keep)

    @property
    def name(self) -> str:
        return self.path.name

    def _prepare_folder(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            exclusive_file(self.path, "probe").unlink()  # O_EXCL, unpredictable name: never a planted symlink
        except OSError as exc:
            raise _writable_error(self.path.parent, exc) from exc

    def save(
        self,
        ws: Workspace,
        model: ModelInfo,
        *,
        decode: Callable[[list[int]], str] | None = None,
        token_string: Callable[[int], str] | None = None,
        on_conflict: Literal["error", "overwrite"] = "error",
    ) -> dict:
        """Write ``ws`` as the session's next revision; returns the manifest written."""
        rows = workspace_rows(ws, decode, token_string)
        blobs = {name: parquet_bytes(to_arrow(name, r)) for name, r in rows.items()}
        self._prepare_folder()
        try:
            with session_lock(self.path):
                return self._save_locked(ws, model, rows, blobs, on_conflict)
        except OSError as exc:
            raise _writable_error(self.path.parent, exc) from exc

    def _save_locked(self, ws, model: ModelInfo, rows, blobs, on_conflict) -> dict:
        previous: dict | None = None
        if (self.path / MANIFEST).exists():
            try:
                previous = read_manifest(self.path)
            except ListerError:
                previous = None  # a damaged manifest is replaced by a complete one
        prev_rev = int(previous.get("revision", 0)) if previous and "format_version" in previous else None
        if previous is not None and on_conflict == "error" and prev_rev is not None and prev_rev != (self.revision or 0):
            writer = previous.get("writer", {})
            raise SessionConflict(
                f"session {self.name} was saved by another lister-tui (pid {writer.get('pid')} on {writer.get('host')}, "
                f"at {previous.get('updated')}) since this one opened it; save under another name (save as), or reopen it"
            )
        if previous is not None and previous.get("format_version") != FORMAT_VERSION:
            backup = self.path / f"manifest.v{manifest_version(previous)}.json"
            if not backup.exists():
                atomic_write_bytes(backup, (self.path / MANIFEST).read_bytes())
        revision = (prev_rev or 0) + 1
        old_tables = (previous or {}).get("tables", {}) if previous and previous.get("format_version") == FORMAT_VERSION else {}
        tables = {}
        for name, data in blobs.items():
            digest = hashlib.sha256(data).hexdigest()
            old = old_tables.get(name) or {}
            if old.get("sha256") == digest and (self.path / str(old.get("file"))).is_file():
                file = old["file"]  # unchanged: keep the file the previous manifest names
            else:
                file = f"{name}.r{revision:06d}.parquet"
                atomic_write_bytes(self.path / file, data)
            tables[name] = {"file": file, "rows": len(rows[name]), "sha256": digest, "description": TABLE_DESCRIPTIONS[name]}
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "created": self.created or (previous or {}).get("created") or now(),
            "updated": now(),
            "revision": revision,
            "lister_tui_version": lister_version(),
            "writer": {"pid": os.getpid(), "host": socket.gethostname()},
            "model": model.to_dict(),
            **workspace_fields(ws),
            **self.extra,
            "tables": tables,
        }
        text = json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n"
        atomic_write_bytes(self.path / MANIFEST, text.encode("utf-8"))
        self.revision = revision
        self.created = manifest["created"]
        self._collect_garbage({t["file"] for t in tables.values()})
        return manifest

    def _collect_garbage(self, keep: set[str]) -> None:
        """Delete table files no manifest names, and temporary files of dead writers."""
        for p in self.path.iterdir():
            if _TABLE_FILE_RE.match(p.name) and p.name not in keep:
                p.unlink(missing_ok=True)
        remove_dead_temporaries(self.path)
