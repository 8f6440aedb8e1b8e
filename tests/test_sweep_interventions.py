"""`lister-tui sweep --interventions FILE`: named sets as conditions, n and intervals in every table, bad files refused."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.core.engine.generation import sample_lists
from lister_tui.core.engine.prompts import PromptSpec
from lister_tui.core.study.settings import SAMPLING_PRESETS
from lister_tui.core.study.stats import t_interval
from lister_tui.core.sweep.interventions_file import read_sets, sets_from_records
from lister_tui.core.engine.registry import get_entry

torch.set_num_threads(1)

GOOD = """
[[sets]]
name = "no-short"
[[sets.interventions]]
site = "res_0"
feature = 378
kind = "zero"
position = "all"
[[sets.interventions]]
site = "res_0"
feature = 382
kind = "zero"
value = 0.0
position = "all"

[[sets]]
name = "half-short"
[[sets.interventions]]
site = "res_0"
feature = 382
kind = "scale"
value = 0.5
position = "prompt"
"""


def invoke(args):
    return CliRunner().invoke(app, args)


def _one(body: str) -> str:
    return '[[sets]]\nname = "s1"\n[[sets.interventions]]\n' + body


BAD = {
    "unknown site": (_one('site = "res_9"\nfeature = 1\n'), "set 1 ('s1'), intervention 1: field 'site': unknown site 'res_9'"),
    "feature out of range": (_one('site = "res_0"\nfeature = 99999\n'), "field 'feature': 99999 is out of range for res_0; valid: 0.."),
    "unknown kind": (_one('site = "res_0"\nfeature = 1\nkind = "boost"\n'), "field 'kind': unknown kind 'boost'; valid: zero, scale, clamp, steer"),
    "unknown position": (_one('site = "res_0"\nfeature = 1\nposition = "middle"\n'), "field 'position': unknown position 'middle'"),
    "non-finite value": (_one('site = "res_0"\nfeature = 1\nkind = "scale"\nvalue = nan\n'), "field 'value': value nan is not valid"),
    "absurd value": (_one('site = "res_0"\nfeature = 1\nkind = "steer"\nvalue = 1e12\n'), "field 'value': value 1000000000000.0 is not valid"),
    "no interventions": ('[[sets]]\nname = "s1"\ninterventions = []\n', "set 1 ('s1'): field 'interventions' has no interventions"),
    "duplicate names": (GOOD.replace("half-short", "no-short"), "set 2 ('no-short'): field 'name': two sets are named 'no-short'"),
    "a taken condition name": (GOOD.replace("half-short", "base"), "field 'name': 'base' is already a condition"),
    "not TOML": ("[[sets]\n", "not valid TOML"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_interventions_file_is_refused_before_the_model_loads(tmp_path, monkeypatch, case):
    import lister_tui.core.engine.loading as loading

    def no_load(*a, **k):
        raise AssertionError("the model must not load for a bad file")

    monkeypatch.setattr(loading, "load_model", no_load)
    body, message = BAD[case]
    path = tmp_path / "sets.toml"
    path.write_text(body)
    out = tmp_path / "out"
    result = invoke(["sweep", "--out", str(out), "--device", "cpu", "--topic", "Fruits", "--interventions", str(path)])
    said = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert str(path) in said and message in said, said
    assert "Traceback" not in result.output
    assert not out.exists()


def test_json_takes_the_same_keys(tmp_path):
    import tomllib

    entry = get_entry("lister-tiny")
    path = tmp_path / "sets.json"
    path.write_text(json.dumps(tomllib.loads(GOOD)))
    sets = read_sets(path, entry)
    assert [s.name for s in sets] == ["no-short", "half-short"]
    assert sets[1].interventions[0].kind == "scale" and sets[1].interventions[0].value == 0.5
    assert sets_from_records(tuple(s.to_dict() for s in sets)) == sets


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("iv-sweep")
    path = folder / "sets.toml"
    path.write_text(GOOD)
    out = folder / "out"
    result = invoke([
        "sweep", "--sae", "res_0", "--topic", "Fruits,Animals,Countries", "--samples", "2", "--max-new-tokens", "60",
        "--device", "cpu", "--no-restricted", "--no-steering", "--no-faithfulness", "--interventions", str(path), "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, result.output


def test_each_set_is_a_condition_with_n_and_intervals_in_every_table(swept):
    out, printed = swept
    by_condition = pd.read_csv(out / "by_condition.csv")
    assert list(by_condition["condition"]) == ["ablate res_0", "no-short", "half-short"]
    for name in ("by_condition", "by_condition_and_topic", "by_topic"):
        table = pd.read_csv(out / f"{name}.csv")
        for column in ("n", "n_items_change_ci_low", "n_items_change_ci_high", "diversity_change_ci_low"):
            assert column in table.columns, (name, column)
        assert "n_items_change_variance" in table.columns or name == "by_topic"
    # the interval is the t interval of the paired changes; zeroing " short" lengthens short lists
    gens = pd.read_csv(out / "generations.csv")
    base = gens[gens["condition"] == "base"].set_index(["topic", "sample"])["n_items"]
    mine = gens[gens["condition"] == "no-short"].set_index(["topic", "sample"])["n_items"]
    d = (mine - base.loc[mine.index]).to_numpy(dtype=float)
    row = by_condition[by_condition["condition"] == "no-short"].iloc[0]
    assert row["n"] == len(d) == 6
    assert (row["n_items_change_ci_low"], row["n_items_change_ci_high"]) == pytest.approx(t_interval(d))
    assert row["n_items_change_mean"] > 0
    assert row["method"] == "interventions"
    # the printed table shows the template and n
    assert "template" in printed and " n " in printed and "no-short" in printed
    assert json.loads((out / "interventions.json").read_text())["sets"][0]["name"] == "no-short"
    manifest = json.loads((out / "manifest.json").read_text())
    assert "--interventions" in manifest["repeat_command"] and manifest["settings"]["interventions"][1]["name"] == "half-short"


def test_a_sets_lists_are_the_apis_regenerations(swept, tiny):
    out, _ = swept
    gens = pd.read_csv(out / "generations.csv")
    row = gens[gens["condition"] == "half-short"].iloc[0]
    original = gens[(gens["condition"] == "base") & (gens["topic"] == row["topic"]) & (gens["sample"] == row["sample"])].iloc[0]
    sets = read_sets(out / "interventions.json", get_entry("lister-tiny"))
    spec = PromptSpec("short", row["topic"], int(row["sample"]), int(row["seed"]))
    first = sample_lists(tiny, [spec], SAMPLING_PRESETS["code"].__class__(temperature=0.7, top_p=0.8, max_new_tokens=60))[0]
    prefix = list(first.tokens[: first.structure.attribution_pos])
    again = sample_lists(
        tiny, [spec], SAMPLING_PRESETS["code"].__class__(temperature=0.7, top_p=0.8, max_new_tokens=60), prefixes=[prefix], interventions=sets[1]
    )[0]
    assert tiny.tokenizer.decode(list(again.continuation)) == row["continuation"]
    assert int(row["regenerated_from_position"]) == int(original["regenerated_from_position"]) == len(prefix)
