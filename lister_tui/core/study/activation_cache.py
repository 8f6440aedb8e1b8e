"""One SAE's activations over one corpus part (compressed sparse rows) and their cache file.

The file records what it was computed from (:func:`lister_tui.core.study.corpus.provenance`:
the model's and the SAE's weights, the SAE's site, the corpus part's tokens, the format), and a
read checks everything a card's slicing relies on, so a truncated, flipped, emptied or foreign
file (another SAE's cache renamed into place, a reversed ``indptr``) is :class:`DamagedCache`,
never a wrong card or a failure on every later run; :func:`move_aside` keeps it for a look
under ``<name>.damaged-<UTC time>``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lister_tui.core.files.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from lister_tui.core.study.corpus import CorpusPart


@dataclass(frozen=True)
class SparseActivations:
    """One SAE's non-zero activations over one corpus part, rows by feature.

    Positions index the part's tokens laid end to end (document ``d`` starts at
    ``doc_starts[d]``); within a feature they ascend.
    """

    d_sae: int
    n_tokens: int  # every token of the part
    n_counted: int  # tokens that count for density (BOS excluded)
    doc_starts: np.ndarray  # [n_docs + 1] int64
    indptr: np.ndarray  # [d_sae + 1] int64
    positions: np.ndarray  # [nnz] int64
    values: np.ndarray  # [nnz] float32

    def feature(self, f: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = int(self.indptr[f]), int(self.indptr[f + 1])
        return self.positions[lo:hi], self.values[lo:hi]


class DamagedCache(ValueError):
    """A cache file that cannot be used: unreadable, of another shape, or computed from something else."""


def _digest(acts: SparseActivations) -> str:
    """sha256 of the arrays as a card reads them (canonical dtypes): a file whose numbers were changed
    in place (values reversed, widened to float64) keeps a valid structure but not this digest."""
    h = hashlib.sha256()
    h.update(np.array([acts.d_sae, acts.n_tokens, acts.n_counted], dtype=np.int64).tobytes())
    for a, dtype in ((acts.doc_starts, np.int64), (acts.indptr, np.int64), (acts.positions, np.int64), (acts.values, np.float32)):
        h.update(np.ascontiguousarray(a, dtype=dtype).tobytes())
    return h.hexdigest()


def save(path: Path, acts: SparseActivations, record: dict) -> None:
    buf = io.BytesIO()
    np.savez(
        buf,
        provenance=np.array(json.dumps(record, sort_keys=True)),
        digest=np.array(_digest(acts)),
        meta=np.array([acts.d_sae, acts.n_tokens, acts.n_counted], dtype=np.int64),
        doc_starts=acts.doc_starts,
        indptr=acts.indptr,
        positions=acts.positions,
        values=acts.values,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def _array(z, name: str, kind: str, ndim: int = 1) -> np.ndarray:
    a = z[name]
    if a.dtype.kind != kind or a.ndim != ndim:
        raise DamagedCache(f"its {name} is {a.dtype}[{a.ndim}-d], not the expected kind")
    return a


def load(path: Path, part: CorpusPart, record: dict, d_sae: int) -> SparseActivations:
    """The cached pass at ``path``, every array checked; :class:`DamagedCache` says what is wrong.

    The checks are what a card's slicing relies on: the provenance equals ``record`` (another
    SAE's or another corpus's cache renamed into place is refused), ``indptr`` starts at 0, never
    decreases and ends at the number of activations, positions lie inside the corpus and ascend
    within each feature, values are finite and positive, document starts equal the corpus's.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            if "provenance" not in z.files:
                raise DamagedCache("it records no provenance (an older or foreign file)")
            saved = json.loads(str(z["provenance"][()]))
            if saved != record:
                differ = sorted(k for k in set(saved) | set(record) if saved.get(k) != record.get(k)) if isinstance(saved, dict) else ["everything"]
                raise DamagedCache(f"it was computed from something else ({', '.join(differ)} differ)")
            meta = _array(z, "meta", "i")
            if meta.shape != (3,):
                raise DamagedCache(f"its meta holds {meta.shape[0]} values, not 3")
            n_sae, n_tokens, n_counted = (int(v) for v in meta)
            acts = SparseActivations(
                n_sae, n_tokens, n_counted,
                _array(z, "doc_starts", "i").astype(np.int64), _array(z, "indptr", "i").astype(np.int64),
                _array(z, "positions", "i").astype(np.int64), _array(z, "values", "f").astype(np.float32),
            )  # fmt: skip
            if "digest" not in z.files or str(z["digest"][()]) != _digest(acts) or z["values"].dtype != np.float32:
                raise DamagedCache("its numbers differ from the checksum it was saved with")
    except DamagedCache:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise DamagedCache(f"it cannot be read ({type(exc).__name__}: {exc})") from None
    _check_structure(acts, part, d_sae)
    return acts


def _check_structure(acts: SparseActivations, part: CorpusPart, d_sae: int) -> None:
    if acts.d_sae != d_sae:
        raise DamagedCache(f"it is for {acts.d_sae} features, the SAE has {d_sae}")
    if acts.n_tokens != part.n_tokens or not 0 <= acts.n_counted <= acts.n_tokens:
        raise DamagedCache(f"it counts {acts.n_tokens} tokens ({acts.n_counted} counted), the corpus has {part.n_tokens}")
    starts = np.zeros(len(part.docs) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in part.docs], out=starts[1:])
    if acts.doc_starts.shape != starts.shape or not np.array_equal(acts.doc_starts, starts):
        raise DamagedCache("its document starts differ from the corpus's")
    indptr, positions, values = acts.indptr, acts.positions, acts.values
    if indptr.shape != (d_sae + 1,) or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise DamagedCache("its indptr is not a row index (it must start at 0 and never decrease)")
    if int(indptr[-1]) != positions.size or positions.size != values.size:
        raise DamagedCache(f"its indptr ends at {int(indptr[-1])} but it holds {positions.size} positions and {values.size} values")
    if positions.size:
        if positions.min() < 0 or positions.max() >= acts.n_tokens:
            raise DamagedCache(f"a position lies outside the corpus's {acts.n_tokens} tokens")
        if not np.all(np.isfinite(values)) or values.min() <= 0:
            raise DamagedCache("an activation is not a finite positive number")
        rows = np.repeat(np.arange(d_sae), np.diff(indptr))
        same_row = rows[1:] == rows[:-1]
        if np.any(np.diff(positions)[same_row] <= 0):
            raise DamagedCache("a feature's positions do not ascend")


def move_aside(path: Path) -> str:
    """``path`` renamed to ``<name>.damaged-<UTC time>`` (kept for a look, out of the way), else removed;
    returns what was done, in words."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    try:
        os.replace(path, target)
    except OSError:
        try:
            path.unlink()
        except OSError as exc:
            return f"left in place (it can be neither moved nor removed: {exc.strerror or exc})"
        return "removed"
    return f"moved to {target.name}"
