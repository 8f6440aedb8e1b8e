"""`lister-tui graph` takes the templates every other command takes: the study's, the entry's own and
`--templates FILE`'s; an unknown one is refused with the valid names before the model loads."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.core.engine import prompts

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_user_templates(tmp_path, monkeypatch):
    """Templates a file registered stay for the process: each test starts without any."""
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setattr(prompts, "_user_templates", {})
    monkeypatch.setattr(prompts, "_template_sources", {})


def test_graph_runs_on_a_template_of_a_templates_file(tmp_path):
    file = tmp_path / "t.toml"
    file.write_text('[templates.terse]\ntext = "Provide me with a short list of {topic}. Just provide the names."\nlength = "short"\n')
    out = tmp_path / "g.json"
    result = runner.invoke(app, ["graph", "--templates", str(file), "--template", "terse", "--topic", "Fruits", "--no-attention-features",
                                 "--checks", "0", "--device", "cpu", "--json", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["sample"].startswith("terse/") and "Fruits" in data["sample"], data["sample"]
    assert "Just provide the names" in "".join(data["tokens"]).replace("Ġ", " ").replace("▁", " ")
    assert data["nodes"]


def test_an_unknown_template_names_the_valid_ones_including_the_files(tmp_path, monkeypatch):
    from lister_tui.core.engine import loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    file = tmp_path / "t.toml"
    file.write_text('[templates.terse]\ntext = "A short list of {topic}."\n')
    result = runner.invoke(app, ["graph", "--templates", str(file), "--template", "nope", "--device", "cpu"])
    assert result.exit_code == 2 and "unknown template 'nope'" in result.output, result.output
    assert all(name in result.output for name in ("short", "long", "unspecified", "terse")), result.output
    assert "Traceback" not in result.output
