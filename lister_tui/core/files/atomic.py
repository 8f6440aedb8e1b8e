"""Atomic file writes: a reader (or a crash) sees the old complete file or the new one, never a part.

Write to a temporary file in the same folder, fsync it, ``os.replace`` it over the
target, then fsync the folder so the rename itself survives a power cut.

The temporary file gets an unpredictable name and is created with ``O_CREAT | O_EXCL |
O_NOFOLLOW``: a symlink planted at the temporary path is never followed (the create fails and
another name is drawn), and ``os.replace`` replaces a symlink at the target instead of writing
through it. The name ends in ``.tmp-<pid>`` so a later save can remove a dead writer's leftovers.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from lister_tui.core.errors import ListerError


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems can't fsync a folder; the rename is still atomic
    finally:
        os.close(fd)


_EXCL = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def exclusive_file(folder: Path, stem: str, attempts: int = 16) -> Path:
    """A new empty file ``folder/.<stem>.<random>.tmp-<pid>`` that this call created (never an
    existing file or a symlink), closed; the caller writes to it by name and removes it."""
    for _ in range(attempts):
        path = Path(folder) / f".{stem}.{secrets.token_hex(6)}.tmp-{os.getpid()}"
        try:
            fd = os.open(path, _EXCL, 0o644)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise FileExistsError(f"could not create a temporary file in {folder} after {attempts} tries")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` then move ``tmp`` over ``path``; ``path`` is never left half-written."""
    path = Path(path)
    tmp = exclusive_file(path.parent, path.name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never seen half-written."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def check_path_name(path: Path, what: str = "path") -> Path:
    """Refuse, before any work, a path that no file can have: a NUL character, or a name longer than
    the file system allows (checked on the nearest folder that exists; 255 bytes where it cannot say)."""
    path = Path(path)
    if "\x00" in str(path):
        raise ListerError(f"{what} holds a NUL character, which no file name can; give another {what}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > limit:
            raise ListerError(f"{what} has a name of {size} bytes ({part[:40]!r}…); the file system allows {limit}: give a shorter one")
    return path


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists (or cannot be told apart from one that does)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process, or a number no process has: leave the file alone
    return True


def remove_dead_temporaries(folder: Path) -> list[Path]:
    """Remove ``folder``'s ``.<name>.tmp-<pid>`` files whose writer is gone (a killed save or pass);
    returns what was removed. A live writer's temporary file is left alone."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        if p.name.startswith(".") and ".tmp-" in p.name:
            pid = p.name.rsplit(".tmp-", 1)[-1]
            if pid.isdigit() and len(pid) <= 10 and not pid_alive(int(pid)):
                try:
                    p.unlink()
                except OSError:
                    continue
                removed.append(p)
    return removed
