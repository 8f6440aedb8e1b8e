"""Attribution graphs saved in a session: a record round-trips, damage is named (never a traceback),
older sessions open with none, exports list them, and `lister-tui graph --session NAME --save` adds one."""

from __future__ import annotations

import json
import math
import re

import pytest
from fuzz_inputs import HOSTILE_JSON, json_leaves, with_leaf
from session_fixtures import (
    MODEL,
    VOCAB,
    add_graph,
    decode,
    make_graph_json,
    small_workspace,
)
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.export import session_export
from lister_tui.core.sessions.store import SessionStore, read_session, snapshot
from lister_tui.core.study.graphs.record import GraphRecord, SavedSupernode


def _save(ws, folder):
    SessionStore(folder).save(ws, MODEL, decode=decode, token_string=lambda i: VOCAB.get(i, "?"))


def test_a_graph_round_trips_with_its_figures_and_supernodes(tmp_path):
    ws = small_workspace()
    assert add_graph(ws) == 0
    record = ws.graphs[0]
    key = next(iter(ws.samples))
    assert record.sample == key and record.targets == (ws.state(key).sample.structure.attribution_pos,)
    assert (record.n_nodes, record.n_kept, record.n_edges) == (40, 4, 3)
    assert (record.replacement_score, record.completeness_score, record.attention_features) == (0.75, 0.5, True)
    assert record.supernodes == (SavedSupernode("the pair", tuple(n["id"] for n in record.graph["nodes"][:2])),)
    assert snapshot(ws).graphs == ws.graphs  # what autosave writes holds them
    _save(ws, tmp_path / "s")
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["tables"]["graphs"]["rows"] == 1
    back = read_session(tmp_path / "s").workspace
    assert back.graphs == ws.graphs and back.graphs_of(key) == ws.graphs
    # a session only grows: a second graph is added after the first, both kept
    add_graph(ws)
    _save(ws, tmp_path / "s2")
    assert len(read_session(tmp_path / "s2").workspace.graphs) == 2


def test_a_graph_of_a_sample_not_in_the_session_is_refused():
    ws = small_workspace()
    data = make_graph_json(10, 8)
    with pytest.raises(ListerError, match="no sample 'short/Nope/0@1'"):
        ws.add_graph(GraphRecord.from_graph_json("short/Nope/0@1", data))
    assert ws.graphs == []


def test_an_undefined_score_is_kept_as_nan():
    data = make_graph_json(10, 8)
    data["replacement_score"] = float("nan")
    record = GraphRecord.from_graph_json("k", data)
    assert math.isnan(record.replacement_score)
    again = GraphRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert math.isnan(again.replacement_score) and again.to_dict()["replacement_score"] is None


def test_every_field_of_a_record_with_hostile_values_is_a_record_or_a_clear_error():
    """Each leaf of a record's JSON (the pruned graph's too) replaced by each hostile value."""
    good = GraphRecord.from_graph_json("k", make_graph_json(10, 8), [("g", ["tc_0/3@7", "tc_0/3@8"])]).to_dict()
    cases = errors = 0
    for path in json_leaves(good):
        for value in HOSTILE_JSON.values():
            cases += 1
            try:
                GraphRecord.from_dict(json.loads(json.dumps(with_leaf(good, path, value))), "graphs table, row 0")
            except ListerError as exc:
                errors += 1
                assert str(exc).startswith("graphs table, row 0"), exc
    assert cases > 500 and errors > cases // 3  # most damage is noticed; the rest (a token's text, a head share) is data
    # what must be noticed
    for path, value, message in [
        (("graph", "edges", 0, "source"), "nobody@3", "must join two of the graph's nodes"),
        (("n_kept",), 3, "graph.nodes must list the 3 kept nodes"),
        (("node_threshold",), 0, "node_threshold"),
        (("supernodes", 0, "members", 1), "token@99", "is not a node of the saved graph"),
        (("graph", "nodes", 1, "id"), "tc_0/3@7", "appears twice"),
    ]:
        with pytest.raises(ListerError, match=re.escape(message)):
            GraphRecord.from_dict(with_leaf(good, path, value))


def _damage_graph_row(folder, change):
    import hashlib
    import io

    import pyarrow.parquet as pq

    from lister_tui.core.sessions.schema import to_arrow
    from lister_tui.core.sessions.store import parquet_bytes

    manifest = json.loads((folder / "manifest.json").read_text())
    path = folder / manifest["tables"]["graphs"]["file"]
    rows = pq.read_table(io.BytesIO(path.read_bytes())).to_pylist()
    change(rows[0])
    data = parquet_bytes(to_arrow("graphs", rows))
    path.write_bytes(data)
    manifest["tables"]["graphs"]["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.update(data="[" * 100_000 + "]" * 100_000), "nests deeper"),
        (lambda r: r.update(data="{not json"), "graphs table, row 0: the graph's JSON is damaged"),
        (lambda r: r.update(sample="long/Colors/1@12"), "column sample is 'long/Colors/1@12'"),
        (lambda r: r.update(sample="short/Gone/0@1", data=r["data"].replace('"sample": "short/Fruits/0@11"', '"sample": "short/Gone/0@1"')),
         "sample 'short/Gone/0@1' is not in the samples table"),
        (lambda r: r.update(index=None), "column index is None"),
    ],
)
def test_a_damaged_graph_row_is_named(tmp_path, change, message):
    ws = small_workspace()
    add_graph(ws)
    folder = tmp_path / "s"
    _save(ws, folder)
    _damage_graph_row(folder, change)
    with pytest.raises(ListerError, match=re.escape(message)):
        read_session(folder)


