"""A model defined only in TOML (lister-tiny's shipped folder under another name, with a user template)
in the explorer (pilot) and the sweep (CLI); free-text topics and the free-form prompt of the generate dialog."""

from __future__ import annotations

import asyncio
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from lister_tui.cli import app as cli_app
from lister_tui.core.engine.registry import REGISTRY_ENV
from lister_tui.organism.paths import SHIPPED_DIR
from lister_tui.tui.screens.generate import GenerateRequest, GenerateScreen

from .conftest import settle

USER_TOML = f"""
[models.my-tiny]
description = "lister-tiny under another name"
folder = "{SHIPPED_DIR}"

[templates.numbered]
text = "Provide me with a numbered list of {{topic}}. Just provide the names, no need for any other information."
length = "unspecified"
"""


@pytest.fixture
def user_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    path = tmp_path / "mine.toml"
    path.write_text(USER_TOML)
    return path


def test_user_entry_in_the_explorer_with_its_template_and_a_free_topic(user_registry, monkeypatch):
    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.engine.prompts import register_templates
    from lister_tui.core.engine.registry import get_entry, use_registry_files
    from lister_tui.tui.app import ListerApp

    use_registry_files([user_registry])
    entry = get_entry("my-tiny")
    assert entry.origin.endswith("mine.toml") and entry.source == "shipped"
    register_templates(entry.templates)
    loaded = load_model(entry, device="cpu")

    async def go():
        app = ListerApp(loaded, initial=GenerateRequest(("numbered",), ("Types of Cheese",), 2, 0, "code"))
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            samples = [app.workspace.state(k).sample for k in app.workspace.samples]
            assert [(s.spec.template, s.spec.topic) for s in samples] == [("numbered", "Types of Cheese")] * 2
            assert all(s.metrics.n_items > 0 for s in samples)
            await pilot.press("a")
            await settle(app, pilot)
            key = app.screen.state.current
            assert set(app.workspace.state(key).attribution) == {s.id for s in entry.sites}
            # the generate dialog: one free-form prompt, 2 seeds
            await pilot.press("g")
            await pilot.pause()
            dialog = app.screen
            assert isinstance(dialog, GenerateScreen)
            dialog.query_one("#prompt").value = "Name some rivers of Europe."
            await pilot.press("ctrl+s")
            await settle(app, pilot)
            texts = [(s.spec.template, s.spec.topic) for s in (app.workspace.state(k).sample for k in app.workspace.samples)]
            assert texts.count(("free", "Name some rivers of Europe.")) == 2

    asyncio.run(go())


def test_user_entry_sweep_and_a_free_topic(user_registry, tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "--registry", str(user_registry), "--model", "my-tiny", "--template", "numbered,short",
            "--topic", "Types of Cheese", "--sae", "res_1", "--samples", "2", "--max-new-tokens", "30",
            "--no-steering", "--no-restricted", "--device", "cpu", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["settings"]["topics"] == ["Types of Cheese"]
    assert manifest["model"]["entry"]["name"] == "my-tiny" and manifest["model"]["entry"]["origin"].endswith("mine.toml")
    numbered = manifest["templates"]["numbered"]
    assert numbered["text"].startswith("Provide me with a numbered list of {topic}.") and numbered["length"] == "unspecified"
    generations = pd.read_parquet(out / "generations.parquet")
    assert set(generations["template"]) == {"numbered", "short"} and set(generations["topic"]) == {"Types of Cheese"}
    assert dict(zip(generations["template"], generations["template_length"])) == {"numbered": "unspecified", "short": "short"}
    assert generations["n_items"].gt(0).all()
    # the study's templates with a free topic on the default model
    again = CliRunner().invoke(cli_app, ["sweep", "--topic", "Types of Cheese", "--sae", "res_0", "--samples", "1", "--max-new-tokens", "30",
                                         "--no-steering", "--no-restricted", "--no-faithfulness", "--device", "cpu", "--out", str(tmp_path / "cheese")])  # fmt: skip
    assert again.exit_code == 0, again.output
    assert pd.read_parquet(tmp_path / "cheese" / "generations.parquet")["topic"].unique().tolist() == ["Types of Cheese"]
