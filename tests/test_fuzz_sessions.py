"""Schema-driven fuzzing of saved sessions: every column of every table (from ``schema.SCHEMAS``), every
field of the manifest (walked from a saved one) and every file's bytes get hostile values; reading,
listing, exporting and opening must end in a result or a ListerError (never a traceback), the shell
must see no escape, C1 or bidi character, and nothing saved is changed by reading it.

Counts: each test prints ``cases × inputs`` and appends them to $LISTER_TUI_FUZZ_REPORT when set;
``LISTER_TUI_FUZZ=full`` tries every value on every field."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fuzz_inputs import (
    FULL,
    HOSTILE_FLOATS,
    HOSTILE_INTS,
    HOSTILE_JSON,
    HOSTILE_STRINGS,
    Tally,
    byte_damage,
    json_leaves,
    pick,
    raw_unsafe,
    report,
    with_leaf,
)
from session_fixtures import MODEL, VOCAB, add_graph, small_workspace
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.schema import SCHEMAS, to_arrow
from lister_tui.core.sessions.store import SessionStore, parquet_bytes, read_session


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A session whose every table has rows: samples, choices, a run, attributions, a label, a graph."""
    folder = tmp_path_factory.mktemp("base") / "base"
    ws = small_workspace()
    ws.set_label("res_0", 3, "the word short")
    add_graph(ws)
    SessionStore(folder).save(ws, MODEL, token_string=lambda i: VOCAB[i])
    return folder


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != ".lock"}


def _values_for(kind: pa.DataType, index: int) -> dict:
    if pa.types.is_string(kind):
        return pick(HOSTILE_STRINGS, index)
    if pa.types.is_integer(kind):
        return pick(HOSTILE_INTS, index)
    if pa.types.is_floating(kind):
        return pick(HOSTILE_FLOATS, index)
    if pa.types.is_list(kind):
        inner = _values_for(kind.value_type, index)
        return {f"[{k}]": [v] * 3 for k, v in inner.items()} | ({"[]": []} if FULL else {})
    return {"null": None}


def _read_and_export(folder: Path) -> str:
    """What `open` and `export` do with a session, in-process: '' when it reads, else the error."""
    from lister_tui.core.sessions.export import session_export, to_markdown

    try:
        opened = read_session(folder)
        vocab = opened.vocab
        tables = session_export(opened.workspace, opened.manifest, (lambda ids: "".join(vocab.get(i, "") for i in ids)) if vocab else None)
        for name, frame in tables.items():
            to_markdown(frame, name)
    except ListerError as exc:
        return str(exc) or "error"
    return ""


def _clean(result) -> str:
    """Why a CLI result is a break ('' when it is not)."""
    if "Traceback" in result.output or (result.exception is not None and not isinstance(result.exception, SystemExit)):
        return f"traceback: {result.exception!r}"
    if raw_unsafe(result.output):
        return f"unsafe characters reached the terminal: {raw_unsafe(result.output)[:5]}"
    if result.exit_code not in (0, 1, 2):
        return f"exit code {result.exit_code}"
    return ""