def test_a_session_without_a_graphs_table_opens_with_none(tmp_path):
    folder = tmp_path / "old"
    _save(small_workspace(), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["tables"]["graphs"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert read_session(folder).workspace.graphs == []


def test_export_lists_graphs_their_nodes_and_edges():
    ws = small_workspace()
    empty = session_export(ws, None)
    assert list(empty["graphs"].columns)[:3] == ["graph", "sample", "targets"] and len(empty["graphs"]) == 0
    add_graph(ws)
    tables = session_export(ws, None)
    row = tables["graphs"].iloc[0]
    assert row["sample"] == ws.graphs[0].sample and row["n_kept"] == 4 and row["supernodes"] == "the pair"
    assert row["replacement_score"] == 0.75 and row["targets"] == str(ws.graphs[0].targets[0])
    nodes = tables["graph_nodes"]
    assert list(nodes["id"]) == [n["id"] for n in ws.graphs[0].graph["nodes"]]
    assert list(nodes["supernodes"]) == ["the pair", "the pair", "", ""]
    assert nodes.iloc[0]["label"] == "the word short"
    edges = tables["graph_edges"]
    assert list(edges["weight"]) == [0.5, -1.25, 0.75] and set(edges["graph"]) == {0}


def test_save_without_session_and_a_session_of_another_model_are_refused_before_loading(tmp_path, monkeypatch):
    from lister_tui.core.engine import loading

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(loading, "load_model", no_load)
    runner = CliRunner()
    result = runner.invoke(app, ["graph", "--save"])
    assert result.exit_code == 2 and "give --session NAME" in result.output
    _save(small_workspace(), tmp_path / "fake")
    result = runner.invoke(app, ["graph", "--session", "fake", "--save", "--sessions-dir", str(tmp_path)])
    assert result.exit_code == 2 and "is of model fake-model, not lister-tiny" in result.output, result.output
    # a lister-tiny session made with other weights (another fingerprint of model.safetensors)
    from dataclasses import replace

    from lister_tui.core.sessions.workspace import Workspace

    other = replace(MODEL, name="lister-tiny", fingerprint={"sha256": {"model.safetensors": "00" * 32}})
    SessionStore(tmp_path / "retrained").save(Workspace("lister-tiny"), other)
    result = runner.invoke(app, ["graph", "--session", "retrained", "--save", "--sessions-dir", str(tmp_path)])
    assert result.exit_code == 2 and "made with other weights of lister-tiny (model.safetensors)" in " ".join(result.output.split()), result.output


def test_graph_save_adds_the_graph_and_its_list_to_a_lister_tiny_session(tmp_path):
    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.sessions.opening import model_info
    from lister_tui.core.sessions.workspace import Workspace

    loaded = load_model("lister-tiny", device="cpu")
    SessionStore(tmp_path / "tiny").save(Workspace("lister-tiny"), model_info(loaded))
    runner = CliRunner()
    args = ["graph", "--template", "short", "--topic", "Animals", "--no-attention-features", "--checks", "0", "--pos", "31",
            "--session", "tiny", "--save", "--sessions-dir", str(tmp_path), "--device", "cpu"]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # the console wraps long lines
    assert "saved as graph 0 of short/Animals/0@" in out and "the list was added" in out
    ws = read_session(tmp_path / "tiny").workspace
    (key,) = ws.samples
    record = ws.graphs[0]
    assert record.sample == key and record.targets == (31,)
    assert not record.attention_features and (record.node_threshold, record.edge_threshold) == (0.8, 0.98)
    printed = re.search(r"(\d+) nodes, (\d+) kept, (\d+) edges kept", out).groups()
    assert (record.n_nodes, record.n_kept, record.n_edges) == tuple(map(int, printed))
    scores = re.search(r"replacement score ([\d.]+), completeness score ([\d.]+)", out).groups()
    assert (round(record.replacement_score, 3), round(record.completeness_score, 3)) == tuple(map(float, scores))
    # a second graph of the same list: added, the list not added twice (the save step alone; the graph is the first's)
    from lister_tui.cli.graph import _save_to_session

    opened = read_session(tmp_path / "tiny")
    done = _save_to_session(loaded, opened.workspace.state(key).sample, record.graph, opened, "code")
    assert done.startswith("saved as graph 1") and "the list was added" not in done
    ws = read_session(tmp_path / "tiny").workspace
    assert list(ws.samples) == [key] and len(ws.graphs) == 2 and ws.graphs[1].graph == record.graph
    # the list in the session was drawn with preset code: another preset is refused before any work
    other = runner.invoke(app, [*args, "--preset", "greedy"], terminal_width=200)
    assert other.exit_code == 2 and "drawn with preset code; pass --preset code" in " ".join(other.output.split()), other.output
    assert len(read_session(tmp_path / "tiny").workspace.graphs) == 2


def test_a_graph_too_large_to_read_back_is_not_saved(monkeypatch):
    from lister_tui.core.study.graphs import record as record_module

    data = make_graph_json(10, 8)
    monkeypatch.setattr(record_module, "MAX_MANIFEST_BYTES", len(json.dumps(data)) // 2)
    with pytest.raises(ListerError, match="lower the node and edge thresholds"):
        GraphRecord.from_graph_json("k", data)
