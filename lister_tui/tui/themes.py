"""Themes from TOML files: the bundled ones (the repository's ``themes/``) and the user's.

A theme file (see themes/README.md)::

    name = "lister-light"          # required: letters, digits, '-' and '_'
    dark = false
    primary = "#005fd7"            # required; secondary, accent, warning, error,
                                   # success, foreground, background, surface, panel optional
    [colors]                       # the explorer's own colours (each optional:
    token-a = "#e4e4e4"            #  missing ones come from the built-in dark or light set)
    metric-scale = ["#…", …]       # the metric's diverging scale, odd length >= 3
    [variables]                    # any other Textual theme variable

Every file is validated; a bad one is skipped with a :class:`ThemeProblem` naming the
file and the field, which the app shows as one notification (and it falls back to
the default theme if the bad one was chosen).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

from lister_tui.core.files.locations import bundled_themes_dir, user_themes_dir
from lister_tui.tui.theme import LISTER_THEME, METRIC_SCALE, TOKEN_VARIABLES

DEFAULT_THEME = "lister-dark"
FALLBACK_THEME = LISTER_THEME  # built in, always valid

BASE_FIELDS = ("primary", "secondary", "accent", "warning", "error", "success", "foreground", "background", "surface", "panel")
TOP_LEVEL = {"name", "dark", "description", "colors", "variables", *BASE_FIELDS}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
MAX_THEME_BYTES = 64 << 10  # a theme is a few dozen colours
MAX_THEME_DEPTH = 8  # a theme nests 2 deep ([colors] metric-scale = [...]); tomllib recurses once per level

# The explorer's colours for a light theme, where a light theme file leaves one out.
LIGHT_VARIABLES: dict[str, str] = {
    "token-a": "#e4e4e4",
    "token-b": "#c6c6c6",
    "token-fg": "#121212",
    "prompt-fg": "#6c6c6c",
    "filler": "#ffd700",
    "attribution": "#af00af",
    "end-token": "#5faf5f",
    "marker-fg": "#005f87",
    "diff-fg": "#d75f00",
    "metric-positive": "#d70000",
    "metric-negative": "#005fd7",
    "filler-fg": "#000000",
    "attribution-fg": "#ffffff",
    "end-token-fg": "#000000",
}
LIGHT_SCALE = ("#005fd7", "#5f87d7", "#87afd7", "#d0d0d0", "#d7875f", "#d75f00", "#d70000")


@dataclass(frozen=True)
class ThemeProblem:
    path: Path
    field: str
    message: str

    def __str__(self) -> str:
        return f"theme file {self.path}: field {self.field!r}: {self.message}"


class _Bad(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _colour(field: str, value) -> str:
    if not isinstance(value, str):
        raise _Bad(field, f"{value!r} is not a colour string (e.g. \"#5f87d7\")")
    try:
        Color.parse(value)
    except ColorParseError:
        raise _Bad(field, f"{value!r} is not a colour (use #rrggbb, rgb(…) or a colour name)") from None
    return value


def theme_from_dict(data: dict) -> Theme:
    """A Textual Theme from a theme file's content; raises _Bad naming the field."""
    unknown = sorted(set(data) - TOP_LEVEL)
    if unknown:
        raise _Bad(unknown[0], f"unknown field; valid fields: {', '.join(sorted(TOP_LEVEL))}")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _Bad("name", f"{name!r} is missing or not a name (letters, digits, '-', '_')")
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise _Bad("dark", f"{dark!r} is not true or false")
    if "primary" not in data:
        raise _Bad("primary", "is missing (every theme needs a primary colour)")
    base = {f: _colour(f, data[f]) for f in BASE_FIELDS if f in data}
    colours = data.get("colors", {})
    if not isinstance(colours, dict):
        raise _Bad("colors", "must be a table ([colors])")
    defaults = dict(TOKEN_VARIABLES if dark else LIGHT_VARIABLES)
    scale = METRIC_SCALE if dark else LIGHT_SCALE
    variables = dict(defaults)
    for key, value in colours.items():
        if key == "metric-scale":
            if not isinstance(value, list) or len(value) < 3 or len(value) % 2 == 0:
                raise _Bad("colors.metric-scale", "must be a list of an odd number (>= 3) of colours, most negative first")
            scale = tuple(_colour(f"colors.metric-scale[{i}]", v) for i, v in enumerate(value))
        elif key in defaults:
            variables[key] = _colour(f"colors.{key}", value)
        else:
            raise _Bad(f"colors.{key}", f"unknown colour; valid: {', '.join(sorted(defaults))}, metric-scale")
    variables.update({f"metric-scale-{i}": c for i, c in enumerate(scale)})
    extra = data.get("variables", {})
    if not isinstance(extra, dict):
        raise _Bad("variables", "must be a table ([variables])")
    for key, value in extra.items():
        if not isinstance(value, str):
            raise _Bad(f"variables.{key}", f"{value!r} is not a string")
        variables[key] = value
    return Theme(name=name, dark=dark, variables=variables, **base)


