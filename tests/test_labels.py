"""Feature labels: a user's one-line name for a feature, kept by the session (save, reopen, replay, export)."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.core.engine.generation import sample_lists
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.sessions.export import export_tables, write_exports
from lister_tui.core.sessions.opening import model_info
from lister_tui.core.sessions.store import SessionStore, read_session
from lister_tui.core.sessions.workspace import Workspace
from lister_tui.core.study.experiment import attribute_lists
from lister_tui.core.study.settings import SAMPLING_PRESETS

from session_fixtures import MODEL, VOCAB, assert_same_workspace, decode, small_workspace

MARKUP = "[bold red]short[/] word \x1b[31m"  # user text that looks like markup and holds a control character


def save(ws: Workspace, folder) -> dict:
    return SessionStore(folder).save(ws, MODEL, decode=decode, token_string=lambda i: VOCAB.get(i, "?"))


def test_a_label_is_one_line_and_an_empty_one_removes_it():
    ws = Workspace("m")
    assert ws.set_label("res_0", 3, "  says\nshort\t ") == "says short"
    assert ws.label("res_0", 3) == "says short" and ws.label("res_0", 4) == ""
    revision = ws.revision
    ws.set_label("res_0", 3, "")
    assert ws.labels == {} and ws.revision > revision


def test_labels_survive_save_and_reopen_as_written(tmp_path):
    ws = small_workspace()
    ws.set_label("res_0", 3, MARKUP)
    ws.set_label("attn_1", 7, "blank before newline")
    save(ws, tmp_path / "s")
    opened = read_session(tmp_path / "s").workspace
    assert opened.labels == {("res_0", 3): MARKUP, ("attn_1", 7): "blank before newline"}
    assert_same_workspace(ws, opened)
    # a second save keeps them (the session only grows unless the user removes one)
    opened.set_note(next(iter(opened.samples)), "more")
    SessionStore.of(read_session(tmp_path / "s")).save(opened, MODEL)
    assert read_session(tmp_path / "s").workspace.labels == opened.labels


def test_a_session_saved_before_labels_existed_opens_without_labels(tmp_path):
    ws = small_workspace()
    manifest = save(ws, tmp_path / "s")
    (tmp_path / "s" / manifest["tables"].pop("labels")["file"]).unlink()
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(manifest))
    opened = read_session(tmp_path / "s")
    assert opened.workspace.labels == {}
    assert_same_workspace(ws, opened.workspace)
    # and the next save adds the table
    opened.workspace.set_label("res_0", 1, "x")
    SessionStore.of(opened).save(opened.workspace, MODEL)
    assert read_session(tmp_path / "s").workspace.labels == {("res_0", 1): "x"}


def test_a_damaged_labels_table_is_named(tmp_path):
    ws = small_workspace()
    ws.set_label("res_0", 3, "x")
    manifest = save(ws, tmp_path / "s")
    path = tmp_path / "s" / manifest["tables"]["labels"]["file"]
    path.write_bytes(b"not parquet")
    manifest["tables"]["labels"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(manifest))
    import pytest

    from lister_tui.core.errors import ListerError

    with pytest.raises(ListerError, match="table 'labels'"):
        read_session(tmp_path / "s")


def test_labels_are_in_the_exports(tmp_path):
    ws = small_workspace()
    key = next(k for k, st in ws.samples.items() if st.attribution)
    attr = next(iter(ws.state(key).attribution.values()))
    pair = attr.top[0][0]
    ws.set_label(attr.sae_id, pair.feature, MARKUP)
    tables = export_tables(ws, decode)
    labels = tables["labels"]
    assert labels.to_dict("records") == [{"sae": attr.sae_id, "feature": pair.feature, "label": MARKUP}]
    rows = tables["attributions"]
    mine = rows[(rows["sae"] == attr.sae_id) & (rows["feature"] == pair.feature)]
    assert set(mine["label"]) == {MARKUP}
    files = write_exports(tables, tmp_path / "out", "csv")
    back = pd.read_csv(next(f for f in files if f.name.startswith("labels")))
    assert back["label"].tolist() == [MARKUP]


def test_labels_survive_replay(tmp_path, tiny):
    samples = sample_lists(tiny, build_prompts(["short"], ["Fruits"], 1, 0), SAMPLING_PRESETS["greedy"])
    ws = Workspace(tiny.entry.name)
    keys = ws.add_samples(samples, "greedy")
    ws.set_batch_attribution(keys, attribute_lists(tiny, samples, ["res_0"]))
    ws.set_label("res_0", 377, "the word ' short'")
    SessionStore(tmp_path / "s").save(ws, model_info(tiny), decode=tiny.tokenizer.decode)
    result = CliRunner().invoke(app, ["replay", "s", "--sessions-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert read_session(tmp_path / "s").workspace.labels == {("res_0", 377): "the word ' short'"}
    result = CliRunner().invoke(app, ["export", "s", "--sessions-dir", str(tmp_path), "-o", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "e" / "labels.csv")["label"].tolist() == ["the word ' short'"]
