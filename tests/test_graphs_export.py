"""Graph files: Neuronpedia's graph JSON validates against the schema; the CLI refuses bad input and writes it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from graph_fixtures import fit_transcoders
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.core.engine.generation import sample_lists
from lister_tui.core.engine.loading import load_model
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.study.graphs.attribute import ATTN, attribute_graph
from lister_tui.core.study.graphs.export import graph_json, neuronpedia_json
from lister_tui.core.study.graphs.heads import head_shares
from lister_tui.core.study.graphs.prune import prune, scores
from lister_tui.core.study.settings import SAMPLING_PRESETS

SCHEMA = json.loads((Path(__file__).parent / "data" / "neuronpedia-graph-schema.json").read_text())


@pytest.fixture(scope="module")
def small():
    """A graph with attention features on a short target (the third token of the first item)."""
    loaded = load_model("lister-tiny", device="cpu")
    tcs = fit_transcoders(loaded)
    attn = {layer: loaded.load_sae(f"attn_{layer}") for layer in range(4)}
    sample = sample_lists(loaded, build_prompts(["short"], ["Animals"], samples_per_topic=1, base_seed=0), SAMPLING_PRESETS["code"])[0]
    ids = dict(blank_id=loaded.ids.blank, newline_id=loaded.ids.newline)
    pos = sample.prompt_len + 1
    graph = attribute_graph(loaded.model, sample.tokens, tcs, attn, [pos], **ids, batch=256)
    return loaded, tcs, attn, graph, ids, [str(t) for t in loaded.to_str_tokens(graph.tokens)]


def test_neuronpedia_json_validates_and_links_join_its_nodes(small):
    loaded, tcs, attn, graph, ids, strings = small
    pruned = prune(graph)
    labels = {("attn_0", int(graph.nodes.feature[i])): "an attention feature" for i in np.flatnonzero(graph.nodes.kind == ATTN)}
    data = neuronpedia_json(graph, pruned, strings, slug="short-Animals-0", model_name="lister-tiny", blank_id=ids["blank_id"],
                            labels=lambda site, f: labels.get((site, f)))
    jsonschema.validate(data, SCHEMA)
    node_ids = [n["node_id"] for n in data["nodes"]]
    assert len(node_ids) == len(set(node_ids))  # attention and transcoder features never collide
    assert {link["source"] for link in data["links"]} | {link["target"] for link in data["links"]} <= set(node_ids)
    targets = [n for n in data["nodes"] if n["is_target_logit"]]
    assert len(targets) == 1 and "logit(blank) − logit(newline)" in targets[0]["clerp"]
    assert any(n["feature_type"] == "lorsa" for n in data["nodes"])
    for group in data["qParams"]["supernodes"]:
        assert len(group) >= 3 and set(group[1:]) <= set(node_ids)
    # a label given for a kept attention feature becomes its clerp
    assert any(n["clerp"] == "an attention feature" for n in data["nodes"] if n["layer"] == "0")
    # the schema is not a formality: a node without its id is refused
    broken = json.loads(json.dumps(data))
    del broken["nodes"][0]["node_id"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)


def test_head_shares_of_an_edge_into_an_attention_feature_sum_to_the_edge(small):
    """With attention features on, an edge between positions ends in an attention feature and its heads
    are that feature's layer's: their shares add up to the edge."""
    loaded, tcs, attn, graph, ids, strings = small
    pruned = prune(graph)
    nodes = graph.nodes
    edges = [(int(t), int(s)) for t, s in torch.nonzero(pruned.edge_mask).tolist() if nodes.pos[t] != nodes.pos[s]][:20]
    assert edges
    shares = head_shares(loaded.model, graph, tcs, attn, edges, **ids)
    for (t, s), share in shares.items():
        assert nodes.kind[t] == ATTN
        layer = int(nodes.layer[t])
        own = share[layer * graph.n_heads : (layer + 1) * graph.n_heads]
        assert abs(own.sum() - float(graph.adjacency[t, s])) <= 1e-4 + 1e-4 * abs(float(graph.adjacency[t, s]))
    out = graph_json(graph, pruned, strings, scores=scores(graph), heads=shares)
    assert any("heads" in e for e in out["edges"]) and json.dumps(out)


runner = CliRunner()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--node-threshold", "0"], "(0, 1]"),
        (["--edge-threshold", "1.2"], "(0, 1]"),
        (["--pos", "3", "--each-item"], "not both"),
        (["--format", "svg"], "valid: json, neuronpedia"),
        (["--transcoders", "/nonexistent/tcs"], "not a folder"),
    ],
)
def test_bad_options_are_refused_before_the_model_loads(args, message, monkeypatch):
    from lister_tui.core.engine import loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    result = runner.invoke(app, ["graph", *args])
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.fixture(scope="module")
def tc_folder(small, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tcs")
    for layer, tc in small[1].items():
        tc.save_model(str(folder / f"mlp_{layer}"))
    return folder


def test_cli_refuses_a_position_outside_the_list(tc_folder):
    result = runner.invoke(app, ["graph", "--transcoders", str(tc_folder), "--pos", "4000", "--device", "cpu"])
    assert result.exit_code == 2 and "outside the list" in result.output, result.output


def test_cli_refuses_a_graph_over_its_memory(tc_folder):
    result = runner.invoke(app, ["graph", "--transcoders", str(tc_folder), "--max-memory", "0.001", "--device", "cpu"])
    assert result.exit_code == 2 and "GiB" in result.output and "--max-memory" in result.output, result.output


def test_cli_writes_a_neuronpedia_graph(tmp_path):
    """With lister-tiny's own (shipped) transcoders."""
    out = tmp_path / "graph.json"
    args = ["graph", "--no-attention-features", "--pos", "33", "--checks", "1",
            "--json", str(out), "--format", "neuronpedia", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "replacement score" in result.output and "completeness score" in result.output
    data = json.loads(out.read_text())
    jsonschema.validate(data, SCHEMA)
    assert not any(n["feature_type"] == "lorsa" for n in data["nodes"])


def test_cli_names_nodes_with_the_sessions_labels(tmp_path):
    """--session: a feature's label in the session becomes its node's clerp (Neuronpedia) and label (ours)."""
    from lister_tui.core.sessions.opening import model_info
    from lister_tui.core.sessions.store import SessionStore
    from lister_tui.core.sessions.workspace import Workspace

    loaded = load_model("lister-tiny", device="cpu")
    ws = Workspace(model_name="lister-tiny")
    ws.set_label("attn_2", 283, "reads the template word")
    folder = tmp_path / "labelled"
    SessionStore(folder).save(ws, model_info(loaded), decode=loaded.tokenizer.decode, token_string=lambda i: loaded.tokenizer.convert_ids_to_tokens(i))
    out = tmp_path / "graph.json"
    base = ["graph", "--session", str(folder), "--checks", "0", "--device", "cpu"]
    result = runner.invoke(app, [*base, "--json", str(out), "--format", "neuronpedia"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    jsonschema.validate(data, SCHEMA)
    assert [n["clerp"] for n in data["nodes"] if n["node_id"].startswith("4_283_")] == ["reads the template word"] * len(
        [n for n in data["nodes"] if n["node_id"].startswith("4_283_")]
    ) and any(n["node_id"].startswith("4_283_") for n in data["nodes"])  # attention layer 2 is viewer layer 4
