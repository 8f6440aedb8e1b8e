"""Opening a session for the explorer: which model to use, and whether it can be saved to.

- the session's model is loaded (or the one already loaded is used, if it is the
  same registry entry); if it cannot be (no weights here, an unknown name), the
  session opens **read-only** on an :class:`~lister_tui.core.sessions.offline.OfflineModel`
  that shows what was saved and computes nothing;
- if the weights' fingerprint differs from the one the session recorded (e.g. a
  retrained lister-tiny), the model is usable but the session is not written to
  (its lists came from other weights): new work goes to a new session (save as);
- a sweep's output folder becomes a new session in the sessions folder
  (:mod:`lister_tui.core.sessions.from_sweep`), or reopens the one made from it before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lister_tui.core.engine.fingerprint import fingerprint_differences, weights_fingerprint
from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.catalog import is_sweep_folder, list_sessions
from lister_tui.core.sessions.offline import offline_model
from lister_tui.core.sessions.schema import ModelInfo
from lister_tui.core.sessions.store import OpenedSession, SessionStore, check_name, read_session


@dataclass
class SessionView:
    opened: OpenedSession
    lab: object  # LoadedModel or OfflineModel
    store: SessionStore | None  # None: read-only
    banner: str | None = None
    notice: str | None = None


def model_info(loaded) -> ModelInfo:
    """What a session records of ``loaded`` (with the fingerprint of its weights)."""
    return ModelInfo.from_loaded(loaded, weights_fingerprint(loaded.entry))


def session_entry(info: ModelInfo):
    """The entry to load a session with (see :func:`registry_file.entry_for`)."""
    from lister_tui.core.engine.registry import entry_for

    return entry_for(info.name, info.entry)


def _missing(entry) -> list[str]:
    """What a session's model lacks here, as download commands or folder paths."""
    if entry is None:
        return []
    from lister_tui.core.engine.pretrained import missing_pretrained_files

    try:
        return [line.strip() for line in missing_pretrained_files(entry)]
    except ListerError:
        return []


def view_session(opened: OpenedSession, loaded=None, *, device: str | None = None, dtype: str | None = None, read_only: bool = False) -> SessionView:
    """Pair an opened session with a model: ``loaded`` if given, else its own model loaded now."""
    name = opened.model.name
    banner = None
    if loaded is not None and loaded.entry.name != name:
        raise ListerError(
            f"session {opened.name} was made with {name}, but the explorer has {loaded.entry.name} loaded; "
            f"quit and run `lister-tui open {opened.path}`"
        )
    if loaded is None:
        from lister_tui.core.engine.loading import load_model

        entry = None
        try:
            entry = session_entry(opened.model)
            loaded = load_model(entry, device=device, dtype=dtype)
        except ListerError as exc:
            reason = str(exc).splitlines()[0].split(". Download")[0].rstrip(":. ")
            lab = offline_model(opened.model, opened.vocab, reason)
            missing = _missing(entry)
            banner = f"READ-ONLY: {name} is not available here ({reason}). Showing what was saved; nothing can be computed or saved."
            if missing:
                banner += " Missing: " + "; ".join(missing)
            return SessionView(opened, lab, None, banner)
    differs = fingerprint_differences(opened.model.fingerprint, weights_fingerprint(loaded.entry))
    store = None if read_only else SessionStore.of(opened)
    if differs:
        store = None
        banner = (
            f"READ-ONLY: the weights of {name} differ from the ones this session was made with ({', '.join(differs[:3])}); "
            "replays may not match. New work is not saved here: save it as a new session (ctrl+s)."
        )
    elif read_only:
        banner = "READ-ONLY (--read-only): nothing is saved to this session; save as (ctrl+s) to keep changes."
    notice = None
    if opened.migrated_from is not None:
        notice = f"session {opened.name} is in the older format {opened.migrated_from}; it is migrated and saved in the current format on the next change"
    return SessionView(opened, loaded, store, banner, notice)


def open_sweep(folder: Path, loaded, sessions_dir: Path) -> OpenedSession:
    """The session made from the sweep in ``folder`` (made now, sampling its lists again, if new)."""
    from lister_tui.core.sessions.from_sweep import sweep_to_workspace

    folder = Path(folder).resolve()
    for info in list_sessions(sessions_dir):
        if info.kind == "session" and info.problem is None:
            try:
                opened = read_session(info.path)
            except ListerError:
                continue
            if (opened.manifest.get("source") or {}).get("path") == str(folder):
                return opened
    ws, extra = sweep_to_workspace(loaded, folder)
    base = check_name(session_name_for(folder.name))
    name, n = base, 1
    while (Path(sessions_dir) / name).exists():
        n += 1
        name = f"{base}-{n}"
    store = SessionStore(Path(sessions_dir) / name, extra=extra)
    store.save(ws, model_info(loaded), decode=loaded.tokenizer.decode, token_string=lambda i: loaded.tokenizer.decode([i]))
    return read_session(store.path)


def session_name_for(folder_name: str) -> str:
    """A valid session name for the session made from a sweep folder of any name ("my sweep",
    "Übersicht" → "sweep-my-sweep", "sweep-Ubersicht")."""
    import re
    import unicodedata

    ascii_name = unicodedata.normalize("NFKD", folder_name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_name).strip("-.") or "folder"
    return f"sweep-{slug}"[:90]


def is_sweep(path: Path) -> bool:
    return is_sweep_folder(path)
