"""Relative clamps (k × the feature's maximum activation from its card): every feature's maximum at
once equals the card's, a sweep file takes ``relative = true``, checks it before the model loads
and records it resolved."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.core.engine.interventions import Intervention, InterventionSet
from lister_tui.core.study.cards import feature_card, max_activations
from lister_tui.core.study.corpus import Corpus, part_from_texts
from lister_tui.organism.corpus import make_corpus

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("relative-cache")


def test_every_features_maximum_is_its_cards_max_activation(tiny, cache):
    part = part_from_texts(tiny, "few", [e.text for e in make_corpus(12, seed=2)], [f"doc {i}" for i in range(12)])
    other = part_from_texts(tiny, "more", [e.text for e in make_corpus(6, seed=3)], [f"doc {i}" for i in range(6)])
    corpus = Corpus((part, other))
    peaks = max_activations(tiny, "res_1", corpus, cache=cache)
    assert peaks.shape == (tiny.load_sae("res_1").cfg.d_sae,)
    firing = np.flatnonzero(peaks > 0)
    assert 0 < len(firing) < len(peaks)  # some never fire: their maximum is 0, as on their card
    for feature in [int(firing[0]), int(firing[len(firing) // 2]), int(np.argmax(peaks)), int(np.flatnonzero(peaks == 0)[0])]:
        assert peaks[feature] == pytest.approx(feature_card(tiny, "res_1", feature, corpus, k=1, cache=cache).max_activation, rel=1e-6)


RELATIVE = """
[[sets]]
name = "half-max"
[[sets.interventions]]
site = "res_0"
feature = {feature}
kind = "clamp"
value = 0.5
relative = true
position = "all"
"""


def _file(tmp_path, body):
    path = tmp_path / "sets.toml"
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    "body, message",
    [
        (RELATIVE.format(feature=3).replace('kind = "clamp"', 'kind = "scale"'), "field 'relative' is for a clamp only"),
        (RELATIVE.format(feature=3).replace("value = 0.5", "value = 500.0"), "field 'value': 500 is out of range for a relative clamp"),
        (RELATIVE.format(feature=3).replace("relative = true", 'relative = "yes"'), "field 'relative' is for a clamp only"),
    ],
    ids=["not a clamp", "k out of range", "not a boolean"],
)
def test_a_bad_relative_clamp_is_refused_before_the_model_loads(tmp_path, monkeypatch, body, message):
    import lister_tui.core.engine.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    path = _file(tmp_path, body)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sweep", "--out", str(out), "--device", "cpu", "--topic", "Fruits", "--interventions", str(path)])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and message in said and str(path) in said, said
    assert "Traceback" not in result.output and not out.exists()


def test_a_sweep_resolves_a_relative_clamp_from_the_card_and_records_it(tiny, tmp_path, monkeypatch):
    from lister_tui.core.study.corpus import default_corpus
    from lister_tui.core.sweep.interventions_file import read_sets

    monkeypatch.setenv("LISTER_TUI_CACHE", str(tmp_path / "cache"))
    feature = 7
    path = _file(tmp_path, RELATIVE.format(feature=feature))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "sweep", "--sae", "res_0", "--topic", "Fruits", "--samples", "1", "--max-new-tokens", "30", "--device", "cpu",
        "--no-restricted", "--no-steering", "--no-faithfulness", "--interventions", str(path), "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    peak = float(max_activations(tiny, "res_0", default_corpus(tiny))[feature])
    assert peak > 0
    manifest = json.loads((out / "manifest.json").read_text())
    (item,) = manifest["settings"]["interventions"][0]["interventions"]
    assert item["value"] == pytest.approx(0.5 * peak) and not item.get("relative")
    (row,) = manifest["runtime"]["interventions_resolved"]
    assert (row["set"], row["site"], row["feature"], row["k"]) == ("half-max", "res_0", feature, 0.5)
    assert row["max_activation"] == pytest.approx(peak) and row["value"] == pytest.approx(0.5 * peak)
    # the repeat command's file holds the absolute clamp: running it again needs no card
    (resolved,) = read_sets(out / "interventions.json", tiny.entry)
    assert resolved == InterventionSet((Intervention("res_0", feature, "clamp", item["value"], "all"),), "half-max")


def test_a_relative_clamp_on_a_transcoder_feature_resolves_from_its_own_maximum(tiny, tmp_path):
    from lister_tui.core.study.corpus import default_corpus
    from lister_tui.core.sweep.interventions_file import resolve_sets

    record = {"name": "tc", "interventions": [{"site": "tc_1", "feature": 5, "kind": "clamp", "value": -0.5, "position": "all", "relative": True}]}
    (resolved,), provenance = resolve_sets(tiny, (record,), cache=tmp_path)
    peak = float(max_activations(tiny, "tc_1", default_corpus(tiny), cache=tmp_path)[5])
    assert peak > 0 and resolved["interventions"][0]["value"] == pytest.approx(-0.5 * peak)
    assert "relative" not in resolved["interventions"][0] and provenance[0]["max_activation"] == pytest.approx(peak)
