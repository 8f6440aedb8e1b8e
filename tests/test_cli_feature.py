"""`lister-tui feature`: bad input before any work, the card printed safely, the JSON written."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from lister_tui.cli import app


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTER_TUI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "100")

    def invoke(*args):
        return CliRunner().invoke(app, ["feature", *args])

    return invoke


def test_bad_site_or_feature_exits_2_with_the_valid_range_before_loading(run, monkeypatch):
    import lister_tui.core.engine.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    result = run("res_9", "3")
    assert result.exit_code == 2 and "valid: res_0, res_1" in result.output
    result = run("res_0", "512")
    assert result.exit_code == 2 and "valid: 0..511" in result.output
    result = run("res_0", "3", "--corpus", "/nonexistent.txt")
    assert result.exit_code == 2 and "does not exist" in result.output


def _short_feature(tiny) -> int:
    """The res_0 feature that fires most on the template word " short" (found, not named: ids change with each build)."""
    from lister_tui.core.engine.prompts import prompt_ids

    ids = prompt_ids(tiny, "short", "Fruits")
    pos = tiny.to_str_tokens(ids).index(" short")
    site = tiny.entry.site("res_0")
    with torch.inference_mode():
        _, cache = tiny.model.run_with_cache(torch.tensor([ids]), names_filter=[site.hook_name])
        return int(tiny.load_sae("res_0").encode(cache[site.hook_name])[0, pos].argmax())


def test_a_card_over_a_file_corpus_prints_untrusted_text_safely_and_writes_json(run, tmp_path, tiny):
    feature = _short_feature(tiny)
    corpus = tmp_path / "c.jsonl"
    lines = [{"text": "<bos><start_of_turn>user\nProvide me with a short list of Fruits.<end_of_turn>\n<start_of_turn>model\n- Apple\n- Pear \n"}]
    lines.append({"text": "a short [bold]list[/bold] \x1b[31m of red\u202e words"})
    corpus.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = tmp_path / "card.json"
    result = run("res_0", str(feature), "--corpus", str(corpus), "--json", str(out), "--k", "3")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\u202e" not in result.output  # control characters shown as escapes
    assert "⟦·short⟧" in result.output  # the activating token, marked, whitespace as the token view shows it
    card = json.loads(out.read_text())
    assert card["sae"] == "res_0" and card["feature"] == feature
    assert [c["token"] for c in card["contexts"]][:2] == [" short", " short"]
    first = card["contexts"][0]
    assert set(first) >= {"token", "activation", "text", "source"} and first["source"].startswith("c.jsonl: c.jsonl line")
    assert " short" in first["text"] and first["activation"] > 0
    assert set(card["logit_effects"]) >= {"promoted", "suppressed", "metric_direct"}
    assert 0 < card["density"] < 1 and sum(card["histogram"]["counts"]) == card["n_firing"]


def test_locate_shows_the_cache(run, tmp_path):
    result = CliRunner().invoke(app, ["locate", "cache"])
    assert result.exit_code == 0 and result.output.strip() == str(tmp_path / "cache")
