"""Bad options are refused at the edge, before the model loads (or, for the model's context, before any
sampling): exit 2 with what was wrong and the valid range, and nothing is created."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.core.engine.sampling import SamplingSettings
from lister_tui.core.errors import ListerError
from lister_tui.tui.screens.generate import GenerateRequest

# (options, words the message must hold)
BAD_SWEEP_OPTIONS = [
    (["--temperature", "nan"], "finite"),
    (["--temperature", "-1"], "[0, 100]"),
    (["--temperature", "1e9"], "[0, 100]"),
    (["--top-p", "0"], "(0, 1]"),
    (["--top-p", "1.5"], "(0, 1]"),
    (["--top-k", "0"], "[1, 1000000]"),
    (["--max-new-tokens", "0"], "[1, 4096]"),
    (["--max-new-tokens", "100000"], "[1, 4096]"),
    (["--max-new-tokens", "150"], "context is 160 tokens"),  # lister-tiny: past its context with the prompt
    (["--attribution", "ig", "--ig-steps", "100000000"], "[1, 1000]"),
    (["--ig-steps", "0"], "[1, 1000]"),
    (["--samples", "0"], "[1, 1000]"),
    (["--samples", "100000"], "[1, 1000]"),
    (["--steering-scale", "1e308"], "[-1000, 1000]"),
    (["--steering-scale", "nan"], "[-1000, 1000]"),
    (["--k", "0"], "[1, 1000]"),
    (["--k", "5000"], "[1, 1000]"),
    (["--device", "nope"], "cpu, cuda, cuda:N"),
    (["--device", "cuda:99"], "cuda"),
    (["--topic", ""], "--topic was given but names no topic"),
    (["--template", ""], "--template was given but names no template"),
    (["--sae", ","], "--sae was given but names no sae"),
    (["--topic", "Fruits", "--topic", "Fruits"], "'Fruits' is given twice"),
    (["--topic", "a\x1b]52;c;AAAA\x07b"], "holds the control character"),  # topics are free text, but not control characters
    (["--ray=", "--workers", "0"], "--workers must be 1 or more"),
    (["--ray=", "--gpus-per-worker", "inf"], "[0, 64]"),
]


@pytest.mark.parametrize("options,message", BAD_SWEEP_OPTIONS, ids=[" ".join(o) or "empty" for o, _ in BAD_SWEEP_OPTIONS])
def test_a_bad_sweep_option_exits_2_and_creates_nothing(options, message, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sweep", "--out", str(out), "--sae", "res_0", "--topic", "Fruits", "--samples", "1", *options] if "--sae" not in options and "--topic" not in options else ["sweep", "--out", str(out), "--samples", "1", *options])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    assert message in " ".join(result.output.split()), result.output
    assert not out.exists()  # no folder, no manifest


@pytest.mark.parametrize("command", [["--device", "nope"], ["open", "x", "--device", "nope"], ["replay", "x", "--device", "nope"]])
def test_a_bad_device_is_refused_by_every_command(command, tmp_path):
    result = CliRunner().invoke(app, [*command, *(["--sessions-dir", str(tmp_path)] if command[0] != "--device" else [])])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "device 'nope' is not valid" in result.output or "no session" in result.output.lower()


@pytest.mark.parametrize(
    "values,message",
    [
        (dict(temperature="0.7"), "temperature must be a number, got '0.7'"),
        (dict(temperature=float("nan")), "finite"),
        (dict(top_p=None), "top_p must be a number"),
        (dict(top_k=2.5), "top_k must be an integer"),
        (dict(max_new_tokens=True), "max_new_tokens must be an integer"),
    ],
)
def test_sampling_settings_from_a_file_are_checked_by_type(values, message):
    with pytest.raises(ListerError, match=message.replace("(", r"\(").replace("[", r"\[")):
        SamplingSettings(**values)


def test_the_generate_dialog_bounds_a_batch():
    with pytest.raises(ListerError, match="one batch holds at most 1000"):
        GenerateRequest(("short", "long"), ("Fruits", "Colors"), 500).specs()
    with pytest.raises(ListerError, match=r"\[1, 1000\]"):
        GenerateRequest(("short",), ("Fruits",), 100_000).specs()
    assert len(GenerateRequest(("short",), ("Fruits",), 1000).specs()) == 1000
