"""Schema-driven fuzzing of the user's own files: settings.json, theme files and registry TOML files.
Each field (walked from a valid file of that kind) gets hostile values of every type, each file its
damaged bytes; reading never raises (a bad file is reported and skipped), `lister-tui models` ends
with exit 0 or 2 and shows no escape, and the explorer starts on a hostile config and shows it as text."""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path

import pytest
from fuzz_inputs import FULL, HOSTILE_JSON, HOSTILE_STRINGS, Tally, byte_damage, json_leaves, pick, raw_unsafe, report, toml_text, with_leaf
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.core.files.locations import bundled_themes_dir
from lister_tui.core.files.user_settings import SETTINGS_FILE, UserSettings
from lister_tui.organism.paths import SHIPPED_DIR
from lister_tui.tui.themes import load_themes

THEME = bundled_themes_dir() / "lister-dark.toml"
REGISTRY = {
    "models": {
        "my-tiny": {"folder": str(SHIPPED_DIR), "description": "lister-tiny under another name"},
        "my-gemma": {
            "model": "google/gemma-2-2b-it",
            "list_marker": "*",
            "metric_tokens": [" ", "\n"],
            "sites": [
                {"id": "res_3", "release": "gemma-scope-2b-pt-res", "sae_id": "layer_3/width_16k/average_l0_142"},
                {"id": "mlp_4", "path": "saes/mlp_4", "kind": "mlp", "layer": 4},
            ],
        },
    },
    "templates": {"numbered": {"text": "Give me a numbered list of {topic}.", "length": "unspecified"}},
}


def _settings_base(tmp_path: Path) -> dict:
    s = UserSettings(theme="lister-dark", recent=[str(tmp_path / "a session")], path=tmp_path / "base" / SETTINGS_FILE)
    s.save()
    return json.loads(s.path.read_text())


def test_every_settings_field_and_damaged_settings_files(tmp_path):
    tally, base = Tally(), _settings_base(tmp_path)
    files: dict[str, bytes] = {}
    for i, path in enumerate(json_leaves(base)):
        for name, value in pick(HOSTILE_JSON, i).items():
            files[f"{path}={name}"] = json.dumps(with_leaf(base, path, value)).encode()
    for name, value in (HOSTILE_JSON if FULL else pick(HOSTILE_JSON, 3)).items():
        files[f"the whole file={name}"] = json.dumps(value).encode()
    for name, data in byte_damage(json.dumps(base).encode(), seed=1).items():
        files[name] = data
    for case, data in files.items():
        folder = tmp_path / f"c{len(tally.cases)}"
        folder.mkdir()
        (folder / SETTINGS_FILE).write_bytes(data)
        try:
            loaded = UserSettings.load(folder)
            ok = (loaded.theme is None or isinstance(loaded.theme, str)) and all(isinstance(r, str) for r in loaded.recent)
            tally.add(case, ok, f"{case}: loaded {loaded!r:.200}")
        except Exception as exc:
            tally.add(case, False, f"{case}: {type(exc).__name__}: {exc}"[:300])
    line = tally.line("settings.json fields and bytes")
    print(line)
    report(line)
    assert tally.breaks == [], tally.breaks[:5]


def test_every_theme_field_and_damaged_theme_files(tmp_path):
    tally, base = Tally(), tomllib.loads(THEME.read_text(encoding="utf-8"))
    files: dict[str, bytes] = {}
    for i, path in enumerate(json_leaves(base)):
        for name, value in pick(HOSTILE_JSON, i).items():
            files[f"{path}={name}"] = toml_text(with_leaf(base, path, value)).encode()
    for name, data in byte_damage(THEME.read_bytes(), seed=2).items():
        files[name] = data
    for case, data in files.items():
        folder = tmp_path / f"t{len(tally.cases)}"
        folder.mkdir()
        (folder / "hostile.toml").write_bytes(data)
        try:
            themes, problems = load_themes([folder])
            from lister_tui.safe_text import visible

            shown = [visible(str(p)) for p in problems]  # a problem names the file and field: it is shown
            tally.add(case, len(themes) + len(problems) == 1 and all(not raw_unsafe(s) for s in shown), f"{case}: {themes} {problems}"[:300])
        except Exception as exc:
            tally.add(case, False, f"{case}: {type(exc).__name__}: {exc}"[:300])
    line = tally.line("theme fields and bytes")
    print(line)
    report(line)
    assert tally.breaks == [], tally.breaks[:5]


