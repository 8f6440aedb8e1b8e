"""Which entry a resumed sweep goes on with: the registry's as it is now, and what changed since it ran.

A fixed registry file counts (a wrong hook corrected, an SAE path moved); a change that would mix
incompatible rows in one table is refused once the sweep has rows
(:func:`lister_tui.core.engine.registry.resumed_entry`).
"""

from __future__ import annotations

from pathlib import Path

from lister_tui.core.engine.entries import ModelEntry
from lister_tui.core.engine.registry import resumed_entry
from lister_tui.core.sweep.output import SHARDS
from lister_tui.core.sweep.settings import SweepSettings


def entry_to_resume(manifest: dict, folder: Path, settings: SweepSettings) -> tuple[ModelEntry, list[str]]:
    """The entry and one line per change since the sweep in ``folder`` (its ``manifest``) ran."""
    model = manifest.get("model") or {}
    record = model.get("entry") if isinstance(model.get("entry"), dict) else None
    name = str(model.get("name") or manifest["settings"]["model"])
    has_rows = any((Path(folder) / SHARDS).glob("*.json")) or (Path(folder) / "generations.parquet").exists()
    used = settings.saes or [s["id"] for s in (record or {}).get("sites", [])]
    return resumed_entry(name, record, used, has_rows)
