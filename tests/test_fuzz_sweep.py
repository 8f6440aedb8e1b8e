"""Schema-driven fuzzing of a sweep's output folder: every column of every table a sweep writes (read
from the folder of a real tiny sweep) and every field of its manifest get hostile values; exporting
it (`lister-tui export SWEEP`), listing it (`lister-tui sessions`) and reading it as a session end in a
result or a clear error, with no traceback and no escape in the output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fuzz_inputs import HOSTILE_FLOATS, HOSTILE_INTS, HOSTILE_JSON, HOSTILE_STRINGS, Tally, json_leaves, pick, raw_unsafe, report, with_leaf
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.core.errors import ListerError


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "tiny"
    args = ["sweep", "--sae", "res_3", "--topic", "Fruits", "--template", "short", "--samples", "1",
            "--device", "cpu", "--no-steering", "--no-restricted", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def _values(kind: pa.DataType, index: int) -> dict:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pick({k: v for k, v in HOSTILE_STRINGS.items() if k != "1MB"}, index)
    if pa.types.is_integer(kind):
        return pick(HOSTILE_INTS, index)
    if pa.types.is_floating(kind):
        return pick(HOSTILE_FLOATS, index)
    return {"null": None}


def _export(folder: Path) -> str:
    from lister_tui.core.sessions.export import sweep_export, to_markdown

    try:
        for name, frame in sweep_export(folder).items():
            to_markdown(frame, name)
    except ListerError as exc:
        return str(exc)
    return ""


@pytest.mark.slow  # a real sweep first (about 30 s of CPU in all)
def test_every_column_and_manifest_field_of_a_sweep_folder(sweep, tmp_path):
    folder = tmp_path / "sessions"
    folder.mkdir()
    tally, variants, i = Tally(), [], 0
    for table_path in sorted(sweep.glob("*.parquet")):
        table = pq.read_table(table_path)
        if table.num_rows == 0:
            continue
        for f in table.schema:
            for name, value in _values(f.type, i).items():
                i += 1
                v = folder / f"s{len(variants):04d}"
                shutil.copytree(sweep, v)
                column = pa.array([value] * table.num_rows, type=f.type) if value is not None else pa.nulls(table.num_rows, f.type)
                pq.write_table(table.set_column(table.schema.get_field_index(f.name), f.name, column), v / table_path.name)
                variants.append(v)
                tally.cases.add((table_path.stem, f.name))
    manifest = json.loads((sweep / "manifest.json").read_text())
    for path in json_leaves(manifest):
        for name, value in pick(HOSTILE_JSON, i).items():
            i += 1
            v = folder / f"s{len(variants):04d}"
            shutil.copytree(sweep, v)
            (v / "manifest.json").write_text(json.dumps(with_leaf(manifest, path, value)))
            variants.append(v)
            tally.cases.add(("manifest",) + path)
    for v in variants:
        tally.runs += 1
        try:
            _export(v)
        except Exception as exc:
            tally.breaks.append((v.name, f"{type(exc).__name__}: {exc}"[:300]))
    runner = CliRunner()
    listed = runner.invoke(app, ["sessions", "--sessions-dir", str(folder)], terminal_width=120)
    if "Traceback" in listed.output or listed.exit_code != 0 or raw_unsafe(listed.output):
        tally.breaks.append(("sessions listing", listed.output[-300:]))
    for v in variants[:: max(1, len(variants) // 8)]:  # the CLI's own printing on a spread of them
        result = runner.invoke(app, ["export", str(v), "-o", str(tmp_path / "x" / v.name)], terminal_width=100)
        tally.runs += 1
        if "Traceback" in result.output or result.exit_code not in (0, 2) or raw_unsafe(result.output) or (
            result.exception is not None and not isinstance(result.exception, SystemExit)
        ):
            tally.breaks.append((v.name, f"export: {result.exception!r} {result.output[-200:]!r}"))
    line = tally.line("sweep folder columns and manifest fields")
    print(line)
    report(line)
    assert len(tally.cases) >= 50
    assert tally.breaks == [], tally.breaks[:5]
