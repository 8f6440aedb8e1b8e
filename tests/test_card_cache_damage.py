"""The feature cards' activation cache heals: a damaged file is named, moved aside and recomputed
(never a failure on every later run); a cache computed from something else is refused; a killed
pass's temporary files are removed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lister_tui.core.study import corpus as corpus_mod
from lister_tui.core.study.corpus import corpus_activations, part_from_texts


@pytest.fixture()
def part(tiny):
    return part_from_texts(tiny, "tiny text", ["<bos>- Apple\n- Pear \n- Plum\n", "<bos>- Oak \n- Elm\n"], ["a", "b"])


def cached(tiny, part, folder, sae="res_2"):
    acts = corpus_activations(tiny, sae, part, cache=folder)
    files = sorted((folder / "activations").glob(f"lister-tiny-{sae}-*.npz"))
    assert len(files) == 1
    return acts, files[0]


def same(a, b):
    for name in ("indptr", "positions", "values", "doc_starts"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.d_sae, a.n_tokens, a.n_counted) == (b.d_sae, b.n_tokens, b.n_counted)


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def empty(path):
    path.write_bytes(b"")


def reverse_indptr(path):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["indptr"] = arrays["indptr"][::-1].copy()
    np.savez(path.with_suffix(""), **arrays)  # np.savez adds .npz back


def unsorted_positions(path):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    rows = np.diff(arrays["indptr"])
    f = int(np.flatnonzero(rows >= 2)[0])
    lo = int(arrays["indptr"][f])
    arrays["positions"][lo : lo + 2] = arrays["positions"][lo : lo + 2][::-1].copy()
    np.savez(path.with_suffix(""), **arrays)


@pytest.mark.parametrize("damage", [truncate, flip, empty, reverse_indptr, unsorted_positions], ids=lambda f: f.__name__)
def test_a_damaged_cache_is_moved_aside_recomputed_and_named(tiny, part, tmp_path, damage):
    fresh, path = cached(tiny, part, tmp_path)
    damage(path)
    notices = []
    healed = corpus_activations(tiny, "res_2", part, cache=tmp_path, on_notice=notices.append)
    same(healed, fresh)
    assert len(notices) == 1 and str(path) in notices[0] and "damaged" in notices[0] and "recomputed" in notices[0]
    aside = list(path.parent.glob(path.name + ".damaged-*"))
    assert len(aside) == 1 and aside[0].name in notices[0]
    # the cache was written again, whole: the next run reads it without a pass and without a notice
    later = []
    same(corpus_activations(tiny, "res_2", part, cache=tmp_path, on_notice=later.append), fresh)
    assert later == []


def test_another_saes_cache_renamed_into_place_is_refused(tiny, part, tmp_path):
    fresh, path = cached(tiny, part, tmp_path, "res_2")
    _, other = cached(tiny, part, tmp_path, "res_1")
    shutil.copyfile(other, path)  # res_1's pass under res_2's name (both have the same width)
    notices = []
    healed = corpus_activations(tiny, "res_2", part, cache=tmp_path, on_notice=notices.append)
    same(healed, fresh)
    assert len(notices) == 1 and "computed from something else" in notices[0] and "sae" in notices[0]


def test_the_cache_records_what_it_was_computed_from(tiny, part, tmp_path):
    _, path = cached(tiny, part, tmp_path)
    import json

    with np.load(path, allow_pickle=False) as z:
        record = json.loads(str(z["provenance"][()]))
    assert record["sae"] == "res_2" and record["corpus_sha256"] == part.digest and record["format"] == corpus_mod.CACHE_FORMAT
    assert set(record["weights"]["sha256"]) >= {"model.safetensors", "saes/res_2/sae_weights.safetensors"}


def test_a_killed_passs_temporary_files_are_removed_and_a_live_ones_kept(tiny, part, tmp_path):
    folder = tmp_path / "activations"
    folder.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead = folder / f".lister-tiny-res_2-x.npz.1a2b3c.tmp-{int(gone.stdout)}"
    live = folder / f".lister-tiny-res_2-y.npz.4d5e6f.tmp-{os.getpid()}"
    dead.write_bytes(b"half a pass")
    live.write_bytes(b"a pass being written")
    corpus_activations(tiny, "res_2", part, cache=tmp_path)
    assert not dead.exists() and live.exists()


def test_lister_tui_feature_heals_a_damaged_cache_and_says_so(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from lister_tui.cli import app

    monkeypatch.setenv("LISTER_TUI_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "c.txt"
    corpus.write_text("- Apple\n- Pear \n\n- Oak \n- Elm\n")
    args = ["feature", "res_2", "1", "--corpus", str(corpus), "--k", "2"]
    runner = CliRunner(env={"COLUMNS": "300"})
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    (path,) = (tmp_path / "cache" / "activations").glob("*.npz")
    path.write_bytes(b"")  # emptied: before, every later run failed ("Aborted.")
    healed = runner.invoke(app, args)
    said = " ".join(healed.output.split())
    assert healed.exit_code == 0, said
    assert "note: the activation cache" in said and "was damaged" in said and "recomputed" in said
    assert path.stat().st_size > 0 and len(list(path.parent.glob("*.damaged-*"))) == 1
    assert "note:" not in runner.invoke(app, args).output  # healed: the next run is quiet


def test_a_damaged_cache_in_a_read_only_folder_is_still_recomputed_and_said_so(tiny, part, tmp_path, monkeypatch):
    from pathlib import Path

    from lister_tui.core.study import activation_cache

    fresh, path = cached(tiny, part, tmp_path)
    empty(path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(activation_cache.os, "replace", refuse)
    monkeypatch.setattr(Path, "unlink", refuse)
    notices = []
    same(corpus_activations(tiny, "res_2", part, cache=tmp_path, on_notice=notices.append), fresh)
    assert len(notices) == 1 and "left in place" in notices[0] and "Permission denied" in notices[0]
