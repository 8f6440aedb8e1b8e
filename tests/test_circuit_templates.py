"""`lister-tui circuit` takes the templates every other command takes: the study's, the entry's own and
`--templates FILE`'s; an unknown one is refused with the valid names before the model loads."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lister_tui.cli import app


def test_circuit_runs_on_a_template_of_a_templates_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    file = tmp_path / "t.toml"
    file.write_text('[templates.terse]\ntext = "Provide me with a short list of {topic}. Just provide the names."\nlength = "short"\n')
    out = tmp_path / "c.json"
    result = CliRunner().invoke(app, ["circuit", "--templates", str(file), "--template", "terse", "--topic", "Fruits", "--sites", "res_1,attn_2",
                                      "--no-faithfulness", "--device", "cpu", "--json", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["nodes"]


def test_an_unknown_template_names_the_valid_ones_including_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    file = tmp_path / "t.toml"
    file.write_text('[templates.terse]\ntext = "A short list of {topic}."\n')
    result = CliRunner().invoke(app, ["circuit", "--templates", str(file), "--template", "nope", "--topic", "Fruits"])
    assert result.exit_code == 2 and "unknown template 'nope'" in result.output and "terse" in result.output
