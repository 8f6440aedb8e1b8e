"""Batch experiments in a session: saved, reopened with the same figures, exported; format 1 sessions migrate."""

from __future__ import annotations

import json

from session_fixtures import MODEL, VOCAB, decode, small_workspace

from lister_tui.core.engine.interventions import Intervention, InterventionSet
from lister_tui.core.sessions.export import session_export
from lister_tui.core.sessions.schema import FORMAT_VERSION
from lister_tui.core.sessions.store import SessionStore, read_session
from lister_tui.core.study.intervention_batch import BASE, CONTROL, INTERVENED, BatchExperiment, ExperimentSettings


def _experiment() -> BatchExperiment:
    iset = InterventionSet((Intervention("res_0", 3, "clamp", 2.5, 7), Intervention("res_0", 5, "steer", -1.0, "generated")), "my set")
    exp = BatchExperiment(ExperimentSettings(iset, n_seeds=2), ["short/Fruits/0@11"], units_total=2, done=True)
    exp.conditions = {INTERVENED: {"kind": "interventions", "interventions": iset.to_dict()}}
    for seed, (b, i, c) in zip((11, 7930), ((4, 6, 4), (5, 8, 5))):
        for condition, items in ((BASE, b), (INTERVENED, i), (CONTROL, c)):
            exp.rows.append(
                {"sample_key": "short/Fruits/0@11", "template": "short", "topic": "Fruits", "seed": seed, "seed_index": 0, "condition": condition,
                 "n_items": items, "n_tokens": 3 * items, "reached_end": True, "metric_plain": 1.0, "metric_under": 1.0 - 0.1 * items, "tokens": [1, 2, items]}
            )  # fmt: skip
    return exp


def test_an_experiment_round_trips_and_exports(tmp_path):
    ws = small_workspace()
    exp = _experiment()
    assert ws.add_experiment(exp) == 0
    manifest = SessionStore(tmp_path / "s").save(ws, MODEL, decode=decode, token_string=lambda i: VOCAB.get(i, "?"))
    assert manifest["format_version"] == FORMAT_VERSION == 2 and manifest["tables"]["experiments"]["rows"] == 1
    back = read_session(tmp_path / "s").workspace.experiments
    assert len(back) == 1 and back[0].to_dict() == exp.to_dict() and back[0].summary() == exp.summary()
    table = session_export(ws, None)["experiments"]
    hit = table[table["condition"] == INTERVENED].iloc[0]
    assert hit["n"] == 2 and hit["n_items_change_mean"] == 2.5 and hit["name"] == "my set"
    assert "res_0#3 clamp=2.5 @7" in hit["interventions"]
    assert set(table["condition"]) == {INTERVENED, CONTROL}


def test_a_format_1_session_opens_with_no_experiments_and_saves_as_format_2(tmp_path):
    ws = small_workspace()
    folder = tmp_path / "old"
    SessionStore(folder).save(ws, MODEL, decode=decode)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = 1
    del manifest["tables"]["experiments"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    opened = read_session(folder)
    assert opened.migrated_from == 1 and opened.workspace.experiments == []
    assert len(opened.workspace.samples) == len(ws.samples)
    again = SessionStore.of(opened).save(opened.workspace, MODEL)
    assert again["format_version"] == 2
    assert json.loads((folder / "manifest.v1.json").read_text())["format_version"] == 1


def test_a_relative_clamp_round_trips_with_its_maximum_and_an_older_file_reads_as_absolute(tmp_path):
    import hashlib

    import pyarrow.parquet as pq

    from session_fixtures import assert_same_workspace

    from lister_tui.core.sessions.workspace import AblationChoice

    ws = small_workspace()
    key = next(iter(ws.samples))
    waiting = AblationChoice("res_0", 7, 4, "every", "clamp", 0.5, relative=True)
    known = AblationChoice("attn_1", 9, 4, "every", "clamp", 0.25, relative=True, peak=6.0)
    ws.toggle(key, waiting)
    ws.toggle(key, known)
    SessionStore(tmp_path / "s").save(ws, MODEL, decode=decode)
    back = read_session(tmp_path / "s").workspace
    assert_same_workspace(ws, back)
    assert known.to_intervention().value == 1.5 and waiting.waiting_for_peak and not known.waiting_for_peak
    assert known.kind_text() == "=0.25×max=1.5" and waiting.kind_text() == "=0.5×max=…"
    # a file written before the two columns existed: every clamp absolute
    path = next((tmp_path / "s").rglob("choices*.parquet"))
    table = pq.read_table(path)
    pq.write_table(table.drop(["relative", "peak"]), path)
    manifest_path = tmp_path / "s" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["tables"]["choices"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    old = read_session(tmp_path / "s").workspace.state(key).choices
    assert all(not c.relative and c.peak is None for c in old)


def test_the_ablations_export_says_how_each_feature_was_changed():
    from dataclasses import replace

    ws = small_workspace()
    key = next(iter(ws.samples))
    run = ws.state(key).runs[0]
    kinds = (replace(run.choices[0], kind="steer", value=2.0), replace(run.choices[1], kind="clamp", value=0.5, relative=True, peak=6.0))
    ws.state(key).runs[0] = replace(run, choices=kinds)
    features = session_export(ws, None)["ablations"]["features"].iloc[0]
    assert features == "res_0 f3@5 +2; attn_1 f2@all =0.5×max=3"
