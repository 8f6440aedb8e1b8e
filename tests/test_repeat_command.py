"""A sweep's repeat_command repeats it exactly, --templates FILE included: tested by running it."""

from __future__ import annotations

import json
import shlex

import pandas as pd
from typer.testing import CliRunner

from lister_tui.cli import app


def test_the_repeat_command_of_a_sweep_with_a_templates_file_runs_and_gives_the_same_lists(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("LISTER_TUI_REGISTRY", raising=False)
    file = tmp_path / "t.toml"
    file.write_text('[templates.terse]\ntext = "Provide me with a short list of {topic}. Just provide the names."\nlength = "short"\n')
    first = tmp_path / "first"
    args = ["sweep", "--templates", str(file), "--template", "terse", "--topic", "Fruits", "--samples", "2", "--sae", "res_1",
            "--max-new-tokens", "24", "--device", "cpu", "--no-steering", "--no-restricted", "--no-faithfulness", "--out", str(first)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    repeat = json.loads((first / "manifest.json").read_text())["repeat_command"]
    words = shlex.split(repeat)
    assert words[:2] == ["lister-tui", "sweep"] and ["--templates", str(file.resolve())] == words[2:4]
    again = tmp_path / "again"
    result = CliRunner().invoke(app, [*words[1:], "--out", str(again)])
    assert result.exit_code == 0, result.output
    columns = ["condition", "template", "topic", "sample", "seed", "n_items", "continuation"]
    a, b = (pd.read_parquet(f / "generations.parquet") for f in (first, again))
    assert len(a) > 0 and a[columns].reset_index(drop=True).equals(b[columns].reset_index(drop=True))
    assert set(a["template"]) == {"terse"}
