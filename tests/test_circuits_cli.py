"""`lister-tui circuit`: bad options exit 2 before any model loads; a run writes JSON, DOT and Neuronpedia JSON."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lister_tui.cli import app


@pytest.mark.parametrize(
    "args, says",
    [
        (["--topic", "Animals", "--sites", "res_9"], "unknown site"),
        (["--topic", "Animals", "--nodes", "0"], "nodes per site"),
        (["--topic", "Animals", "--template", "tiny"], "unknown template"),
        (["--topic", "Animals", "--method", "exact"], "node-effect method"),
        (["--topic", "Animals", "--ablation", "half"], "unknown ablation"),
        (["--topic", "Animals", "--batch", "--format", "neuronpedia"], "token positions"),
        (["--topic", "Animals", "--json", "/no/such/folder/c.json"], "does not exist"),
        ([], "exactly one --topic"),
    ],
)
def test_bad_options_exit_2_with_the_valid_range(args, says, monkeypatch):
    import lister_tui.core.engine.loading as loading

    def no_loading(*a, **k):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(loading, "load_model", no_loading)
    result = CliRunner().invoke(app, ["circuit", *args])
    assert result.exit_code == 2, result.output
    assert says in result.output


def test_a_circuit_is_written_as_json_dot_and_neuronpedia_graph(tmp_path):
    common = ["circuit", "--topic", "Fruits", "--sites", "res_1,attn_2,res_2", "--nodes", "3", "--device", "cpu"]
    result = CliRunner().invoke(app, [*common, "--json", str(tmp_path / "c.json"), "--dot", str(tmp_path / "c.dot")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "c.json").read_text())
    ids = {n["id"] for n in data["nodes"]}
    assert "metric" in ids and {n["site"] for n in data["nodes"]} <= {"metric", "embed", "res_1", "attn_2", "res_2"}
    assert all(e["source"] in ids and e["target"] in ids for e in data["edges"])
    assert data["faithfulness"][-1]["recovered"] == pytest.approx(1.0, abs=1e-3)
    assert data["settings"]["sites"] == ["res_1", "attn_2", "res_2"] and data["completeness"] is not None
    assert [r["site"] for r in data["site_report"]] == ["res_1", "attn_2", "res_2"]
    assert (tmp_path / "c.dot").read_text().startswith("digraph circuit {")
    result = CliRunner().invoke(app, [*common, "--no-faithfulness", "--json", str(tmp_path / "g.json"), "--format", "neuronpedia"])
    assert result.exit_code == 0, result.output
    graph = json.loads((tmp_path / "g.json").read_text())
    assert set(graph) == {"metadata", "qParams", "nodes", "links"}
    node_ids = {n["node_id"] for n in graph["nodes"]}
    assert sum(n["is_target_logit"] for n in graph["nodes"]) == 1
    assert all(link["source"] in node_ids and link["target"] in node_ids for link in graph["links"])
