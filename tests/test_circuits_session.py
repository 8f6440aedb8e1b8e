"""Sessions keep circuits (settings and results), older sessions still open, exports include them."""

from __future__ import annotations

import json

from session_fixtures import MODEL, VOCAB, small_workspace

from lister_tui.core.sessions.export import export_tables, write_exports
from lister_tui.core.sessions.store import SessionStore, read_session
from lister_tui.core.study.circuits import (
    Circuit,
    CircuitSettings,
    Edge,
    FaithfulnessPoint,
    Node,
)


def _circuit(sample_key: str) -> Circuit:
    settings = CircuitSettings(sites=("res_0", "attn_1"), nodes_per_site=2, method="ig")
    nodes = [
        Node("metric", "metric", "metric", None, None, None, 1.5),
        Node("attn_1/5/3", "feature", "attn_1", 3, 5, "w9", 0.7, 1.2),
        Node("res_0/2/7", "feature", "res_0", 7, 2, "w7\n", 0.4, 0.9),
        Node("res_0/5/error", "error", "res_0", None, 5, "w9", -0.1),
    ]
    edges = [Edge("res_0/2/7", "attn_1/5/3", 0.25), Edge("attn_1/5/3", "metric", 0.7)]
    curve = [FaithfulnessPoint(1, 0.1), FaithfulnessPoint(2, 0.85), FaithfulnessPoint(3, 1.0)]
    return Circuit(
        settings, [sample_key], nodes, edges, metric=1.5, metric_empty=-2.0, faithfulness=curve, completeness=0.05,
        recovered=0.9, site_totals={"res_0": {"features": 0.4, "error": 0.1}}, n_candidates=42,
    )


def _save(ws, folder):
    return SessionStore(folder).save(ws, MODEL, decode=lambda ids: "".join(VOCAB.get(i, "?") for i in ids), token_string=lambda i: VOCAB.get(i, "?"))


def test_a_saved_circuit_reopens_with_its_settings_and_results(tmp_path):
    ws = small_workspace()
    key = ws.keys()[0]
    circuit = _circuit(ws.state(key).sample.spec.key)
    assert ws.add_circuit(circuit) == 0
    manifest = _save(ws, tmp_path / "s")
    assert "circuits" in manifest["tables"]
    opened = read_session(tmp_path / "s")
    assert [c.to_dict() for c in opened.workspace.circuits] == [circuit.to_dict()]
    assert opened.workspace.circuits_of(key)[0].n_for(0.8) == 2
    assert opened.workspace.circuits[0].settings.method == "ig"


def test_a_session_saved_before_circuits_existed_still_opens(tmp_path):
    ws = small_workspace()
    _save(ws, tmp_path / "s")
    manifest_path = tmp_path / "s" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    table = manifest["tables"].pop("circuits")  # as an older lister-tui wrote it: no such table
    (tmp_path / "s" / table["file"]).unlink()
    manifest_path.write_text(json.dumps(manifest))
    opened = read_session(tmp_path / "s")
    assert opened.workspace.circuits == [] and opened.workspace.keys() == ws.keys()


def test_exports_include_circuit_nodes_and_edges(tmp_path):
    ws = small_workspace()
    ws.add_circuit(_circuit(ws.state(ws.keys()[0]).sample.spec.key))
    tables = export_tables(ws)
    assert list(tables["circuit_nodes"]["id"]) == ["metric", "attn_1/5/3", "res_0/2/7", "res_0/5/error"]
    assert list(tables["circuit_edges"]["weight"]) == [0.25, 0.7]
    assert tables["circuits"].loc[0, "n_for_0_8"] == 2
    files = write_exports(tables, tmp_path / "out", "csv")
    assert {"circuits.csv", "circuit_nodes.csv", "circuit_edges.csv"} <= {f.name for f in files}
