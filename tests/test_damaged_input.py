"""Damaged or hostile sessions and sweeps: each bad field is a ListerError naming the file and the field
(never a traceback, a runaway allocation or a read outside the folder); the listing goes on past a
damaged folder; reads under a save loop never fail; tampered shards are refused by --resume."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from session_fixtures import MODEL, VOCAB, small_workspace
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.schema import to_arrow
from lister_tui.core.sessions.store import SessionStore, parquet_bytes, read_session


def saved(tmp_path: Path, name: str = "s") -> Path:
    folder = tmp_path / name
    SessionStore(folder).save(small_workspace(), MODEL, token_string=lambda i: VOCAB[i])
    return folder


def edit_manifest(folder: Path, change) -> None:
    m = json.loads((folder / "manifest.json").read_text())
    change(m)
    (folder / "manifest.json").write_text(json.dumps(m))


def edit_table(folder: Path, table: str, change, keep_checksum: bool = True) -> None:
    """Rewrite one table's rows with ``change(rows)``; the manifest's checksum is updated (a careful forger)."""
    m = json.loads((folder / "manifest.json").read_text())
    path = folder / m["tables"][table]["file"]
    rows = pq.read_table(io.BytesIO(path.read_bytes())).to_pylist()
    change(rows)
    data = parquet_bytes(to_arrow(table, rows))
    path.write_bytes(data)
    if keep_checksum:
        m["tables"][table]["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(m))


def _set(field, value):
    return lambda m: m.__setitem__(field, value)


MANIFEST_DAMAGE = [
    ("revision abc", _set("revision", "abc"), "field revision is 'abc'"),
    ("revision null", _set("revision", None), "field revision is None"),
    ("revision NaN", _set("revision", float("nan")), "field revision is nan"),
    ("revision 4000 digits", _set("revision", int("9" * 4000)), "holds an integer of 4000 digits"),
    ("source x", _set("source", "x"), "field source is 'x'"),
    ("sampling temperature string", lambda m: m["sampling"]["code"].__setitem__("temperature", "hot"), "field sampling.code: temperature must be a number"),
    ("table file outside the folder", lambda m: m["tables"]["samples"].__setitem__("file", "../../etc/passwd"), "field tables.samples.file"),
    ("model name a number", lambda m: m["model"].__setitem__("name", 5), "field model.name is 5"),
    ("stop ids a string", lambda m: m["model"]["token_ids"].__setitem__("stops", "x"), "field model.token_ids.stops"),
    ("batch keys a number", _set("batch", {"keys": 3}), "field batch.keys"),
]


@pytest.mark.parametrize("change,message", [c[1:] for c in MANIFEST_DAMAGE], ids=[c[0] for c in MANIFEST_DAMAGE])
def test_a_damaged_manifest_field_is_named(tmp_path, change, message):
    folder = saved(tmp_path)
    edit_manifest(folder, change)
    with pytest.raises(ListerError) as err:
        read_session(folder)
    assert message in str(err.value) and "manifest.json" in str(err.value)


def test_a_manifest_nested_100000_deep_is_refused_before_parsing(tmp_path):
    folder = saved(tmp_path)
    (folder / "manifest.json").write_text('{"format_version": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ListerError, match="nests deeper than 64 levels"):
        read_session(folder)
    listed = CliRunner().invoke(app, ["sessions", "--sessions-dir", str(tmp_path)])
    assert listed.exit_code == 0 and "damaged" in listed.output


TABLE_DAMAGE = [
    ("d_sae 10^12", "attribution_summary", lambda rows: rows[0].__setitem__("d_sae", 10**12), "column d_sae is 1000000000000"),
    ("feature past d_sae", "attribution_pairs", lambda rows: rows[0].__setitem__("feature", 10**6), "column feature is 1000000"),
    ("max activation row past its attribution", "max_activations", lambda rows: rows[0].__setitem__("index", 7), "column index is 7"),
    ("token 999999", "samples", lambda rows: rows[0]["tokens"].__setitem__(1, 999_999), "token id 999999"),
    ("token -5", "samples", lambda rows: rows[0]["tokens"].__setitem__(1, -5), "token id -5"),
    ("prompt_len past the tokens", "samples", lambda rows: rows[0].__setitem__("prompt_len", 10_000), "column prompt_len is 10000"),
    ("duplicate sample key", "samples", lambda rows: rows[1].__setitem__("key", rows[0]["key"]), "appears twice"),
    ("choice of an unknown sample", "choices", lambda rows: rows[0].__setitem__("key", "nope"), "sample 'nope' is not in the samples table"),
]


@pytest.mark.parametrize("table,change,message", [c[1:] for c in TABLE_DAMAGE], ids=[c[0] for c in TABLE_DAMAGE])
def test_damaged_table_contents_are_named(tmp_path, table, change, message):
    folder = saved(tmp_path)
    edit_table(folder, table, change)
    with pytest.raises(ListerError) as err:
        read_session(folder)
    assert message in str(err.value) and table in str(err.value)


def test_replay_refuses_a_token_outside_the_vocabulary_with_exit_2(tmp_path):
    folder = saved(tmp_path)
    edit_table(folder, "samples", lambda rows: rows[0]["tokens"].__setitem__(1, 999_999))
    result = CliRunner().invoke(app, ["replay", str(folder)])
    assert result.exit_code == 2 and "token id 999999" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_one_damaged_folder_never_breaks_the_listing(tmp_path):
    good = saved(tmp_path, "good")
    for name, change in (("bad-updated", _set("updated", 5)), ("bad-counts", _set("counts", [1])), ("bad-model", _set("model", [1]))):
        edit_manifest(saved(tmp_path, name), change)
    (tmp_path / "truncated").mkdir()
    (tmp_path / "truncated" / "manifest.json").write_text('{"format_version": 1, "mod')
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["sessions", "--sessions-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("good", "bad-updated", "bad-counts", "bad-model", "truncated"):
        assert name in result.output
    assert "damaged" in result.output
    assert read_session(good).workspace.samples


def test_reads_never_fail_while_a_save_loop_runs(tmp_path):
    """A reader that finds a table file gone (a save moved on and collected it) reads the new manifest."""
    folder = saved(tmp_path)
    ws = small_workspace()
    stop = threading.Event()
    errors: list[Exception] = []

    def save_loop():
        store = SessionStore(folder, revision=read_session(folder).revision)
        i = 0
        while not stop.is_set():
            i += 1
            ws.notes = f"revision {i}"  # every save writes new table files and deletes the old ones
            ws.set_note(next(iter(ws.samples)), f"note {i}")
            try:
                store.save(ws, MODEL, token_string=lambda t: VOCAB[t])
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
                return

    saver = threading.Thread(target=save_loop)
    saver.start()
    reads = 0
    try:
        for _ in range(150):
            opened = read_session(folder)
            assert opened.workspace.samples
            reads += 1
    finally:
        stop.set()
        saver.join()
    assert errors == [] and reads == 150
    assert read_session(folder).revision > 3  # the loop did save while the reads ran


def test_a_save_landing_mid_read_is_read_again_not_called_damage(tmp_path, monkeypatch):
    """Deterministic form of the race: a save (which deletes the table files it replaces) lands
    between the reader's manifest and its tables."""
    from lister_tui.core.sessions import store as store_module

    folder = saved(tmp_path)
    store = SessionStore(folder, revision=read_session(folder).revision)
    real = store_module._read_table
    landed = []

    def read_table_after_a_save(folder_, name, info):
        if not landed:
            ws = small_workspace()
            ws.notes = "saved during the read"
            ws.set_note(next(iter(ws.samples)), "a new samples table")  # its old file is deleted by the save
            store.save(ws, MODEL, token_string=lambda t: VOCAB[t])
            landed.append(True)
        return real(folder_, name, info)

    monkeypatch.setattr(store_module, "_read_table", read_table_after_a_save)
    opened = read_session(folder)
    assert landed and opened.workspace.notes == "saved during the read" and opened.revision == 2


