"""The command line: bad input gives one clear line and exit code 2, never a traceback."""

from __future__ import annotations

from typer.testing import CliRunner

from lister_tui.cli import app


def test_unknown_model_is_a_clear_error():
    result = CliRunner().invoke(app, ["--model", "gemma-9000"])
    assert result.exit_code == 2
    assert "unknown model 'gemma-9000'" in result.output and "lister-tiny" in result.output
    assert "Traceback" not in result.output


def test_help_lists_the_organism_commands():
    result = CliRunner().invoke(app, ["organism", "--help"])
    assert result.exit_code == 0
    assert "build" in result.output and "card" in result.output
