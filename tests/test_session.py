"""Sessions on disk: round trip, atomic saves, locking, bad input (no model needed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.catalog import list_sessions, resolve_session
from lister_tui.core.sessions.store import SessionConflict, SessionStore, read_session
from lister_tui.core.sessions.schema import FORMAT_VERSION, SCHEMAS
from lister_tui.core.sessions.workspace import AblationChoice, BatchAttribution, Workspace

from session_fixtures import MODEL, VOCAB, assert_same_workspace, decode, make_attribution, make_sample, small_workspace

ROOT = Path(__file__).resolve().parents[1]


def save(ws: Workspace, folder: Path, **kw) -> dict:
    return SessionStore(folder, **kw).save(ws, MODEL, decode=decode, token_string=lambda i: VOCAB.get(i, "?"))


def test_round_trip_of_a_small_workspace(tmp_path):
    ws = small_workspace("session notes")
    first = next(iter(ws.samples))
    ws.batch = BatchAttribution([first], {"res_0": make_attribution("res_0", ws.state(first).sample, 3, 5)})
    manifest = save(ws, tmp_path / "s")
    opened = read_session(tmp_path / "s")
    assert_same_workspace(ws, opened.workspace)
    assert opened.vocab == {i: VOCAB[i] for i in opened.vocab} and opened.model == MODEL
    # the manifest describes what is inside, and every table file it names exists with its checksum
    assert manifest["format_version"] == FORMAT_VERSION and manifest["model"]["name"] == "fake-model"
    assert manifest["templates"] == ["short", "long"] and manifest["topics"] == ["Fruits", "Colors"]
    assert set(manifest["saes"]) == {"res_0", "attn_1"} and set(manifest["sampling"]) == {"code", "greedy"}
    assert manifest["counts"] == {"samples": 2, "runs": 1, "attributed": 1, "notes": 1, "removed": 0}
    assert set(manifest["tables"]) == set(SCHEMAS)
    for info in manifest["tables"].values():
        assert (tmp_path / "s" / info["file"]).is_file()
    # the tables are plain Parquet: pandas reads them
    samples = pd.read_parquet(tmp_path / "s" / manifest["tables"]["samples"]["file"])
    assert list(samples["seed"]) == [11, 12] and list(samples["tokens"].map(list)[0]) == list(ws.state(samples["key"][0]).sample.tokens)


tokens_st = st.lists(st.lists(st.integers(6, 19), min_size=1, max_size=4), min_size=1, max_size=5)


@st.composite
def workspaces(draw) -> Workspace:
    ws = Workspace("fake-model", notes=draw(st.text(max_size=30)))
    n = draw(st.integers(1, 4))
    for i in range(n):
        items = draw(tokens_st)
        filler = draw(st.lists(st.booleans(), min_size=len(items), max_size=len(items)))
        metric = draw(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=64)))
        s = make_sample(draw(st.sampled_from(["short", "long", "unspecified"])), draw(st.sampled_from(["Fruits", "Ocean", "Ünïcode · topic"])), i, draw(st.integers(0, 2**31 - 2)), items, filler, metric=metric)
        (key,) = ws.add_samples([s], draw(st.sampled_from(["code", "post", "greedy"])))
        if draw(st.booleans()):
            ws.set_curve(key, draw(st.lists(st.floats(allow_nan=False, width=32), min_size=len(s.tokens), max_size=len(s.tokens))))
        if draw(st.booleans()):
            ws.set_attribution(key, {"res_0": make_attribution("res_0", s, draw(st.integers(0, 5)), draw(st.integers(0, 99)))})
        for _ in range(draw(st.integers(0, 3))):
            ws.toggle(key, AblationChoice(draw(st.sampled_from(["res_0", "attn_1"])), draw(st.integers(0, 15)), draw(st.integers(1, 3)), draw(st.sampled_from(["position", "every"]))))
        ws.set_note(key, draw(st.text(max_size=40)))
    if draw(st.booleans()):
        first = next(iter(ws.samples))
        ws.batch = BatchAttribution([first], {"res_0": make_attribution("res_0", ws.state(first).sample, 3, draw(st.integers(0, 99)))})
    return ws


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ws=workspaces())
def test_round_trip_property(tmp_path_factory, ws):
    folder = tmp_path_factory.mktemp("prop") / "s"
    save(ws, folder)
    assert_same_workspace(ws, read_session(folder).workspace)


def test_unchanged_tables_are_not_rewritten_and_old_files_are_collected(tmp_path):
    ws = small_workspace()
    store = SessionStore(tmp_path / "s")
    m1 = store.save(ws, MODEL)
    key = next(iter(ws.samples))
    ws.set_note(key, "changed")
    m2 = store.save(ws, MODEL)
    assert m2["revision"] == 2
    assert m2["tables"]["runs"]["file"] == m1["tables"]["runs"]["file"]  # unchanged: kept
    assert m2["tables"]["samples"]["file"] != m1["tables"]["samples"]["file"]
    assert not (tmp_path / "s" / m1["tables"]["samples"]["file"]).exists()  # no manifest names it any more


# --- bad input --------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path) -> Path:
    save(small_workspace(), tmp_path / "s")
    return tmp_path / "s"


def test_truncated_manifest_is_a_clear_error(saved):
    text = (saved / "manifest.json").read_text()
    (saved / "manifest.json").write_text(text[: len(text) // 2])
    with pytest.raises(ListerError, match=r"manifest.json is not valid JSON \(line \d+.*corrupt or truncated"):
        read_session(saved)
    (saved / "manifest.json").write_text("")
    with pytest.raises(ListerError, match="manifest.json is empty"):
        read_session(saved)


def test_manifest_without_a_field_names_it(saved):
    m = json.loads((saved / "manifest.json").read_text())
    del m["tables"]
    (saved / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ListerError, match="field tables is missing"):
        read_session(saved)
    (saved / "manifest.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ListerError, match="field format_version is missing"):
        read_session(saved)


def test_missing_and_corrupt_table_files(saved):
    m = json.loads((saved / "manifest.json").read_text())
    runs = saved / m["tables"]["runs"]["file"]
    data = runs.read_bytes()
    runs.write_bytes(data[:100])
    with pytest.raises(ListerError, match=r"table file .*runs\.r000001\.parquet \(table 'runs'\) does not match its checksum"):
        read_session(saved)
    runs.unlink()
    with pytest.raises(ListerError, match=r"table file .*runs\.r000001\.parquet \(table 'runs', listed in manifest.json\) is missing"):
        read_session(saved)


def test_newer_format_is_refused(saved):
    m = json.loads((saved / "manifest.json").read_text())
    m["format_version"] = FORMAT_VERSION + 1
    (saved / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ListerError, match=rf"format version {FORMAT_VERSION + 1}, written by a newer lister-tui.*Upgrade"):
        read_session(saved)
    (info,) = list_sessions(saved.parent)
    assert info.problem is not None and "newer" in info.problem


V0_MANIFEST = {
    "version": 0,
    "model": "fake-model",
    "name": "old",
    "created": "2024-05-01T10:00:00+00:00",
    "notes": "an old session",
    "token_ids": {"blank": 3, "newline": 4, "item_marker": 2, "stops": [5], "bos": 1},
    "samples": [
        {
            "template": "short", "topic": "Fruits", "sample": 0, "seed": 11, "preset": "code", "prompt_len": 4,
            "tokens": [1, 6, 7, 2, 8, 9, 4, 2, 10, 3, 4, 5], "stopped": True, "note": "from v0",
            "metrics": {"n_items": 2, "n_tokens": 8, "repeated_items": 0, "diversity": 0.6931471805599453, "filler_count": 1, "filler_items": [1], "reached_end": True},
            "ablation": [["res_0", 3, 5, "position"]],
        }
    ],
}


def test_v0_session_is_migrated_and_saved_as_v1(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(V0_MANIFEST))
    opened = read_session(folder)
    assert opened.migrated_from == 0
    ws = opened.workspace
    (key,) = ws.samples
    st_ = ws.state(key)
    expected = make_sample("short", "Fruits", 0, 11, [[8, 9], [10]], [False, True])
    assert st_.sample.tokens == expected.tokens and st_.sample.structure == expected.structure
    assert st_.sample.metrics.n_items == 2 and st_.note == "from v0" and ws.notes == "an old session"
    assert st_.choices == [AblationChoice("res_0", 3, 5, "position")]
    # the next save writes the current format and keeps the old manifest
    store = SessionStore.of(opened)
    manifest = store.save(ws, MODEL)
    assert manifest["format_version"] == FORMAT_VERSION and manifest["migrated_from"] == 0
    assert json.loads((folder / "manifest.v0.json").read_text())["version"] == 0
    assert_same_workspace(ws, read_session(folder).workspace)


def test_v0_without_token_ids_names_the_field(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    bad = dict(V0_MANIFEST)
    del bad["token_ids"]
    (folder / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(ListerError, match="field token_ids is missing"):
        read_session(folder)


def test_unwritable_sessions_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ListerError, match=r"cannot write to the sessions folder .*a-file.*--sessions-dir or the LISTER_TUI_SESSIONS"):
        SessionStore(blocker / "s").save(small_workspace(), MODEL)


def test_not_a_session_and_unknown_names(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ListerError, match="has no manifest.json, so it is not a lister-tui session"):
        read_session(tmp_path / "empty")
    save(small_workspace(), tmp_path / "one")
    assert resolve_session("one", tmp_path) == tmp_path / "one"
    with pytest.raises(ListerError, match=r"no session 'nope'.*sessions in .*: (empty, )?one"):
        resolve_session("nope", tmp_path)
    with pytest.raises(ListerError, match="session name"):
        SessionStore.new(tmp_path, "../escape")


def test_a_second_writer_gets_a_conflict(tmp_path):
    ws = small_workspace()
    first = SessionStore(tmp_path / "s")
    first.save(ws, MODEL)
    other = SessionStore.of(read_session(tmp_path / "s"))
    other.save(ws, MODEL)  # the other process saves
    with pytest.raises(SessionConflict, match="was saved by another lister-tui .* save under another name"):
        first.save(ws, MODEL)
    first.save(ws, MODEL, on_conflict="overwrite")
    assert read_session(tmp_path / "s").revision == 3


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from tests.session_fixtures import MODEL, small_workspace
    from lister_tui.core.sessions.store import SessionStore
    folder, tag, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = SessionStore(folder)
    for step in range(1, steps + 1):
        ws = small_workspace(f"{{tag}} {{step}}")
        for key in ws.samples:
            ws.set_note(key, f"{{tag}} {{step}}")
        store.save(ws, MODEL, on_conflict="overwrite")
        print(step, flush=True)
    """
)


