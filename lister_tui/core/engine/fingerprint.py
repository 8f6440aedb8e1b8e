"""A fingerprint of a model's weights, so a saved session knows which weights made it.

Shipped weights (lister-tiny) are hashed with SHA-256, file by file; the hashes are
cached per (path, size, modification time), so an autosave does not re-read the
weights. Pretrained weights are too large to hash on every start: their fingerprint
is the Hugging Face snapshot revision in the local cache. The shape matches the
sweep's manifest (``{"sha256": {file: hex}}`` or ``{"hf_model_name", "hf_revision"}``),
so a sweep's folder and a session can be compared.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

from lister_tui.core.engine.entries import ModelEntry

_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, cached per (path, size, mtime)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _CACHE[key] = digest.hexdigest()
    return _CACHE[key]


def weights_fingerprint(entry: ModelEntry, sae_ids: Sequence[str] | None = None) -> dict:
    """The fingerprint of ``entry``'s model weights and SAEs (every SAE of the entry by default)."""
    sae_ids = [s.id for s in entry.sites] if sae_ids is None else list(sae_ids)
    if entry.source == "shipped" and entry.weights_dir is not None:
        folder = Path(entry.weights_dir)
        files = [folder / "model.safetensors", folder / "model_config.json"]
        for sae_id in sae_ids:
            files += sorted((folder / "saes" / sae_id).glob("*.safetensors"))
            if sae_id.startswith("tc_") and sae_id[3:].isdigit():  # a transcoder site
                files += sorted((folder / "transcoders" / f"mlp_{sae_id[3:]}").glob("*.safetensors"))
        return {"sha256": {str(p.relative_to(folder)): file_sha256(p) for p in files if p.is_file()}}
    if entry.hf_folder is not None:
        folder = Path(entry.hf_folder)
        return {"hf_folder": str(folder), "folder_key": model_folder_key(folder) if folder.is_dir() else None}
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(entry.hf_model_name, "config.json")
        parts = Path(hit).parts if isinstance(hit, str) else ()
        revision = parts[parts.index("snapshots") + 1] if "snapshots" in parts else None
    except Exception:
        revision = None
    return {"hf_model_name": entry.hf_model_name, "hf_revision": revision}


def fingerprint_differences(saved: dict | None, current: dict | None) -> list[str]:
    """What differs between two fingerprints (files only present in one side are ignored)."""
    if not saved or not current:
        return []
    if "sha256" in saved and "sha256" in current:
        a, b = saved["sha256"], current["sha256"]
        return sorted(name for name in set(a) & set(b) if a[name] != b[name])
    out = []
    for key in ("hf_model_name", "hf_revision", "folder_key"):
        if saved.get(key) and current.get(key) and saved[key] != current[key]:
            out.append(key)
    return out


def folder_fingerprint(folder: Path) -> dict:
    """SHA-256 of a SAE folder's files (cfg.json and weights), to tell a copy from another SAE."""
    folder = Path(folder)
    if not folder.is_dir():
        return {"missing": str(folder)}
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".npz"))
    return {"sha256": {p.name: file_sha256(p) for p in files}}


def model_folder_key(folder: Path) -> str:
    """A fingerprint of a Hugging Face model folder without reading its weights: config.json's bytes
    and every file's name, size and modification time (a changed or re-downloaded file changes it)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() or p.is_symlink()):
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        if path.name == "config.json":
            digest.update(path.read_bytes())
    return digest.hexdigest()[:32]