def test_a_missing_table_of_a_settled_session_is_reported_without_advising_deletion(tmp_path):
    folder = saved(tmp_path)
    m = json.loads((folder / "manifest.json").read_text())
    (folder / m["tables"]["runs"]["file"]).unlink()
    with pytest.raises(ListerError) as err:
        read_session(folder)
    assert "is missing" in str(err.value) and "delete" not in str(err.value)


def test_a_flipped_byte_in_a_table_without_its_sha256_never_changes_the_export_silently(tmp_path):
    """With the manifest's checksum removed, Parquet's page checksums still catch a flipped byte in
    the data; a flip that reads at all must give the same exported text as the intact session."""
    from lister_tui.core.sessions.export import export_tables

    folder = saved(tmp_path)
    m = json.loads((folder / "manifest.json").read_text())
    del m["tables"]["samples"]["sha256"]
    (folder / "manifest.json").write_text(json.dumps(m))
    path = folder / m["tables"]["samples"]["file"]
    data = path.read_bytes()

    def exported() -> dict:
        opened = read_session(folder)
        decode = lambda ids: "".join(opened.vocab.get(i, "") for i in ids)  # noqa: E731
        return {k: v.to_csv() for k, v in export_tables(opened.workspace, decode, lambda i: opened.vocab.get(i, "")).items()}

    intact = exported()
    detected = same = 0
    positions = range(4, len(data) - 8, max(1, (len(data) - 12) // 80))  # ~80 bytes across the file
    for pos in positions:
        flipped = bytearray(data)
        flipped[pos] ^= 0x10
        path.write_bytes(bytes(flipped))
        try:
            now = exported()
        except ListerError:
            detected += 1
            continue
        assert now == intact, f"byte {pos} changed the export silently"
        same += 1
    assert detected > 0 and detected + same == len(positions)


@pytest.mark.parametrize("token", [999_999, 2**31 - 1])
def test_replay_refuses_a_token_outside_the_models_vocabulary_before_sampling(tmp_path, token):
    """Without a vocab table to check against, replay checks the saved ids against the model's."""
    from hostile import hostile_session

    folder = hostile_session(tmp_path / "s", "", model_name="lister-tiny")
    edit_table(folder, "vocab", lambda rows: rows.clear())
    edit_table(folder, "samples", lambda rows: rows[0]["tokens"].__setitem__(2, token))
    result = CliRunner().invoke(app, ["replay", str(folder)])
    flat = " ".join(result.output.split())
    assert result.exit_code == 2 and f"token id {token} is outside lister-tiny's vocabulary" in flat, result.output
    assert "Traceback" not in result.output