def _writer(tmp_path: Path, folder: Path, tag: str, steps: int) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(root=str(ROOT)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(script), str(folder), tag, str(steps)], stdout=subprocess.PIPE, text=True, env=env)


def _consistent_step(folder: Path) -> tuple[str, int]:
    """Every note of the session says the same "tag step": no state mixes two saves."""
    ws = read_session(folder).workspace
    notes = {ws.notes} | {st.note for st in ws.samples.values()}
    assert len(notes) == 1, notes
    tag, step = notes.pop().split()
    return tag, int(step)


def test_kill_9_mid_save_loses_at_most_the_last_change(tmp_path):
    folder = tmp_path / "s"
    proc = _writer(tmp_path, folder, "w", 100000)
    last = 0
    deadline = time.monotonic() + 20
    while last < 15 and time.monotonic() < deadline:  # let it save a few times, then kill it mid-flight
        line = proc.stdout.readline()
        if line.strip():
            last = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for line in proc.stdout.read().split():
        last = int(line)
    assert last >= 15
    tag, step = _consistent_step(folder)
    assert step in (last, last + 1)  # the last reported save, or the one in flight if it completed
    # and the session can be saved into again
    SessionStore.of(read_session(folder)).save(small_workspace("after"), MODEL)
    assert read_session(folder).workspace.notes == "after"


