"""Whether a Hugging Face model folder is really there: config, every weights shard, tokenizer.

"Present" means every file a load reads exists and is whole: ``config.json`` parses, the
weights (``model.safetensors``, or every shard an index names) exist with a readable
safetensors header and as many bytes as that header says, and a tokenizer is there
(``tokenizer.json``, ``tokenizer.model``, or GPT-2's ``vocab.json`` + ``merges.txt``). A
folder that lacks some of it is *partial*, and each problem is one line naming the file.
Cheap: headers only, no weights read.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def _json(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))


def _safetensors_problem(path: Path) -> str | None:
    """None when the file's header reads and the file holds every byte the header promises."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{path.name}: empty or truncated (no header)"
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > 100_000_000:
                return f"{path.name}: truncated (header of {n} bytes in a file of {size})"
            header = json.loads(f.read(n))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        if 8 + n + end > size:
            return f"{path.name}: truncated ({size} of {8 + n + end} bytes; a download that did not finish)"
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        return f"{path.name}: unreadable ({type(exc).__name__}: {exc})"
    return None


def _file_problem(path: Path) -> str | None:
    if not path.exists():  # a dangling link of the hub cache counts as missing
        return f"{path.name}: missing"
    if path.suffix == ".safetensors":
        return _safetensors_problem(path)
    try:
        if path.stat().st_size == 0:
            return f"{path.name}: empty"
    except OSError as exc:
        return f"{path.name}: unreadable ({exc.strerror or exc})"
    return None


def weights_problems(folder: Path) -> list[str]:
    for index_name in INDEX_FILES:
        index = folder / index_name
        if index.exists():
            try:
                weight_map = _json(index)["weight_map"]
                shards = sorted(set(weight_map.values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                return [f"{index_name}: unreadable ({type(exc).__name__}); download it again"]
            problems = [p for p in (_file_problem(folder / s) for s in shards) if p]
            missing = [s for s in shards if not (folder / s).exists()]
            if missing:
                problems = [f"weights shards missing: {len(missing)} of {len(shards)} ({', '.join(missing[:4])}{', …' if len(missing) > 4 else ''})"] + [
                    p for p in problems if not p.endswith(": missing")
                ]
            return problems
    for name in WEIGHT_FILES:
        if (folder / name).exists():
            problem = _file_problem(folder / name)
            return [problem] if problem else []
    return ["weights: no model.safetensors (or an index with its shards)"]


def tokenizer_problems(folder: Path) -> list[str]:
    if (folder / "tokenizer.json").exists():
        problem = _file_problem(folder / "tokenizer.json")
        return [problem] if problem else []
    if (folder / "tokenizer.model").exists() or ((folder / "vocab.json").exists() and (folder / "merges.txt").exists()):
        return []
    return ["tokenizer: no tokenizer.json (nor tokenizer.model, nor vocab.json + merges.txt)"]


def folder_problems(folder: Path) -> list[str]:
    """What a load of ``folder`` would miss: one line per missing or broken file (empty: complete)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder}: no such folder"]
    problems = []
    config = folder / "config.json"
    if not config.exists():
        problems.append("config.json: missing")
    else:
        try:
            if not isinstance(_json(config), dict):
                problems.append("config.json: not a JSON object")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            problems.append(f"config.json: unreadable ({type(exc).__name__})")
    return problems + weights_problems(folder) + tokenizer_problems(folder)
