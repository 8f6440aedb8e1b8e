"""Fuzzing of the feature cards' activation cache (an .npz per model, SAE and corpus): its bytes
damaged, and each of its arrays (the format's own keys, read from a cache file) replaced by a wrong
dtype, a wrong length, negative or huge values or a reversed order. Reading the cache again must give
the fresh pass's activations (a damaged file recomputed) or a clear error, never a traceback and
never a silently different card. The cache's healing is fixed on the damage branch: the cases that
fail here are marked so, to be unmarked once it is merged."""

from __future__ import annotations

import io

import numpy as np
from fuzz_inputs import Tally, byte_damage, report

from lister_tui.core.errors import ListerError
from lister_tui.core.study.corpus import corpus_activations, part_from_texts


def _arrays(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _npz(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _array_damage(a: np.ndarray) -> dict[str, np.ndarray]:
    if a.dtype.kind not in "biuf":  # the provenance record (text): another record, none, numbers in its place
        return {"other text": np.array('{"sae": "res_0"}'), "empty": a.reshape(-1)[:0], "numbers": np.arange(3)}
    out = {
        "float64 in place": a.astype(np.float64) + 0.5,
        "one short": a[:-1],
        "empty": a[:0],
        "reversed": a[::-1].copy(),
        "all -1": np.full_like(a, -1),
    }
    if a.dtype.kind in "iu":
        out["int64 max"] = np.full_like(a, np.iinfo(np.int64).max, dtype=np.int64)
    else:
        out["nan"] = np.full_like(a, np.nan)
    return out


def test_a_damaged_activation_cache_heals_or_says_so(tiny, tmp_path):
    part = part_from_texts(tiny, "fuzz text", ["<bos>- Apple\n- Pear \n- Plum\n", "<bos>- Rose \n- Tulip\n"], ["a", "b"])
    fresh = corpus_activations(tiny, "res_1", part, cache=tmp_path)
    (path,) = (tmp_path / "activations").glob("*.npz")
    good = path.read_bytes()
    arrays = _arrays(path)
    cases = {f"bytes: {k}": v for k, v in byte_damage(good, seed=4).items()}
    for key, a in arrays.items():
        for what, bad in _array_damage(a).items():
            cases[f"{key}: {what}"] = _npz({**arrays, key: bad})
    tally = Tally()
    for case, data in cases.items():
        path.write_bytes(data)
        try:
            got = corpus_activations(tiny, "res_1", part, cache=tmp_path)
            same = all(np.array_equal(getattr(got, f), getattr(fresh, f)) for f in ("indptr", "positions", "values", "doc_starts"))
            tally.add(case, same, f"{case}: a different result was returned")
        except ListerError:
            tally.add(case, True)
        except Exception as exc:
            tally.add(case, False, f"{case}: {type(exc).__name__}: {exc}"[:200])
    line = tally.line("card activation cache")
    print(line)
    report(line)
    assert tally.breaks == [], [b[1] for b in tally.breaks[:6]]