def load_theme_file(path: Path) -> Theme:
    """One theme file; raises ThemeProblem."""
    try:
        raw = Path(path).read_bytes()
        if len(raw) > MAX_THEME_BYTES:
            raise _problem(path, "(file)", f"is {len(raw):,} bytes; a theme file holds at most {MAX_THEME_BYTES:,}")
        content = raw.decode("utf-8")
        depth = toml_depth(content)
        if depth > MAX_THEME_DEPTH:
            raise _problem(path, "(syntax)", f"nests {depth} levels deep; a theme nests at most {MAX_THEME_DEPTH}")
        data = tomllib.loads(content)
    except (OSError, UnicodeDecodeError) as exc:
        raise _problem(path, "(file)", f"cannot be read ({exc})")
    except tomllib.TOMLDecodeError as exc:
        raise _problem(path, "(syntax)", f"is not valid TOML ({exc})")
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise _problem(path, "(syntax)", "nests too deep to read") from None
    try:
        return theme_from_dict(data)
    except _Bad as bad:
        raise _problem(path, bad.field, bad.message)


def toml_depth(content: str) -> int:
    """The deepest nesting of arrays and inline tables in TOML text, counted without parsing it
    (brackets inside strings and comments are skipped), so a 5000-deep file is refused before
    tomllib's recursion meets it."""
    depth = deepest = 0
    i, n = 0, len(content)
    while i < n:
        ch = content[i]
        if ch == "#":
            end = content.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch in "\"'":
            triple = content.startswith(ch * 3, i)
            quote = ch * 3 if triple else ch
            j = i + len(quote)
            while j < n and not content.startswith(quote, j):
                if content[j] == "\\" and ch == '"':
                    j += 1
                elif content[j] == "\n" and not triple:
                    break  # an unterminated string: tomllib says so
                j += 1
            i = j + len(quote)
            continue
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
        i += 1
    return deepest


class ThemeError(Exception):
    def __init__(self, problem: ThemeProblem):
        super().__init__(str(problem))
        self.problem = problem


def _problem(path: Path, field: str, message: str) -> ThemeError:
    return ThemeError(ThemeProblem(Path(path), field, message))


def theme_dirs() -> list[Path]:
    """Bundled themes first, then the user's (a user theme of the same name wins)."""
    return [bundled_themes_dir(), user_themes_dir()]


def load_themes(dirs: list[Path] | None = None) -> tuple[dict[str, Theme], list[ThemeProblem]]:
    """Every valid theme of ``dirs`` (by name) and one problem per bad file."""
    themes: dict[str, Theme] = {}
    problems: list[ThemeProblem] = []
    for folder in dirs if dirs is not None else theme_dirs():
        if not Path(folder).is_dir():
            continue
        for path in sorted(Path(folder).glob("*.toml")):
            try:
                theme = load_theme_file(path)
            except ThemeError as exc:
                problems.append(exc.problem)
                continue
            themes[theme.name] = theme
    return themes, problems