def _variant(base: Path, into: Path, table: str | None = None, column: str | None = None, value=None, manifest_change=None) -> Path:
    shutil.copytree(base, into)
    m = _manifest(into)
    if table is not None:
        path = into / m["tables"][table]["file"]
        rows = pq.read_table(io.BytesIO(path.read_bytes())).to_pylist()
        for row in rows:
            row[column] = value
        data = parquet_bytes(to_arrow(table, rows))
        path.write_bytes(data)
        m["tables"][table]["sha256"] = hashlib.sha256(data).hexdigest()  # a careful forger: the checksum matches
    if manifest_change is not None:
        m = manifest_change(m)
    (into / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    return into


def _check_all(folder: Path, tally: Tally, case, variants: list[Path]) -> None:
    before = {v: _files(v) for v in variants}
    for v in variants:
        tally.runs += 1
        try:
            _read_and_export(v)
        except Exception as exc:  # anything but a ListerError is a break
            tally.breaks.append((v.name, f"{type(exc).__name__}: {exc}"[:300]))
    listed = CliRunner().invoke(app, ["sessions", "--sessions-dir", str(folder)], terminal_width=120)
    why = _clean(listed) or ("" if listed.exit_code == 0 else listed.output[-300:])
    if why:
        tally.breaks.append(("the sessions listing", why))
    for v in variants:
        assert _files(v) == before[v], f"reading {v.name} changed it"


def test_every_column_of_every_table_with_hostile_values(base, tmp_path):
    folder = tmp_path / "sessions"
    folder.mkdir()
    tally, variants, i = Tally(), [], 0
    m = _manifest(base)
    for table, schema in SCHEMAS.items():
        if table not in m["tables"] or m["tables"][table]["rows"] == 0:
            continue  # a table with no rows has no values to damage (every table of the base has rows but circuits)
        for f in schema:
            for name, value in _values_for(f.type, i).items():
                i += 1
                variants.append(_variant(base, folder / f"t{len(variants):04d}", table, f.name, value))
                tally.cases.add((table, f.name))
    _check_all(folder, tally, "tables", variants)
    line = tally.line("session table columns")
    print(line)
    report(line)
    assert len(tally.cases) >= 100  # every column of the tables with rows (all but circuits)
    assert tally.breaks == [], tally.breaks[:5]


def test_every_manifest_field_with_hostile_values(base, tmp_path):
    folder = tmp_path / "sessions"
    folder.mkdir()
    tally, variants, i = Tally(), [], 0
    for path in json_leaves(_manifest(base)):
        for name, value in pick(HOSTILE_JSON, i).items():
            i += 1
            variants.append(_variant(base, folder / f"m{len(variants):04d}", manifest_change=lambda m, p=path, v=value: with_leaf(m, p, v)))
            tally.cases.add(path)
    _check_all(folder, tally, "manifest", variants)
    line = tally.line("session manifest fields")
    print(line)
    report(line)
    assert len(tally.cases) >= 60
    assert tally.breaks == [], tally.breaks[:5]


def test_every_file_of_a_session_damaged_byte_by_byte(base, tmp_path):
    folder = tmp_path / "sessions"
    folder.mkdir()
    tally, variants = Tally(), []
    names = sorted(_files(base))
    for n, name in enumerate(names):
        damages = byte_damage((base / name).read_bytes(), seed=n)
        other = names[(n + 1) % len(names)]
        damages["another table's file"] = (base / other).read_bytes()
        for what, data in damages.items():
            v = _variant(base, folder / f"b{len(variants):04d}")
            (v / name).write_bytes(data)
            variants.append(v)
            tally.cases.add(name)
        # a symlink loop and a folder where the file should be
        for what in ("symlink loop", "a folder"):
            v = _variant(base, folder / f"b{len(variants):04d}")
            (v / name).unlink()
            if what == "symlink loop":
                (v / name).symlink_to(v / name)
            else:
                (v / name).mkdir()
            variants.append(v)
    _check_all(folder, tally, "bytes", variants)
    line = tally.line("session files, damaged bytes")
    print(line)
    report(line)
    assert tally.breaks == [], tally.breaks[:5]


def test_hostile_sessions_export_and_open_from_the_shell(base, tmp_path, monkeypatch):
    """The CLI's own printing on a sample of the hostile variants (all of them in a full run)."""
    from lister_tui.tui import app as tui_app

    monkeypatch.setattr(tui_app.ListerApp, "run", lambda self: None)
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    folder = tmp_path / "sessions"
    folder.mkdir()
    tally, variants = Tally(), []
    m = _manifest(base)
    for table, schema in SCHEMAS.items():
        if m["tables"].get(table, {}).get("rows"):
            for f in schema:
                if pa.types.is_string(f.type):
                    for name, value in HOSTILE_STRINGS.items():
                        if name != "1MB":
                            variants.append((table, f.name, name, value))
    rng = random.Random(0)
    chosen = variants if FULL else rng.sample(variants, 6)
    runner = CliRunner()
    for k, (table, column, name, value) in enumerate(chosen):
        v = _variant(base, folder / f"e{k:03d}", table, column, value)
        for args in (["export", v.name, "-f", "markdown", "-o", str(tmp_path / f"x{k}")], ["open", v.name, "--device", "cpu"]):
            result = runner.invoke(app, [*args, "--sessions-dir", str(folder)], terminal_width=100)
            why = _clean(result)
            tally.add((table, column, args[0]), not why, f"{table}.{column}={name}: {why}")
    line = tally.line("export and open of hostile sessions")
    print(line)
    report(line)
    assert tally.breaks == [], tally.breaks[:5]


def test_a_5000_digit_revision_is_a_clear_error(base, tmp_path):
    """Python refuses to turn an int of over 4300 digits into text: kept apart so that it masks no other field."""
    folder = tmp_path / "sessions"
    folder.mkdir()
    v = _variant(base, folder / "big", manifest_change=lambda m: with_leaf(m, ("revision",), 987654321987))
    manifest = v / "manifest.json"  # written as text: Python itself cannot turn such an int into text
    manifest.write_text(manifest.read_text(encoding="utf-8").replace("987654321987", "9" * 5000), encoding="utf-8")
    assert _read_and_export(v) != ""
    listed = CliRunner().invoke(app, ["sessions", "--sessions-dir", str(folder)])
    assert _clean(listed) == "" and listed.exit_code == 0
