"""Damaged files and weak inputs: each one is named and refused (exit 2, no traceback), or healed
(a damaged cache is moved aside and recomputed), and nothing saved is lost."""

from __future__ import annotations

import json
from pathlib import Path

from session_fixtures import MODEL, VOCAB, small_workspace
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.core.sessions.store import SessionStore


def saved(tmp_path: Path, name: str = "s") -> Path:
    folder = tmp_path / name
    SessionStore(folder).save(small_workspace(), MODEL, token_string=lambda i: VOCAB[i])
    return folder


def one_line(output: str) -> str:
    return " ".join(output.split())


# --- a 5000-digit revision -----------------------------------------------------------------


def test_a_5000_digit_revision_is_named_by_export_replay_and_sessions(tmp_path):
    root = tmp_path / "sessions"
    folder = saved(root)
    text = (folder / "manifest.json").read_text()
    revision = json.loads(text)["revision"]
    (folder / "manifest.json").write_text(text.replace(f'"revision": {revision}', '"revision": ' + "9" * 5000))
    runner = CliRunner(env={"COLUMNS": "200"})
    for args in (["export", str(folder), "--out", str(tmp_path / "out")], ["replay", str(folder)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output, result.exception)
        assert "integer of 5000 digits" in one_line(result.output) and "manifest.json" in result.output
    listed = runner.invoke(app, ["sessions", "--sessions-dir", str(root)])
    assert listed.exit_code == 0, listed.exception
    assert "damaged" in listed.output and "Traceback" not in listed.output
