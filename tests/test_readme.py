"""The README's test command is the one CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    command = ci[-1].strip()
    assert command.startswith("pip install")
    readme = (ROOT / "README.md").read_text()
    assert command in readme
    assert "pip install torch==2.13.0" in ci[-4] or any("torch==2.13.0" in line for line in ci)
