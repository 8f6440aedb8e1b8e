"""Sessions record their registry entry in full; opened where the entry or its files are absent, the
explorer says exactly what is missing. Sessions written before the entry was recorded still open."""

from __future__ import annotations

import json
from dataclasses import replace

from session_fixtures import MODEL, VOCAB, decode, small_workspace

from lister_tui.core.engine.registry import REGISTRY_ENV, ModelEntry, SAESite, Template
from lister_tui.core.engine.registry_file import entry_record
from lister_tui.core.sessions.opening import view_session
from lister_tui.core.sessions.schema import ModelInfo
from lister_tui.core.sessions.store import SessionStore, read_session


def _save(folder, model: ModelInfo):
    ws = small_workspace()
    ws.model_name = model.name
    SessionStore(folder).save(ws, model, decode=decode, token_string=lambda i: VOCAB.get(i, "?"))
    return read_session(folder)


def test_a_session_of_a_user_entry_opened_elsewhere_lists_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))  # no registry file here
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    entry = ModelEntry(
        name="their-gemma", description="", source="pretrained", hf_model_name="google/gemma-2-2b-it",
        sites=(SAESite("res_3", "res", 3, "gemma-scope-2b-pt-res", "layer_3/width_16k/average_l0_142"),
               SAESite("mlp_4", "mlp", 4, path=tmp_path / "their-saes" / "mlp_4")),
        item_marker="*", templates=(Template("numbered", "Number {topic}.", "long"),), origin="/home/them/registry.toml",
    )  # fmt: skip
    info = replace(MODEL, name="their-gemma", source="pretrained", entry=entry_record(entry))
    opened = _save(tmp_path / "s", info)
    recorded = json.loads((tmp_path / "s" / "manifest.json").read_text())["model"]["entry"]
    assert recorded["sites"][0]["release"] == "gemma-scope-2b-pt-res" and recorded["sites"][1]["fingerprint"] == {"missing": str(tmp_path / "their-saes" / "mlp_4")}
    assert recorded["templates"] == [{"name": "numbered", "text": "Number {topic}.", "length": "long"}] and recorded["list_marker"] == "*"
    view = view_session(opened, device="cpu")
    assert view.store is None and view.banner.startswith("READ-ONLY: their-gemma is not available here")
    assert "hf download google/gemma-2-2b-it" in view.banner
    assert "hf download google/gemma-scope-2b-pt-res --include 'layer_3/width_16k/average_l0_142/*'" in view.banner
    assert str(tmp_path / "their-saes" / "mlp_4") in view.banner
    assert [s.id for s in view.lab.entry.sites] == ["res_3", "mlp_4"]  # the read-only view knows the recorded sites


def test_a_session_without_a_recorded_entry_still_opens(tmp_path):
    opened = _save(tmp_path / "old", MODEL)  # MODEL records no entry, as sessions did before
    assert opened.model.entry is None and opened.model.ids.style == "-"
    view = view_session(opened, device="cpu")  # fake-model is unknown here: read-only, nothing missing to list
    assert view.banner.startswith("READ-ONLY: fake-model is not available here") and "Missing" not in view.banner


def test_replay_reopens_the_recorded_entry_as_open_does(tmp_path, monkeypatch):
    """A session of a registry-file entry replays without --registry (the entry comes from the session)."""
    from typer.testing import CliRunner

    from lister_tui.cli import app
    from lister_tui.core.engine import registry
    from lister_tui.organism.paths import weights_dir

    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))  # no registry file here
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    monkeypatch.setattr(registry, "_registered", {})
    entry = ModelEntry(name="my-tiny", description="", source="shipped", sites=(), weights_dir=weights_dir(), origin="/elsewhere/registry.toml")
    _save(tmp_path / "s", replace(MODEL, name="my-tiny", source="shipped", entry=entry_record(entry)))
    result = CliRunner().invoke(app, ["replay", str(tmp_path / "s"), "--device", "cpu"])
    assert "unknown model" not in result.output and result.exit_code != 2, result.output
    # the recorded entry's weights loaded and were compared with the session's (fake) fingerprint
    assert "the weights differ from the session's (model.safetensors)" in result.output
