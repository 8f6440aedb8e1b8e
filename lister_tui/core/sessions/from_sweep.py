"""Open a sweep's output folder as a session.

A sweep's tables hold list metrics and text, not token ids; its manifest holds what
is needed to get them back exactly: the model, the sampling values and every
attributed sample's (template, topic, sample, seed). Opening a sweep samples those
lists again with their seeds (the same lists, given the same weights: the manifest's
fingerprint is checked) into a new session that records the sweep as its source;
the sweep's own tables come with the session's exports (``sweep_*``).
"""

from __future__ import annotations

from pathlib import Path

from lister_tui.core.engine.fingerprint import fingerprint_differences, weights_fingerprint
from lister_tui.core.engine.generation import sample_lists
from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.engine.prompts import PromptSpec
from lister_tui.core.engine.sampling import SamplingSettings
from lister_tui.core.errors import ListerError
from lister_tui.core.files.json_read import parse_json
from lister_tui.core.sessions.schema import MANIFEST
from lister_tui.core.sessions.workspace import Workspace
from lister_tui.core.study.settings import SAMPLING_PRESETS


def read_sweep_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    try:
        manifest = parse_json(path.read_text(encoding="utf-8"), str(path))
    except ListerError:
        raise
    except (OSError, ValueError) as exc:
        raise ListerError(f"cannot read the sweep manifest {path} ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("tool") != "lister-tui sweep":
        raise ListerError(f"{path} is not a sweep's manifest (field tool is not 'lister-tui sweep')")
    return manifest


def sweep_model_name(manifest: dict) -> str:
    try:
        return str(manifest["model"]["name"])
    except (KeyError, TypeError):
        raise ListerError(f"sweep {MANIFEST}: field model.name is missing") from None


def _preset_of(settings: dict) -> str:
    values = settings.get("sampling") or {}
    try:
        sampling = SamplingSettings(**values)
    except ListerError as exc:
        raise ListerError(f"sweep {MANIFEST}: field settings.sampling: {exc}") from exc
    except TypeError as exc:
        raise ListerError(f"sweep {MANIFEST}: field settings.sampling is invalid ({exc})") from exc
    preferred = settings.get("sampling_preset")
    if preferred in SAMPLING_PRESETS and SAMPLING_PRESETS[preferred] == sampling:
        return preferred
    for name, preset in SAMPLING_PRESETS.items():
        if preset == sampling:
            return name
    raise ListerError(
        f"the sweep sampled with custom values ({values}); the explorer samples with its presets "
        f"({', '.join(SAMPLING_PRESETS)}), so this sweep cannot be opened as a session (its tables stay readable with pandas)"
    )


def sweep_to_workspace(loaded: LoadedModel, folder: str | Path) -> tuple[Workspace, dict]:
    """The sweep's attributed lists, sampled again from their seeds; and the manifest fields
    that record the sweep as the session's source."""
    folder = Path(folder).resolve()
    manifest = read_sweep_manifest(folder)
    name = sweep_model_name(manifest)
    if name != loaded.entry.name:
        raise ListerError(f"the sweep in {folder} ran on {name}, but {loaded.entry.name} is loaded; open it with --model {name}")
    settings = manifest.get("settings") or {}
    if not isinstance(settings, dict) or not isinstance(settings.get("sampling") or {}, dict):
        raise ListerError(f"sweep {folder / MANIFEST}: field settings (or settings.sampling) is not an object; the manifest is damaged")
    preset = _preset_of(settings)
    try:
        per_sample = manifest["seeds"]["per_sample"]
        specs = [PromptSpec(str(s["template"]), str(s["topic"]), int(s["sample"]), int(s["seed"])) for s in per_sample]
    except (KeyError, TypeError, ValueError) as exc:
        raise ListerError(f"sweep {folder / MANIFEST}: field seeds.per_sample is missing or invalid ({exc!r})") from exc
    if not specs:
        raise ListerError(f"the sweep in {folder} has no samples yet (seeds.per_sample is empty)")
    saved_fp = (manifest.get("model") or {}).get("fingerprint")
    differs = fingerprint_differences(saved_fp, weights_fingerprint(loaded.entry, settings.get("saes")))
    samples = sample_lists(loaded, specs, SAMPLING_PRESETS[preset])
    ws = Workspace(loaded.entry.name)
    ws.add_samples(samples, preset)
    note = f"Opened from the sweep in {folder} ({manifest.get('repeat_command', '')})."
    from lister_tui.core.files.process import writer_state

    state, why = writer_state(manifest)
    if state:
        note += f" The sweep is not complete: {why}."
    if differs:
        note += f" Warning: the weights differ from the sweep's ({', '.join(differs)}), so these lists may differ from the sweep's."
    ws.notes = note
    source = {
        "kind": "sweep",
        "path": str(folder),
        "started": manifest.get("started"),
        "complete": manifest.get("complete"),
        "repeat_command": manifest.get("repeat_command"),
        "weights_differ": differs,
    }
    return ws, {"source": source}
