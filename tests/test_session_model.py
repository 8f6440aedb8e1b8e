"""Sessions with the shipped lister-tiny: replay, export, the CLI commands, a sweep folder opened as a session."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.core.study.experiment import attribute_lists, metric_under_ablation, regenerate, top_k_ablation
from lister_tui.core.engine.generation import metric_curve, sample_lists
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.sessions.store import SessionStore, read_session
from lister_tui.core.sessions.export import FORMATS, export_tables, read_markdown
from lister_tui.core.sessions.opening import model_info, open_sweep, view_session
from lister_tui.core.study.settings import SAMPLING_PRESETS
from lister_tui.core.study.columns import current_name
from lister_tui.core.sessions.workspace import AblationChoice, AblationRun, Workspace

from session_fixtures import MODEL, VOCAB, small_workspace

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def workspace(tiny) -> Workspace:
    """Two lists of lister-tiny, attributed, one with a top-3 ablation regenerated."""
    samples = sample_lists(tiny, build_prompts(["short"], ["Fruits"], 2, 0), SAMPLING_PRESETS["code"])
    ws = Workspace(tiny.entry.name)
    keys = ws.add_samples(samples, "code")
    attrs = attribute_lists(tiny, samples, ["res_0", "attn_1"])
    ws.set_batch_attribution(keys, attrs)
    ws.set_curve(keys[0], metric_curve(tiny, samples[0].tokens).tolist())
    for fa in top_k_ablation(attrs["res_0"], 0, 3).features:
        ws.toggle(keys[0], AblationChoice(fa.sae_id, fa.feature, fa.positions[0]))
    ablation = ws.current_ablation(keys[0])
    s = samples[0]
    base = regenerate(tiny, s, SAMPLING_PRESETS["code"], None)
    ablated = regenerate(tiny, s, SAMPLING_PRESETS["code"], ablation)
    pos = s.structure.attribution_pos
    run = AblationRun(
        keys[0], tuple(ws.state(keys[0]).choices), True, "code", base, ablated,
        tuple(metric_curve(tiny, base.tokens).tolist()), tuple(metric_curve(tiny, ablated.tokens, ablation).tolist()),
        metric_under_ablation(tiny, s.tokens, ablation.__class__(), pos), metric_under_ablation(tiny, s.tokens, ablation, pos),
    )
    ws.record_ablation(keys[0], run)
    ws.set_note(keys[1], "a note, with a comma | and a pipe")
    return ws


@pytest.fixture
def sessions(tmp_path, tiny, workspace):
    store = SessionStore(tmp_path / "fresh")
    store.save(workspace, model_info(tiny), decode=tiny.tokenizer.decode, token_string=lambda i: tiny.tokenizer.decode([i]))
    return tmp_path


def test_replay_of_a_fresh_session_matches(sessions):
    result = CliRunner().invoke(app, ["replay", "fresh", "--sessions-dir", str(sessions)])
    assert result.exit_code == 0, result.output
    assert "ok: 4 lists replayed, every token identical" in result.output  # 2 samples + 1 run x (base, ablated)


@pytest.mark.parametrize("args, expected", [([], 1), (["--threads", "2"], 2)])
def test_replay_runs_lister_tiny_on_one_torch_thread_unless_told(sessions, args, expected):
    """One thread by default on a CPU (lister-tiny's small matmuls are several times slower with
    torch's spinning threads on busy cores); --threads N is used as given."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # neither the default nor the value asked for
    try:
        result = CliRunner().invoke(app, ["replay", "fresh", "--sessions-dir", str(sessions), *args])
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    assert used == expected


@pytest.mark.parametrize("value", ["0", "-2"])
def test_replay_refuses_a_bad_thread_count_before_reading_the_session(tmp_path, value):
    result = CliRunner().invoke(app, ["replay", "no-such-session", "--threads", value, "--sessions-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    # the thread count is checked first: the missing session is not what is reported
    from lister_tui.core.limits import MAX_THREADS

    assert f"threads must be in [1, {MAX_THREADS}] (4 per CPU core of this machine), got {value}" in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


def test_replay_reports_an_altered_token(sessions):
    opened = read_session(sessions / "fresh")
    ws = opened.workspace
    key = list(ws.samples)[1]
    st = ws.state(key)
    s = st.sample
    pos = s.prompt_len + 1
    altered = list(s.tokens)
    altered[pos] = altered[pos] + 1
    st.sample = replace(s, tokens=tuple(altered))
    SessionStore.of(opened).save(ws, opened.model)
    result = CliRunner().invoke(app, ["replay", "fresh", "--sessions-dir", str(sessions)])
    assert result.exit_code == 1
    assert f"mismatch {key} sample: first differs at position {pos}" in result.output
    assert "1 of 4 lists differ" in result.output


def _normal(frame: pd.DataFrame) -> list[list]:
    """Values, with every missing value (None, NaN, NA, '') as None and numbers as floats."""
    out = []
    for row in frame.astype(object).itertuples(index=False):
        cells = []
        for v in row:
            if v is None or v is pd.NA or v == "" or (isinstance(v, float) and math.isnan(v)):
                cells.append(None)
            elif isinstance(v, str) and v in ("True", "False"):
                cells.append(v == "True")
            elif isinstance(v, (bool,)):
                cells.append(v)
            elif isinstance(v, (int, float)):
                cells.append(float(v))
            else:
                cells.append(str(v))
        out.append(cells)
    return out


def test_exports_load_back_to_the_same_values(sessions, tiny):
    opened = read_session(sessions / "fresh")
    expected = export_tables(opened.workspace, tiny.tokenizer.decode, lambda i: tiny.tokenizer.decode([i]))
    assert len(expected["generations"]) == 4 and len(expected["ablations"]) == 1 and len(expected["attributions"]) > 0
    assert set(expected["sae_summary"]["sae"]) == {"res_0", "attn_1"}
    run = opened.workspace.latest_run(list(opened.workspace.samples)[0])
    row = expected["ablations"].iloc[0]
    for name, (b, a, d) in run.deltas().items():
        name = current_name(name)  # the workspace's metric_at_attribution is the tables' plain_metric_at_last_item
        assert row[f"base_{name}"] == b and row[f"ablated_{name}"] == a and row[f"delta_{name}"] == d
    assert "delta_plain_metric_at_last_item" in expected["ablations"].columns
    assert "plain_metric_at_last_item" in expected["generations"].columns
    for fmt in FORMATS:
        out = sessions / "exports" / fmt
        result = CliRunner().invoke(app, ["export", "fresh", "--format", fmt, "--out", str(out), "--sessions-dir", str(sessions)])
        assert result.exit_code == 0, result.output
        for name, frame in expected.items():
            path = out / f"{name}.{FORMATS[fmt]}"
            if fmt == "csv":
                back = pd.read_csv(path)
            elif fmt == "parquet":
                back = pd.read_parquet(path)
                pd.testing.assert_frame_equal(back, frame, check_dtype=False)
            elif fmt == "markdown":
                back = read_markdown(path)
            else:
                text = path.read_text()
                assert "\\begin{tabular}" in text or "\\begin{longtable}" in text
                for key in frame.get("key", []):
                    assert key.replace("_", "\\_") in text
                continue
            assert list(back.columns) == list(frame.columns), (fmt, name)
            assert _normal(back) == _normal(frame), (fmt, name)


def test_sessions_command_lists_date_model_and_size(sessions):
    result = CliRunner().invoke(app, ["sessions", "--sessions-dir", str(sessions)])
    assert result.exit_code == 0
    assert "fresh" in result.output and "lister-tiny" in result.output and "KB" in result.output


def test_cli_errors_are_one_clear_line(sessions):
    result = CliRunner().invoke(app, ["export", "nope", "--sessions-dir", str(sessions)])
    assert result.exit_code == 2 and "no session 'nope'" in result.output and "fresh" in result.output
    result = CliRunner().invoke(app, ["export", "fresh", "--format", "xlsx", "--sessions-dir", str(sessions)])
    assert result.exit_code == 2 and "unknown export format 'xlsx'" in result.output


def test_session_of_an_unavailable_model_opens_read_only(tmp_path):
    SessionStore(tmp_path / "fake").save(small_workspace(), MODEL, token_string=lambda i: VOCAB[i])
    view = view_session(read_session(tmp_path / "fake"))
    assert view.store is None and view.banner.startswith("READ-ONLY: fake-model is not available here")
    assert view.lab.model is None and view.lab.to_str_tokens([2, 4]) == ["-", "\n"]


def test_changed_weights_open_without_writing(tmp_path, tiny, workspace):
    info = model_info(tiny)
    other = replace(info, fingerprint={"sha256": {k: "0" * 64 for k in info.fingerprint["sha256"]}})
    SessionStore(tmp_path / "old").save(workspace, other)
    view = view_session(read_session(tmp_path / "old"), tiny)
    assert view.store is None and "weights of lister-tiny differ" in view.banner


def test_a_sweep_folder_opens_as_a_session(tmp_path, tiny):
    specs = build_prompts(["short"], ["Fruits", "Colors"], 1, 3)
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    manifest = {
        "tool": "lister-tui sweep",
        "format_version": 1,
        "model": {"name": "lister-tiny", "fingerprint": model_info(tiny).fingerprint},
        "settings": {"sampling_preset": "code", "sampling": {"temperature": 0.7, "top_p": 0.8, "top_k": None, "max_new_tokens": 100}, "saes": ["res_0"]},
        "seeds": {"base_seed": 3, "per_sample": [{"template": s.template, "topic": s.topic, "sample": s.sample, "seed": s.seed} for s in specs]},
        "repeat_command": "lister-tui sweep --seed 3",
    }
    (sweep / "manifest.json").write_text(json.dumps(manifest))
    opened = open_sweep(sweep, tiny, tmp_path / "sessions")
    expected = sample_lists(tiny, specs, SAMPLING_PRESETS["code"])
    assert [st.sample.tokens for st in opened.workspace.samples.values()] == [s.tokens for s in expected]
    assert opened.manifest["source"]["kind"] == "sweep" and opened.name == "sweep-sweep"
    # opening it again reopens the same session
    assert open_sweep(sweep, tiny, tmp_path / "sessions").path == opened.path
