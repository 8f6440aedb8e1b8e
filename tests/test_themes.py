"""Themes from TOML: the bundled ones load, a bad file names its field, the choice persists."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lister_tui.core.files import locations
from lister_tui.core.files.user_settings import UserSettings
from lister_tui.tui.theme import LISTER_THEME, METRIC_SCALE_VARIABLES, TOKEN_VARIABLES, metric_colour
from lister_tui.tui.themes import DEFAULT_THEME, load_theme_file, load_themes

ROOT = Path(__file__).resolve().parents[1]


def test_bundled_themes_load_and_carry_the_app_colours():
    themes, problems = load_themes([ROOT / "themes"])
    assert problems == []
    assert {"lister-dark", "lister-light", "lister-colorblind"} <= set(themes)
    for theme in themes.values():
        for name in list(TOKEN_VARIABLES) + list(METRIC_SCALE_VARIABLES):
            assert name in theme.variables, (theme.name, name)
    assert themes["lister-light"].dark is False
    # the default dark theme is the built-in one, colour for colour
    dark = themes[DEFAULT_THEME]
    for field in ("primary", "secondary", "accent", "warning", "error", "success", "foreground", "background", "surface", "panel"):
        assert getattr(dark, field) == getattr(LISTER_THEME, field), field
    assert {k: dark.variables[k] for k in LISTER_THEME.variables} == LISTER_THEME.variables


def test_the_checkout_themes_folder_is_where_bundled_themes_come_from():
    assert locations.bundled_themes_dir() == ROOT / "themes"


def test_colourblind_scale_runs_blue_to_orange():
    theme = load_theme_file(ROOT / "themes" / "lister-colorblind.toml")
    palette = tuple(theme.variables[f"metric-scale-{i}"] for i in range(7))
    assert metric_colour(-10, 10, palette) == "#0072b2" and metric_colour(10, 10, palette) == "#d55e00"


@pytest.mark.parametrize(
    "text, field",
    [
        ('name = "x"\nprimary = "not-a-colour"\n', "primary"),
        ('name = "x"\nprimary = "#123456"\n[colors]\nfiller = 12\n', "colors.filler"),
        ('name = "x"\nprimary = "#123456"\n[colors]\nfillr = "#ffffff"\n', "colors.fillr"),
        ('name = "x"\nprimary = "#123456"\n[colors]\nmetric-scale = ["#000000", "#ffffff"]\n', "colors.metric-scale"),
        ('primary = "#123456"\n', "name"),
        ('name = "x"\n', "primary"),
        ('name = "x"\nprimary = "#123456"\ncolour = "#ffffff"\n', "colour"),
        ('name = "x"\nprimary = ', "(syntax)"),
        ('name = "x"\nprimary = ' + "[" * 5000 + "]" * 5000 + "\n", "(syntax)"),
        ('name = "x"\nprimary = "#123456"\n[variables]\nv = ' + "{a = " * 5000 + "1" + "}" * 5000 + "\n", "(syntax)"),
        ('name = "x"\nprimary = "#123456"\n[variables]\nv = "' + "a" * (1 << 20) + '"\n', "(file)"),
    ],
)
def test_a_bad_theme_file_names_the_file_and_the_field(tmp_path, text, field):
    (tmp_path / "bad.toml").write_text(text)
    (tmp_path / "good.toml").write_text('name = "good"\nprimary = "#123456"\ndark = false\n')
    themes, problems = load_themes([tmp_path])
    assert list(themes) == ["good"]
    assert themes["good"].variables["token-a"] != TOKEN_VARIABLES["token-a"]  # light defaults for a light theme
    (problem,) = problems
    assert problem.path == tmp_path / "bad.toml" and problem.field == field
    assert str(tmp_path / "bad.toml") in str(problem) and repr(field) in str(problem)


def test_settings_file_round_trip_and_damage(tmp_path):
    s = UserSettings.load(tmp_path)
    assert s.theme is None and s.recent == [] and s.problem is None
    s.theme = "lister-light"
    s.add_recent(tmp_path / "a")
    s.add_recent(tmp_path / "b")
    s.add_recent(tmp_path / "a")
    s.save()
    again = UserSettings.load(tmp_path)
    assert again.theme == "lister-light" and again.recent == [str(tmp_path / "a"), str(tmp_path / "b")]
    (tmp_path / "settings.json").write_text("{nope")
    damaged = UserSettings.load(tmp_path)
    assert damaged.theme is None and "unreadable" in damaged.problem


def test_app_uses_a_user_theme_falls_back_from_a_bad_one_and_persists_the_choice(tmp_path, monkeypatch, tiny):
    from lister_tui.tui.app import ListerApp

    config = tmp_path / "config"
    themes = config / "themes"
    themes.mkdir(parents=True)
    (themes / "mine.toml").write_text('name = "mine"\nprimary = "#ff0000"\n[colors]\nfiller = "#00ff00"\n')
    (themes / "broken.toml").write_text('name = "broken"\nprimary = "#ff0000"\n[colors]\nfiller = "green-ish"\n')
    (config / "settings.json").write_text('{"theme": "broken"}')
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(config))
    monkeypatch.delenv("LISTER_TUI_THEMES", raising=False)

    async def go():
        app = ListerApp(tiny, initial=None, persist=True)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert app.theme == DEFAULT_THEME  # the chosen theme was bad: the default instead
            messages = [m.text for m in app.messages]
            bad = [m for m in messages if "broken.toml" in m]
            assert len(bad) == 1 and "'colors.filler'" in bad[0]
            assert "mine" in app.available_themes and "lister-colorblind" in app.available_themes
            app.theme = "mine"
            await pilot.pause()
            assert app.current_theme.variables["filler"] == "#00ff00"

    asyncio.run(go())
    assert UserSettings.load(config).theme == "mine"
