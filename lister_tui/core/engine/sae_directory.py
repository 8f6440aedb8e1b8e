"""The installed SAELens directory of pretrained releases, read without importing sae_lens.

Importing sae_lens imports torch and TransformerLens (seconds on a busy machine), and
`lister-tui models` only needs a release's repository, its sae_ids and their folders. This
reads the same ``pretrained_saes.yaml`` that
``sae_lens.loading.pretrained_saes_directory.get_pretrained_saes_directory()`` reads, and
parses only the block of the release asked for (tests/test_quick_commands.py checks that
every release reads as SAELens reads it).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from lister_tui.core.errors import ListerError


@dataclass(frozen=True)
class Release:
    """What lister-tui reads of one SAELens release (the fields of SAELens's ``PretrainedSAELookup``)."""

    release: str
    repo_id: str
    model: str
    conversion_func: str | None
    saes_map: dict[str, str]  # sae_id -> folder in the repository
    neuronpedia_id: dict[str, str | None]  # sae_id -> its Neuronpedia id (None: no page)


@functools.cache
def _yaml_lines() -> tuple[str, ...]:
    spec = importlib.util.find_spec("sae_lens")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ListerError("SAELens is not installed; reinstall lister-tui (pip install -e .)")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained_saes.yaml"
    return tuple(path.read_text(encoding="utf-8").splitlines())


@functools.cache
def release(name: str) -> Release | None:
    """The release ``name`` of the installed SAELens directory, or None when it has none of that name."""
    import yaml

    lines = _yaml_lines()
    start = next((i for i, line in enumerate(lines) if line.rstrip() == f"{name}:"), None)
    if start is None:
        return None
    # The block ends at the next top-level key (a line that starts with neither a blank nor "-" nor "#").
    end = next((i for i in range(start + 1, len(lines)) if lines[i][:1] not in ("", " ", "-", "#")), len(lines))
    value = yaml.load("\n".join(lines[start:end]), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))[name]
    saes = {str(s["id"]): str(s["path"]) for s in value.get("saes", [])}
    pages = {str(s["id"]): s.get("neuronpedia") for s in value.get("saes", [])}
    return Release(name, value["repo_id"], value["model"], value.get("conversion_func"), saes, pages)


def release_names() -> list[str]:
    """Every release's name, in the file's order."""
    return [line[:-1] for line in _yaml_lines() if line[:1] not in ("", " ", "-", "#") and line.endswith(":")]
