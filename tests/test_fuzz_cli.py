"""Every option and argument of every subcommand (walked from the Typer app, so a new one is covered
by itself) given hostile values one at a time: the command ends with exit 0, 1 or 2, no traceback,
and nothing in its raw output that a terminal would act on (ESC, C1, bidi). Loading a model,
training the organism and starting the explorer are replaced by a ListerError, so every run stops
at the point where the real work would begin (the checks before it are what is fuzzed)."""

from __future__ import annotations

import os
import time

import pytest
import typer.main
from fuzz_inputs import FULL, HOSTILE_STRINGS, Tally, raw_unsafe, report
from session_fixtures import MODEL, VOCAB, small_workspace
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.core.errors import ListerError

# a valid value for each required argument, so that the other parameters are reached
BENIGN = {"target": "base", "site": "res_0", "feature": "1", "what": "all", "name": "lister-tiny"}
NUMBERS = {"minus one": "-1", "huge": "9" * 30, "nan": "nan", "inf": "inf", "1e309": "1e309"}


def _parameters():
    root = typer.main.get_command(app)

    def walk(cmd, path):
        if not hasattr(cmd, "commands") or path == []:
            yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, path + [name])

    for path, cmd in walk(root, []):
        for p in cmd.params:
            if getattr(p, "is_flag", False) or p.name == "help":
                continue
            yield path, cmd, p


def _is_argument(param) -> bool:
    return getattr(param, "param_type_name", "") == "argument"


def _values(param, index: int) -> dict[str, str]:
    strings = {k: v for k, v in HOSTILE_STRINGS.items() if k != "1MB"} | {"1MB": "x" * (1 << 20)}
    kind = getattr(getattr(param, "type", None), "name", "")
    values = dict(strings)
    if kind in ("integer", "float") or param.name in ("threads", "k", "samples", "nodes", "seed", "sample", "ig_steps", "workers"):
        values |= NUMBERS
    if FULL:
        return values
    names = list(values)
    # one string and one number in turn, plus the escapes every time: the case the terminal acts on
    chosen = {names[index % len(names)], "escapes"} | ({list(NUMBERS)[index % len(NUMBERS)]} if set(NUMBERS) <= set(values) else set())
    return {n: values[n] for n in chosen}


def _no_real_work(*args, **kwargs):
    raise ListerError("fuzz: the real work would start here")


@pytest.fixture()
def sandbox(tmp_path, monkeypatch):
    from lister_tui.core.engine import loading
    from lister_tui.core.sessions.store import SessionStore
    from lister_tui.core.sweep import ray_cluster
    from lister_tui.organism import build
    from lister_tui.tui import app as tui_app

    monkeypatch.setattr(loading, "load_model", _no_real_work)
    monkeypatch.setattr(build, "build_organism", _no_real_work)
    monkeypatch.setattr(ray_cluster, "run_sweep_ray", _no_real_work)  # no cluster is started
    monkeypatch.setattr(tui_app.ListerApp, "run", lambda self: None)
    from textual_serve import server as textual_server

    monkeypatch.setattr(textual_server.Server, "serve", _no_real_work)  # `serve` checks its options, listens nowhere
    from lister_tui.core.engine.registry import REGISTRY_ENV

    monkeypatch.setenv(REGISTRY_ENV, "")  # restored after: --registry adds to it for the process
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("LISTER_TUI_SESSIONS", str(tmp_path / "sessions"))
    monkeypatch.setenv("LISTER_TUI_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # a hostile --out or --json lands here
    SessionStore(tmp_path / "sessions" / "base").save(small_workspace(), MODEL, token_string=lambda i: VOCAB[i])
    return tmp_path


def test_every_option_of_every_subcommand_with_hostile_values(sandbox):
    runner = CliRunner()
    tally, unbounded = Tally(), []
    for i, (path, cmd, param) in enumerate(_parameters()):
        for name, value in _values(param, i).items():
            args = list(path)
            for other in cmd.params:
                if _is_argument(other) and other is not param:
                    args.append(BENIGN.get(other.name, "x"))
            if _is_argument(param):
                args.append(value)
            else:
                args += [param.opts[0], value]
            if path == ["sweep"]:
                args += ["--out", str(sandbox / "out")] if param.name != "out" else []
            started = time.monotonic()
            result = runner.invoke(app, args, terminal_width=100)
            if os.environ.get("LISTER_TUI_FUZZ_TRACE"):
                print(f"{time.monotonic() - started:6.2f}s {' '.join(path)} {param.name}={name} -> {result.exit_code}", flush=True)
            problems = []
            if "Traceback" in result.output or (result.exception is not None and not isinstance(result.exception, SystemExit)):
                problems.append(f"traceback {result.exception!r}")
            if result.exit_code not in (0, 1, 2):
                problems.append(f"exit {result.exit_code}")
            if raw_unsafe(result.output):
                problems.append(f"unsafe output {raw_unsafe(result.output)[:4]}")
            if name == "huge" and "the real work would start here" in result.output:
                unbounded.append(f"{' '.join(path)} {param.opts[0] if hasattr(param, 'opts') else param.name}")
            tally.add((" ".join(path), param.name), not problems, f"{' '.join(path)} {param.name}={name}: {problems} {result.output[-200:]!r}")
    line = tally.line("subcommand options")
    print(line)
    print("numeric options a 30-digit value passes (checked after the model loads, or never):", unbounded)
    report(line)
    assert len(tally.cases) >= 80
    assert tally.breaks == [], "\n".join(b[1] for b in tally.breaks[:8])


@pytest.mark.parametrize(
    "args",
    [
        ["sweep", "--seed", "9" * 30],
        ["feature", "res_0", "1", "--k", "9" * 30],
        ["circuit", "--topic", "Fruits", "--nodes", "9" * 30],
        ["circuit", "--topic", "Fruits", "--ig-steps", "9" * 30, "--method", "ig"],
        ["sweep", "--samples", "9" * 30],
        ["sweep", "--max-new-tokens", "9" * 30],
        ["sweep", "--threads", "100000"],
        ["replay", "base", "--threads", "100000"],
    ],
    ids=lambda a: " ".join(a[:1] + [x for x in a if x.startswith("--")]),
)
def test_numeric_options_have_upper_bounds_checked_before_the_work(sandbox, args):
    result = CliRunner().invoke(app, args + (["--out", str(sandbox / "o")] if args[0] == "sweep" else []))
    assert result.exit_code == 2 and "the real work would start here" not in result.output, result.output
