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


# --- numeric options have stated ranges; empty topics are refused -----------------------------


def _numeric_parameters():
    import typer.main

    command = typer.main.get_command(app)

    def walk(cmd, path):
        for p in cmd.params:  # a group's own options too (the explorer's are the root's)
            if p.type_descriptor.annotation in (int, float):
                yield " ".join(path) or "lister-tui", p
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, path + [name])

    return list(walk(command, []))


def test_every_numeric_option_of_every_subcommand_states_its_range_in_help():
    import re

    found = _numeric_parameters()
    assert len(found) >= 24  # sweep 13, circuit 7, feature 2, replay 1, organism build 1
    unstated = [f"{cmd} {p.opts[0] if p.opts else p.name}" for cmd, p in found if not re.search(r"valid: \S+\.\.\S+", p.help or "")]
    assert unstated == []
    help_text = one_line(CliRunner(env={"COLUMNS": "200"}).invoke(app, ["sweep", "--help"]).output)
    assert "valid: 1..1000" in help_text  # shown where the option is described


@pytest.mark.parametrize(
    "args, option",
    [
        (["sweep", "--threads", "100000"], "--threads"),
        (["sweep", "--samples", "1000000"], "--samples"),
        (["sweep", "--seed", "9" * 40], "--seed"),
        (["sweep", "--max-new-tokens", "100000000"], "--max-new-tokens"),
        (["sweep", "--ray=", "--workers", "100000"], "--workers"),
        (["sweep", "--ray=", "--gpus-per-worker", "nan"], "--gpus-per-worker"),
        (["sweep", "--steering-layer", "100000"], "--steering-layer"),
        (["circuit", "--topic", "Fruits", "--sample", "100000000"], "--sample"),
        (["circuit", "--topic", "Fruits", "--nodes", "100000000"], "--nodes"),
        (["circuit", "--topic", "Fruits", "--edge-threshold", "nan"], "--edge-threshold"),
        (["circuit", "--topic", "Fruits", "--seed", "9" * 40], "--seed"),
        (["organism", "build", "--seed", "-1"], "--seed"),
        (["feature", "res_0", "--", "-1"], "feature -1"),
        (["feature", "res_0", "1", "--k", "1000000000"], "--k"),
        (["replay", "x", "--threads", "100000"], "--threads"),
    ],
)
def test_an_out_of_range_number_exits_2_before_anything_is_written(tmp_path, monkeypatch, args, option):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sweep-out"
    if args[0] == "sweep":
        args = args + ["--out", str(out)]
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert result.exit_code == 2, (result.output, result.exception)
    said = one_line(result.output)
    word = option.strip("-").lower()
    assert any(w in said.lower() for w in (word, word.replace("-", "_"), word.replace("-", " ")))
    assert ("valid" in said or "must be" in said) and "Traceback" not in said
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["sweep", "--topic", ""],
        ["sweep", "--topic", "Fruits", "--topic", ""],
        ["sweep", "--topic", "Fruits,"],
        ["circuit", "--batch", "--topic", ""],
        ["circuit", "--batch", "--topic", "Fruits", "--topic", " "],
        ["circuit", "--topic", ""],
    ],
)
def test_an_empty_topic_is_refused_not_dropped(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    if args[0] == "sweep":
        args = args + ["--out", str(tmp_path / "sweep-out")]
    result = CliRunner(env={"COLUMNS": "300"}).invoke(app, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "--topic" in result.output and ("empty" in result.output or "names no topic" in result.output)
    assert list(tmp_path.iterdir()) == []


# --- the Markdown export reads back as it was written ----------------------------------------


def test_markdown_export_reads_booleans_as_booleans_and_empty_text_as_empty_text(tmp_path):
    import math

    import pandas as pd

    from lister_tui.core.sessions.export import read_markdown, session_export, write_exports
    from session_fixtures import small_workspace

    frame = pd.DataFrame(
        {
            "reached_end": [True, False, True],
            "maybe": pd.Series([True, None, False], dtype=object),
            "note": ["", "a note", ""],
            "label": ["", "", ""],
            "count": [1, 2, 3],
            "metric": [0.5, float("nan"), -1.25],
            "nothing": pd.Series([None, None, None], dtype=object),
            "looks_numeric": ["1", "", "x"],
        }
    )
    write_exports({"t": frame}, tmp_path, "markdown")
    back = read_markdown(tmp_path / "t.md")
    assert list(back["reached_end"]) == [True, False, True] and back["reached_end"].dtype == bool
    assert list(back["maybe"]) == [True, None, False]
    assert list(back["note"]) == ["", "a note", ""] and list(back["label"]) == ["", "", ""]
    assert list(back["count"]) == [1, 2, 3]
    assert back["metric"][0] == 0.5 and math.isnan(back["metric"][1]) and back["metric"][2] == -1.25
    assert back["nothing"].isna().all()
    assert list(back["looks_numeric"]) == ["1", "", "x"]
    # a session's own export: its booleans and its labels
    tables = session_export(small_workspace(), None, lambda ids: "".join(map(str, ids)), str)
    write_exports(tables, tmp_path / "s", "markdown")
    generations = read_markdown(tmp_path / "s" / "generations.md")
    assert generations["reached_end"].dtype == bool and generations["stopped"].dtype == bool
    assert set(read_markdown(tmp_path / "s" / "attributions.md")["label"]) == {""}


# --- labels ----------------------------------------------------------------------------------


def _labels_edited(tmp_path: Path, rows: list[dict]) -> Path:
    import hashlib

    from lister_tui.core.sessions.schema import to_arrow
    from lister_tui.core.sessions.store import parquet_bytes

    ws = small_workspace()
    ws.set_label("res_0", 3, "x")
    folder = tmp_path / "s"
    SessionStore(folder).save(ws, MODEL, token_string=lambda i: VOCAB[i])
    manifest = json.loads((folder / "manifest.json").read_text())
    path = folder / manifest["tables"]["labels"]["file"]
    data = parquet_bytes(to_arrow("labels", rows))
    path.write_bytes(data)
    manifest["tables"]["labels"]["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize(
    "row, message",
    [
        ({"sae_id": "res_0", "feature": -1, "label": "x"}, "column feature is -1; valid: 0..15 for res_0"),
        ({"sae_id": "res_0", "feature": 10**9, "label": "x"}, "column feature is 1000000000"),
        ({"sae_id": "../../etc", "feature": 1, "label": "x"}, "column sae_id is '../../etc'; valid: one of the session's SAEs (res_0, attn_1)"),
        ({"sae_id": "res_9", "feature": 1, "label": "x"}, "column sae_id is 'res_9'"),
    ],
)
def test_a_label_of_a_feature_or_sae_the_session_does_not_have_is_named(tmp_path, row, message):
    from lister_tui.core.errors import ListerError
    from lister_tui.core.sessions.store import read_session

    folder = _labels_edited(tmp_path, [row])
    with pytest.raises(ListerError) as err:
        read_session(folder)
    assert "labels table, row 0" in str(err.value) and message in str(err.value)


def test_a_1_mb_label_is_cut_to_the_label_bound_and_shown_cut_in_the_card_header(tmp_path):
    from lister_tui.core.sessions.store import read_session
    from lister_tui.core.sessions.workspace import LABEL_MAX_CHARS
    from lister_tui.tui.card_render import LABEL_SHOWN_CHARS, feature_title

    folder = _labels_edited(tmp_path, [{"sae_id": "res_0", "feature": 3, "label": "L" * (1 << 20)}])
    label = read_session(folder).workspace.label("res_0", 3)
    assert label == "L" * LABEL_MAX_CHARS
    shown = feature_title("res_0", 3, label).plain
    assert len(shown) < LABEL_SHOWN_CHARS + 20 and shown.rstrip('"”').endswith("…")


@pytest.mark.parametrize("sae, feature", [("../../etc", 1), ("res_0", -1), ("res_0", 10**9), ("", 0)])
def test_set_label_refuses_a_path_or_a_feature_out_of_range(sae, feature):
    from lister_tui.core.errors import ListerError

    ws = small_workspace()
    with pytest.raises(ListerError, match="cannot label"):
        ws.set_label(sae, feature, "x")
    assert ws.labels == {}


# --- a truncated sweep table, a circuit nested deep ---------------------------------------------


@pytest.mark.parametrize("content", [b"", b"PAR1\x00\x01garbage", b"not parquet at all"], ids=["empty", "truncated", "foreign"])
def test_circuit_sweep_with_a_damaged_by_condition_table_exits_2_before_the_model_loads(tmp_path, monkeypatch, content):
    import lister_tui.core.engine.loading as loading

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "by_condition.parquet").write_bytes(content)
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded before the table was checked"))
    result = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["circuit", "--topic", "Fruits", "--sweep", str(sweep)])
    said = one_line(result.output)
    assert result.exit_code == 2, (said, result.exception)
    assert "by_condition.parquet" in said and "damaged" in said and "Traceback" not in said
    assert (sweep / "by_condition.parquet").read_bytes() == content  # nothing lost