def _registry_cases() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for i, path in enumerate(json_leaves(REGISTRY)):
        for name, value in pick(HOSTILE_JSON, i).items():
            files[f"{path}={name}"] = toml_text(with_leaf(REGISTRY, path, value)).encode()
    for name, data in byte_damage(toml_text(REGISTRY).encode(), seed=3).items():
        files[name] = data
    return files


def test_every_registry_field_and_damaged_registry_files(tmp_path, monkeypatch):
    """`lister-tui models` with the file given (--registry) and found in the config folder."""
    from lister_tui.core.engine.registry import REGISTRY_ENV

    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv(REGISTRY_ENV, "")  # --registry files are added to it for the process: restored after
    runner, tally, crashes = CliRunner(), Tally(), []
    for k, (case, data) in enumerate(_registry_cases().items()):
        path = tmp_path / f"r{k}.toml"
        path.write_bytes(data)
        (tmp_path / "config" / "models").mkdir(parents=True, exist_ok=True)
        (tmp_path / "config" / "models" / "mine.toml").write_bytes(data)
        # given with --registry, and (every third case, all in a full run) found in the config folder
        for args in (["models", "--registry", str(path)], ["models"])[: 2 if FULL or k % 3 == 0 else 1]:
            result = runner.invoke(app, args, terminal_width=100)
            crashed = "Traceback" in result.output or (result.exception is not None and not isinstance(result.exception, SystemExit))
            problems = [f"exit {result.exit_code}"] if result.exit_code not in (0, 2) else []
            problems += [f"unsafe {raw_unsafe(result.output)[:4]}"] if raw_unsafe(result.output) else []
            if crashed:
                crashes.append(f"{case} ({' '.join(args)}): {result.exception!r}"[:200])
                problems = [p for p in problems if p != "exit 1"]  # the traceback's exit code: counted below
            tally.add(case, not problems, f"{case} ({' '.join(args)}): {problems}")
    line = tally.line("registry TOML fields and bytes") + f" ({len(crashes)} tracebacks)"
    print(line)
    print("\n".join(crashes))
    report(line)
    assert tally.breaks == [], tally.breaks[:5]
    assert crashes == [], crashes[:3]  # the registry's own crashes (deep nesting, invalid UTF-8): tracebacks


@pytest.mark.parametrize("evil", list(HOSTILE_STRINGS) if FULL else ["escapes", "markup"])
def test_the_explorer_starts_on_a_hostile_config_and_shows_it_as_text(evil, tmp_path, monkeypatch):
    """settings.json naming a hostile theme, that theme file with hostile fields, a hostile session."""
    from hostile import hostile_session

    from lister_tui.core.sessions.opening import view_session
    from lister_tui.core.sessions.store import read_session
    from lister_tui.tui.app import ListerApp

    value = HOSTILE_STRINGS[evil]
    config = tmp_path / "config"
    (config / "themes").mkdir(parents=True)
    theme = tomllib.loads(THEME.read_text(encoding="utf-8"))
    theme.update(name=f"t{value}", description=value, primary=value)
    (config / "themes" / "evil.toml").write_text(toml_text(theme), encoding="utf-8")
    (config / SETTINGS_FILE).write_text(json.dumps({"theme": f"t{value}", "recent": [value, str(tmp_path / value[:50])]}), encoding="utf-8")
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(config))
    folder = tmp_path / "sessions"
    hostile_session(folder / "evil", value[:200])
    view = view_session(read_session(folder / "evil"))

    async def go():
        app = ListerApp(view.lab, initial=None, workspace=view.opened.workspace, session=view.store, banner=view.banner, session_name="evil", sessions_dir=folder, persist=True)
        async with app.run_test(size=(100, 30)) as pilot:
            for keys in ((), ("M",), ("escape",), ("ctrl+o",), ("escape",), ("question_mark",), ("escape",)):
                await pilot.press(*keys)
                await pilot.pause()
                shown = "\n".join(strip.text for strip in app.screen._compositor.render_strips())
                assert raw_unsafe(shown) == [], (keys, shown[:300])
            assert app.is_running

    asyncio.run(go())
