"""Quick commands answer at once: `--help`, `models`, `sessions`, `export` and `open --help` import
no torch, TransformerLens or SAELens (each command runs in a fresh interpreter and reports
``sys.modules`` afterwards). bench/startup.py measures their start-up time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformer_lens", "sae_lens")

# Runs the CLI as `lister-tui ARGS` does, then prints which heavy packages got imported.
PROBE = """
import json, sys
from lister_tui.cli import main
sys.argv = ["lister-tui", *json.loads(sys.argv[1])]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
print("\\nPROBE " + json.dumps({"code": code, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def run_probe(args: list[str], tmp_path: Path) -> tuple[dict, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LISTER_TUI_CONFIG_DIR": str(tmp_path / "config"), "COLUMNS": "100"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    line = next((l for l in done.stdout.splitlines() if l.startswith("PROBE ")), None)
    assert line is not None, done.stdout + done.stderr
    return json.loads(line.removeprefix("PROBE ")), done.stdout


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from session_fixtures import MODEL, VOCAB, small_workspace

    from lister_tui.core.sessions.store import SessionStore

    folder = tmp_path_factory.mktemp("sessions")
    SessionStore(folder / "s1").save(small_workspace(), MODEL, token_string=lambda i: VOCAB[i])
    return folder


@pytest.mark.parametrize(
    "args, says",
    [
        (["--help"], "sweep"),
        (["open", "--help"], "SESSION"),
        (["models"], "lister-tiny"),
        (["models", "gemma-2-2b-it-study"], "average_l0_"),
    ],
)
def test_quick_commands_import_no_torch(args, says, tmp_path):
    result, out = run_probe(args, tmp_path)
    assert result["code"] == 0, out
    assert says in out
    assert result["heavy"] == [], f"`lister-tui {' '.join(args)}` imported {result['heavy']}"


def test_sessions_and_export_import_no_torch(sessions, tmp_path):
    result, out = run_probe(["sessions", "--sessions-dir", str(sessions)], tmp_path)
    assert result["code"] == 0 and "s1" in out, out
    assert result["heavy"] == []
    exports = tmp_path / "exports"
    result, out = run_probe(["export", "s1", "--sessions-dir", str(sessions), "--out", str(exports), "--format", "csv"], tmp_path)
    assert result["code"] == 0, out
    assert result["heavy"] == []
    assert (exports / "generations.csv").read_text().count("\n") >= 2  # a header and the session's lists


def test_the_directory_is_read_as_saelens_reads_it():
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    from lister_tui.core.engine import sae_directory

    theirs = get_pretrained_saes_directory()
    assert sae_directory.release_names() == list(theirs)
    for name, lookup in theirs.items():
        ours = sae_directory.release(name)
        assert (ours.repo_id, ours.model, ours.conversion_func, ours.saes_map) == (
            lookup.repo_id, lookup.model, lookup.conversion_func, lookup.saes_map,
        ), name  # fmt: skip
    assert sae_directory.release("no-such-release") is None
