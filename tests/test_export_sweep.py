"""`lister-tui export SWEEP_FOLDER` writes the sweep's tables, the same files the explorer's E
writes for a session opened from that sweep; an empty table keeps its header."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lister_tui.cli import app as cli
from lister_tui.core.sessions.export import SWEEP_TABLES, read_markdown, session_export, sweep_export
from lister_tui.core.sessions.opening import open_sweep, view_session

FILE = {"csv": "csv", "parquet": "parquet", "markdown": "md", "latex": "tex"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A tiny real sweep (the code preset, so that it opens as a session): res_3, the last layer, zeroes
    nothing, so its faithfulness tables are empty."""
    out = tmp_path_factory.mktemp("sweep") / "tiny"
    args = ["sweep", "--sae", "res_3", "--topic", "Fruits", "--template", "short", "--samples", "1",
            "--device", "cpu", "--no-steering", "--no-restricted", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out


def _load(path: Path, fmt: str) -> pd.DataFrame:
    return {"csv": pd.read_csv, "parquet": pd.read_parquet, "markdown": read_markdown}[fmt](path)


@pytest.mark.parametrize("fmt", list(FILE))
def test_export_of_a_sweep_folder_writes_its_tables(sweep, tmp_path, fmt):
    result = CliRunner().invoke(cli, ["export", str(sweep), "--format", fmt, "--out", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    assert "damaged" not in result.output
    written = sorted(p.name for p in (tmp_path / "x").iterdir())
    assert written == sorted(f"sweep_{name}.{FILE[fmt]}" for name in SWEEP_TABLES)
    for name in SWEEP_TABLES:
        own = pd.read_parquet(sweep / f"{name}.parquet")
        path = tmp_path / "x" / f"sweep_{name}.{FILE[fmt]}"
        if fmt == "latex":
            assert " & ".join(c.replace("_", r"\_") for c in own.columns) in path.read_text()
            continue
        back = _load(path, fmt)
        assert list(back.columns) == list(own.columns), name  # empty tables too: the header is kept
        assert len(back) == len(own), name
    # the tiny sweep's faithfulness tables are empty, and still have their header
    assert len(pd.read_parquet(sweep / "faithfulness_pairs.parquet")) == 0


def test_export_of_a_sweep_writes_by_default_into_its_folder_and_says_so(sweep):
    result = CliRunner().invoke(cli, ["export", str(sweep)])
    assert result.exit_code == 0, result.output
    assert (sweep / "exports" / "sweep_by_condition.csv").is_file()
    assert "sweep_generations.csv  (2 rows)" in result.output


def test_a_folder_with_no_tables_is_a_clear_error(tmp_path):
    folder = tmp_path / "empty-sweep"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"tool": "lister-tui sweep"}')
    result = CliRunner().invoke(cli, ["export", str(folder)])
    assert result.exit_code == 2 and "has no tables yet" in result.output and "Traceback" not in result.output


def test_the_explorers_E_writes_the_same_sweep_tables_as_the_cli(sweep, tiny, tmp_path):
    from lister_tui.tui.app import ListerApp

    opened = open_sweep(sweep, tiny, tmp_path / "sessions")
    view = view_session(opened, tiny)
    expected = session_export(opened.workspace, opened.manifest)
    for name, frame in sweep_export(sweep).items():
        pd.testing.assert_frame_equal(expected[name], frame)

    async def go():
        app = ListerApp(tiny, initial=None, workspace=opened.workspace, session=view.store, sessions_dir=tmp_path / "sessions")
        async with app.run_test(size=(100, 32)) as pilot:
            app.export_worker("csv", tmp_path / "from-E")
            await app.workers.wait_for_complete()
            await pilot.pause()

    asyncio.run(go())
    result = CliRunner().invoke(cli, ["export", str(opened.path), "--out", str(tmp_path / "from-cli")])
    assert result.exit_code == 0, result.output
    from_e = sorted(p.name for p in (tmp_path / "from-E").iterdir())
    assert from_e == sorted(p.name for p in (tmp_path / "from-cli").iterdir())
    assert {f"sweep_{name}.csv" for name in SWEEP_TABLES} <= set(from_e)
    for name in from_e:
        assert (tmp_path / "from-E" / name).read_bytes() == (tmp_path / "from-cli" / name).read_bytes(), name
