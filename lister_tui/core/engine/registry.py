"""The model registry's lookup: which :class:`ModelEntry` a name means.

Everything downstream takes a :class:`ModelEntry` (or its name), never a hard-coded
model. Entries come from three places, looked up in this order: entries registered in
this process (a run's ad-hoc ``--sae`` sites), the built-in entries
(:mod:`lister_tui.core.engine.builtins`), and the user's TOML files
(:mod:`lister_tui.core.engine.registry_file`: ``<config>/registry.toml``,
``<config>/models/*.toml`` and ``--registry FILE``). A broken user file never hides a
built-in.

Imports point one way: :mod:`entries` (the types) ← :mod:`builtins`, :mod:`registry_file`
← this module ← :mod:`loading` ← :mod:`prompts`. The types are re-exported here, so
``from lister_tui.core.engine.registry import ModelEntry`` keeps working.
"""

from __future__ import annotations

import os
from pathlib import Path

from lister_tui.core.engine import registry_file
from lister_tui.core.engine.builtins import BUILTINS
from lister_tui.core.engine.entries import (  # noqa: F401  (re-exported: the types' old home)
    HOOK_PATTERN,
    KIND_HOOKS,
    KIND_LABELS,
    LENGTH_GROUPS,
    ModelEntry,
    SAEKind,
    SAESite,
    Template,
    kind_of_hook,
)
from lister_tui.core.engine.registry_file import REGISTRY_ENV, entry_from_record
from lister_tui.core.errors import ListerError

_registered: dict[str, ModelEntry] = {}


def use_registry_files(paths) -> None:
    """Add registry files for this process and the workers it starts (``--registry FILE``)."""
    current = [p for p in os.environ.get(REGISTRY_ENV, "").split(os.pathsep) if p]
    for p in paths or ():
        try:
            path = str(Path(p).expanduser().resolve())
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python 3.11)
            raise ListerError(f"registry file {p} cannot be resolved ({exc}); give a TOML file") from exc
        if not Path(path).is_file():
            raise ListerError(f"registry file {p} does not exist; give a TOML file (see docs/own-models.md)")
        if path not in current:
            current.append(path)
    os.environ[REGISTRY_ENV] = os.pathsep.join(current)


def register_entry(entry: ModelEntry) -> None:
    """Make ``entry`` what ``get_entry(entry.name)`` returns in this process (a run's ad-hoc sites)."""
    _registered[entry.name] = entry


def user_entries() -> tuple[list[ModelEntry], list[str]]:
    """The entries of every registry file (a built-in's name refused), and one problem line per broken one."""
    return registry_file.user_entries(reserved=BUILTINS)


def registry_names() -> tuple[str, ...]:
    entries, _problems = user_entries()
    return tuple(dict.fromkeys([*BUILTINS, *(e.name for e in entries), *_registered]))


def get_entry(name: str) -> ModelEntry:
    """The registry entry called ``name``."""
    if name in _registered:
        return _registered[name]
    if name in BUILTINS:
        return BUILTINS[name]()
    entries, problems = user_entries()
    for entry in entries:
        if entry.name == name:
            return entry
    hint = "".join(f"\n  ({p})" for p in problems)
    raise ListerError(
        f"unknown model {name!r}; registry entries: {', '.join([*BUILTINS, *(e.name for e in entries)])} "
        f"(`lister-tui models` lists them; add your own in a TOML file){hint}"
    )


def entry_for(name: str, record: dict | None) -> ModelEntry:
    """The entry a session or sweep made with ``name`` (and recorded as ``record``) loads with: the
    registry's when it still has every recorded site as recorded, else the record itself (a user
    entry, or ad-hoc sites, from another machine), registered for this process."""
    try:
        entry = get_entry(name)
    except ListerError:
        if record is None:
            raise
        entry = None
    if record is not None:
        recorded = {(s["id"], s.get("hook_name"), s.get("release"), s.get("sae_id"), s.get("path")) for s in record.get("sites", [])}
        current = {(s.id, s.hook_name, s.release, s.sae_id, None if s.path is None else str(s.path)) for s in entry.sites} if entry else set()
        if entry is None or not recorded <= current:
            entry = entry_from_record(record)
            register_entry(entry)
    return entry


# What decides a sampled row: a change to one of these between a sweep's record and the registry
# would mix rows of two set-ups in one table.
ROW_FIELDS = ("source", "hf_model_name", "folder", "dtype", "chat_template", "chat_prefix", "chat_suffix", "list_marker",
              "metric_tokens", "stop_tokens", "bos_token", "templates")  # fmt: skip
_SITE_SOURCE = ("hook_name", "release", "sae_id", "path", "fingerprint")


def entry_changes(recorded: dict, current: dict, used_sites) -> tuple[list[str], list[str]]:
    """What changed from a recorded entry to the registry's: ``(changes, incompatible)``, each a line.
    Incompatible: a field of :data:`ROW_FIELDS`, or the source of a site in ``used_sites``."""
    changes, incompatible = [], []
    for key in sorted(set(recorded) | set(current)):
        if key in ("sites", "origin", "name") or recorded.get(key) == current.get(key):
            continue
        line = f"{key}: {recorded.get(key)!r} -> {current.get(key)!r}"
        (incompatible if key in ROW_FIELDS else changes).append(line)
    old = {s["id"]: s for s in recorded.get("sites", [])}
    new = {s["id"]: s for s in current.get("sites", [])}
    for site_id in sorted(set(old) | set(new)):
        a, b = old.get(site_id), new.get(site_id)
        if a is None or b is None:
            changes.append(f"site {site_id}: {'added' if a is None else 'no longer in the registry (the recorded one is kept)'}")
            continue
        moved = [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in _SITE_SOURCE if a.get(k) != b.get(k)]
        if moved:
            (incompatible if site_id in used_sites else changes).append(f"site {site_id}: {', '.join(moved)}")
    return changes, incompatible


def resumed_entry(name: str, record: dict | None, used_sites, has_rows: bool) -> tuple[ModelEntry, list[str]]:
    """The entry a resumed sweep goes on with: the registry's as it is now (a fixed TOML counts), with
    recorded sites it no longer has kept; and what changed. A change that would mix incompatible rows
    is refused when the sweep already has rows; before any row, every change is taken."""
    from lister_tui.core.engine.registry_file import entry_record

    try:
        current = get_entry(name)
    except ListerError:
        return entry_for(name, record), []
    if record is None:
        return current, []
    recorded_sites = {s["id"]: s for s in record.get("sites", [])}
    missing = [entry_from_record(record).site(i) for i in recorded_sites if i not in {s.id for s in current.sites}]
    if missing:
        current = current.with_sites(tuple(missing))
    changes, incompatible = entry_changes(record, entry_record(current), set(used_sites))
    if incompatible and has_rows:
        raise ListerError(
            f"the registry entry {name!r} changed since the sweep ran, and its rows would not compare: "
            f"{'; '.join(incompatible)}. Start a new sweep (--overwrite, or another --out) with the new entry"
        )
    if missing:
        register_entry(current)
    return current, changes + incompatible
