"""Damaged files and weak inputs: each one is named and refused (exit 2, no traceback), or healed
(a damaged cache is moved aside and recomputed), and nothing saved is lost."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

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


# --- a damaged lister-tiny style folder ------------------------------------------------------

SHIPPED = Path(__file__).resolve().parents[1] / "lister_tui" / "organism" / "lister_tiny"


def _with(file: str, **fields):
    def change(folder: Path) -> None:
        data = json.loads((SHIPPED / file).read_text())
        (folder / file).write_text(json.dumps({**data, **fields}))

    return change


def _text(file: str, content: str):
    return lambda folder: (folder / file).write_text(content)


FOLDER_DAMAGE = [
    ("sae cfg garbage", _text("saes/res_0/cfg.json", "garbage{"), "saes/res_0/cfg.json is not valid JSON"),
    ("sae cfg a list", _text("saes/res_0/cfg.json", "[]"), "saes/res_0/cfg.json holds a list"),
    ("sae d_sae 10^12", _with("saes/res_0/cfg.json", d_sae=10**12), "field d_sae is 1000000000000; valid: a whole number 1..4,194,304"),
    ("sae d_sae unlike its weights", _with("saes/res_0/cfg.json", d_sae=1024), "fields d_in, d_sae say [128, 1024], but sae_weights.safetensors holds W_enc of shape [128, 512]"),
    ("model config a list", _text("model_config.json", "[]"), "model_config.json holds a list"),
    ("model config nested 5000 deep", _text("model_config.json", "[" * 5000 + "]" * 5000), "nests deeper than 64 levels"),
    ("d_model 10^9", _with("model_config.json", d_model=10**9), "field d_model is 1000000000; valid: a whole number 1..65,536"),
    ("d_vocab 10^12", _with("model_config.json", d_vocab=10**12), "field d_vocab is 1000000000000"),
    ("n_layers -3", _with("model_config.json", n_layers=-3), "field n_layers is -3"),
    ("n_heads a string", _with("model_config.json", n_heads="four"), "field n_heads is 'four'"),
    ("d_model unlike its weights", _with("model_config.json", d_model=256), "but model.safetensors holds embed.W_E of shape [2048, 128]"),
    ("an unknown field", _with("model_config.json", bogus=1), "field 'bogus' is not a TransformerLens config field"),
]


@pytest.mark.parametrize("damage,message", [c[1:] for c in FOLDER_DAMAGE], ids=[c[0] for c in FOLDER_DAMAGE])
def test_a_damaged_folder_is_named_by_file_and_field_with_exit_2(tmp_path, monkeypatch, damage, message):
    folder = tmp_path / "tiny-copy"
    shutil.copytree(SHIPPED, folder)
    damage(folder)
    config = tmp_path / "config"
    config.mkdir()
    (config / "registry.toml").write_text(f'[models.broken]\nfolder = "{folder}"\n')
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(config))
    monkeypatch.setenv("LISTER_TUI_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("- Apple\n- Pear \n")
    result = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["feature", "res_0", "1", "--model", "broken", "--corpus", str(corpus)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert message in one_line(result.output) and str(folder) in one_line(result.output)


# --- a theme nested 5000 deep ----------------------------------------------------------------


def test_the_explorer_starts_with_the_default_theme_beside_a_theme_nested_5000_deep(tmp_path, monkeypatch, tiny):
    import asyncio

    from lister_tui.tui.app import ListerApp
    from lister_tui.tui.themes import DEFAULT_THEME

    config = tmp_path / "config"
    (config / "themes").mkdir(parents=True)
    (config / "themes" / "deep.toml").write_text('name = "deep"\nprimary = ' + "[" * 5000 + "]" * 5000 + "\n")
    (config / "settings.json").write_text('{"theme": "deep"}')
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(config))
    monkeypatch.delenv("LISTER_TUI_THEMES", raising=False)

    async def go():
        app = ListerApp(tiny, initial=None, persist=True)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert app.theme == DEFAULT_THEME and "deep" not in app.available_themes
            named = [m.text for m in app.messages if "deep.toml" in m.text]
            assert len(named) == 1 and "nests 5000 levels deep" in named[0]

    asyncio.run(go())


# --- a session whose topic was edited --------------------------------------------------------


def test_replay_of_a_session_whose_topic_was_edited_reports_the_sample_not_a_crash(tmp_path, tiny):
    import hashlib
    import io

    import pyarrow.parquet as pq

    from lister_tui.core.engine.generation import sample_lists
    from lister_tui.core.engine.prompts import build_prompts
    from lister_tui.core.sessions.opening import model_info
    from lister_tui.core.sessions.schema import to_arrow
    from lister_tui.core.sessions.store import parquet_bytes
    from lister_tui.core.sessions.workspace import Workspace
    from lister_tui.core.study.settings import SAMPLING_PRESETS

    ws = Workspace(tiny.entry.name)
    ws.add_samples(sample_lists(tiny, build_prompts(["short"], ["Fruits", "Colors"], 1, 0), SAMPLING_PRESETS["code"]), "code")
    folder = tmp_path / "edited"
    SessionStore(folder).save(ws, model_info(tiny), token_string=lambda i: tiny.tokenizer.decode([i]))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    # the topic edited in the samples table (a careful editor updates the checksum too)
    manifest = json.loads((folder / "manifest.json").read_text())
    path = folder / manifest["tables"]["samples"]["file"]
    rows = pq.read_table(io.BytesIO(path.read_bytes())).to_pylist()
    edited = next(r for r in rows if r["topic"] == "Fruits")
    edited["topic"] = "Types of Flowers"
    data = parquet_bytes(to_arrow("samples", rows))
    path.write_bytes(data)
    manifest["tables"]["samples"]["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))

    result = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["replay", str(folder)])
    out = one_line(result.output)
    assert result.exit_code == 1, (out, result.exception)  # a mismatch, reported
    assert "prompt: the saved prompt" in out and "topic 'Types of Flowers'" in out and "not replayed" in out
    assert "1 of 2 lists differ" in out and "item marker" not in out
    assert {p.name for p in folder.iterdir()} == set(before) | {path.name}  # replay writes nothing