def test_a_circuit_nested_100000_deep_is_named_by_export_and_nothing_is_written(tmp_path):
    import hashlib

    import pyarrow as pa

    from lister_tui.core.sessions.schema import SCHEMAS
    from lister_tui.core.sessions.store import parquet_bytes

    folder = saved(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    row = {f.name: None for f in SCHEMAS["circuits"]}
    row.update({"index": 0, "data": "[" * 100_000 + "]" * 100_000})
    data = parquet_bytes(pa.Table.from_pylist([row], schema=SCHEMAS["circuits"]))
    (folder / "circuits.r1.parquet").write_bytes(data)
    manifest["tables"]["circuits"] = {"file": "circuits.r1.parquet", "rows": 1, "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    out = tmp_path / "out"
    result = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["export", str(folder), "--out", str(out)])
    said = one_line(result.output)
    assert result.exit_code == 2, (said, result.exception)
    assert "circuits table, row 0" in said and "nests deeper than 64 levels" in said
    assert not out.exists() and {p.name: p.read_bytes() for p in folder.iterdir()} == before


# --- Ray's temp folder ----------------------------------------------------------------------


def test_a_ray_cluster_started_here_keeps_its_temp_folder_mode_700(tmp_path, monkeypatch):
    """Ray creates its temp folder shared (777) as it starts; ours is a new folder, closed to 700 after."""
    import os
    import stat
    import types

    from lister_tui.core.sweep.ray_cluster import RayOptions, init_ray

    seen = {}

    def init(address=None, log_to_driver=True, **kwargs):
        seen.update(kwargs)
        folder = Path(kwargs["_temp_dir"])
        (folder / "session_latest" / "sockets").mkdir(parents=True)
        os.chmod(folder, 0o777)  # what Ray's try_make_directory_shared does

    constants = types.SimpleNamespace(ENABLE_RAY_CLUSTER=True)
    services = types.SimpleNamespace(canonicalize_bootstrap_address=lambda address: None)
    fake = types.SimpleNamespace(init=init, _private=types.SimpleNamespace(ray_constants=constants, services=services))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    restore = init_ray(fake, RayOptions())
    restore()
    folder = Path(seen["_temp_dir"])
    assert folder.parent == tmp_path and folder.name.startswith("lister-ray-")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_ctrl_o_lists_a_session_with_a_5000_digit_revision_as_damaged(tmp_path, monkeypatch, tiny):
    import asyncio

    from lister_tui.tui.app import ListerApp
    from lister_tui.tui.screens.sessions import OpenSessionScreen

    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    root = tmp_path / "sessions"
    folder = saved(root)
    text = (folder / "manifest.json").read_text()
    revision = json.loads(text)["revision"]
    (folder / "manifest.json").write_text(text.replace(f'"revision": {revision}', '"revision": ' + "9" * 5000))

    async def go():
        app = ListerApp(tiny, initial=None, sessions_dir=root)
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            await pilot.press("ctrl+o")
            await pilot.pause()
            assert isinstance(app.screen, OpenSessionScreen)
            await pilot.press("enter")  # the damaged row: a message, not a crash
            await pilot.pause()
            assert isinstance(app.screen, OpenSessionScreen) and app.session is None
            said = " ".join(m.text for m in app.messages)
            assert "integer of 5000 digits" in said

    asyncio.run(go())
