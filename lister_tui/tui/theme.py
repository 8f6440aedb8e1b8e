"""The explorer's colours: one Textual theme whose ``variables`` hold the app-specific
colours (token backgrounds, markers, the metric's diverging scale).

Every colour is an exact xterm-256 colour, so the screen looks the same when the
terminal (or an SSH session that dropped COLORTERM) offers only 256 colours.
"""

from __future__ import annotations

from textual.theme import Theme

TOKEN_VARIABLES: dict[str, str] = {
    "token-a": "#303030",  # alternating token backgrounds (xterm 236 / 239)
    "token-b": "#4e4e4e",
    "token-fg": "#eeeeee",
    "prompt-fg": "#8a8a8a",
    "filler": "#ffd700",  # the filler blank before a line break (220)
    "attribution": "#d700af",  # the attribution position (163)
    "end-token": "#5faf5f",  # the stop token (71)
    "marker-fg": "#87d7ff",  # item numbers (117)
    "diff-fg": "#ff875f",  # a token that differs from the base regeneration (209)
    "metric-positive": "#ff5f5f",  # blank preferred over a line break (203)
    "metric-negative": "#5f87ff",  # line break preferred (69)
    "filler-fg": "#000000",  # text on the filler, attribution and end-token backgrounds
    "attribution-fg": "#ffffff",
    "end-token-fg": "#000000",
}

# The metric's diverging scale, most negative to most positive (xterm-256 colours).
METRIC_SCALE: tuple[str, ...] = (
    "#005fd7", "#0087d7", "#5f87af", "#444444", "#af5f5f", "#d75f00", "#d70000",
)

# Theme variables metric-scale-0 … metric-scale-6 hold the scale of the current theme.
METRIC_SCALE_VARIABLES: dict[str, str] = {f"metric-scale-{i}": c for i, c in enumerate(METRIC_SCALE)}

LISTER_THEME = Theme(
    name="lister",
    primary="#5f87d7",
    secondary="#87afaf",
    accent="#d787d7",
    warning="#ffaf00",
    error="#ff5f5f",
    success="#5faf5f",
    foreground="#e4e4e4",
    background="#1c1c1c",
    surface="#262626",
    panel="#303030",
    dark=True,
    variables={**TOKEN_VARIABLES, **METRIC_SCALE_VARIABLES},
)


def colour(app, name: str) -> str:
    """A token colour from the current theme's variables (falling back to the defaults)."""
    try:
        return app.current_theme.variables.get(name, TOKEN_VARIABLES[name])
    except Exception:
        return TOKEN_VARIABLES[name]


def metric_scale(app) -> tuple[str, ...]:
    """The current theme's diverging metric scale (metric-scale-0, -1, … in its variables)."""
    try:
        variables = app.current_theme.variables
    except Exception:
        return METRIC_SCALE
    scale = []
    while f"metric-scale-{len(scale)}" in variables:
        scale.append(variables[f"metric-scale-{len(scale)}"])
    return tuple(scale) if len(scale) >= 3 and len(scale) % 2 == 1 else METRIC_SCALE


def metric_colour(value: float, scale: float, palette: tuple[str, ...] = METRIC_SCALE) -> str:
    """The diverging colour of a metric value, ``scale`` being the largest |value| shown."""
    if scale <= 0:
        return palette[len(palette) // 2]
    half = len(palette) // 2
    step = max(-half, min(half, round(value / scale * half)))
    return palette[half + step]