def test_two_writers_never_interleave(tmp_path):
    folder = tmp_path / "s"
    procs = [_writer(tmp_path, folder, tag, 12) for tag in ("a", "b")]
    for p in procs:
        p.communicate(timeout=120)
        assert p.returncode == 0
    tag, step = _consistent_step(folder)
    assert step == 12
    assert read_session(folder).revision == 24  # every save was a whole revision
    left = sorted(p.name for p in folder.iterdir() if p.suffix == ".parquet")
    assert len(left) == len(SCHEMAS)  # old revisions' files collected, no temporary files


def test_a_session_saved_before_the_attribution_method_column_reads_as_activation_x_gradient(tmp_path):
    import hashlib

    import pyarrow.parquet as pq

    ws = small_workspace()
    manifest = save(ws, tmp_path / "s")
    info = manifest["tables"]["attribution_summary"]
    path = tmp_path / "s" / info["file"]
    older = pq.read_table(path).drop_columns(["method", "ig_steps"])
    pq.write_table(older, path)
    info["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(manifest))
    opened = read_session(tmp_path / "s").workspace
    first = next(iter(ws.samples))
    assert ws.state(first).attribution["attn_1"].method == "ig"  # what was saved, before the columns were dropped
    assert {a.method for a in opened.state(first).attribution.values()} == {"grad"}
    assert {a.ig_steps for a in opened.state(first).attribution.values()} == {0}


def test_a_session_saved_before_the_empty_items_column_counts_them_from_its_tokens(tmp_path):
    import hashlib

    import pyarrow.parquet as pq

    from dataclasses import replace

    from session_fixtures import IDS
    from lister_tui.core.engine.listing import parse_structure

    ws = Workspace("fake-model")
    # two items, then a trailing "- " line the model left empty before the end token
    sample = make_sample("short", "Fruits", 0, 11, [[8, 9], [10]], [False, False])
    tokens = list(sample.tokens[:-1]) + [2, 3, 4, 5]
    sample = replace(sample, tokens=tuple(tokens), structure=parse_structure(tokens, IDS, sample.prompt_len - 1), metrics=replace(sample.metrics, empty_items=1))
    (key,) = ws.add_samples([sample], "code")
    manifest = save(ws, tmp_path / "s")
    assert read_session(tmp_path / "s").workspace.state(key).sample.metrics.empty_items == 1  # saved as a column
    info = manifest["tables"]["samples"]
    path = tmp_path / "s" / info["file"]
    older = pq.read_table(path)
    assert older.column("empty_items").to_pylist() == [1]
    pq.write_table(older.drop_columns(["empty_items"]), path)
    info["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(manifest))
    opened = read_session(tmp_path / "s").workspace.state(key).sample.metrics
    assert (opened.n_items, opened.empty_items) == (2, 1)  # the older file: counted from the saved tokens
