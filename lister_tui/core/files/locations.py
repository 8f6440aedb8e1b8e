"""Where lister-tui keeps files: sessions, user config, themes, caches (``lister-tui locate`` prints them).

- **sessions**: ``--sessions-dir``, else ``$LISTER_TUI_SESSIONS``, else the ``sessions/``
  folder of the source checkout the package runs from (the design's default), else
  ``$XDG_DATA_HOME/lister-tui/sessions`` (``~/.local/share/lister-tui/sessions``) for
  an installed package.
- **config**: ``$LISTER_TUI_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/lister-tui``
  (``~/.config/lister-tui``): ``settings.json`` (the chosen theme, recent sessions).
- **user themes**: ``$LISTER_TUI_THEMES``, else ``<config>/themes``.
- **cache**: ``$LISTER_TUI_CACHE``, else ``$XDG_CACHE_HOME/lister-tui``
  (``~/.cache/lister-tui``): feature cards' activation passes over a corpus, one file
  per (model weights, SAE, corpus); safe to delete (they are recomputed).
- **bundled themes**: the checkout's ``themes/`` folder (canonical); an installed
  package reads the copy installed with it (``<prefix>/share/lister-tui/themes``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SESSIONS_ENV = "LISTER_TUI_SESSIONS"
CONFIG_ENV = "LISTER_TUI_CONFIG_DIR"
THEMES_ENV = "LISTER_TUI_THEMES"
CACHE_ENV = "LISTER_TUI_CACHE"

PACKAGE_DIR = Path(__file__).resolve().parents[2]  # lister_tui/


def checkout_root() -> Path | None:
    """The source checkout the package runs from (an editable install), if any."""
    root = PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / "sessions").is_dir():
        return root
    return None


def _xdg(env: str, default: str) -> Path:
    value = os.environ.get(env)
    return Path(value) if value else Path.home() / default


def sessions_dir(option: str | Path | None = None) -> Path:
    if option:
        from lister_tui.core.files.atomic import check_path_name

        return check_path_name(Path(option).expanduser(), "--sessions-dir")
    if os.environ.get(SESSIONS_ENV):
        return Path(os.environ[SESSIONS_ENV]).expanduser()
    root = checkout_root()
    if root is not None:
        return root / "sessions"
    return _xdg("XDG_DATA_HOME", ".local/share") / "lister-tui" / "sessions"


def config_dir() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    return _xdg("XDG_CONFIG_HOME", ".config") / "lister-tui"


def user_themes_dir() -> Path:
    if os.environ.get(THEMES_ENV):
        return Path(os.environ[THEMES_ENV]).expanduser()
    return config_dir() / "themes"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return _xdg("XDG_CACHE_HOME", ".cache") / "lister-tui"


def bundled_themes_dir() -> Path:
    """The bundled themes: the checkout's themes/ folder, else the installed copy."""
    root = checkout_root()
    if root is not None and (root / "themes").is_dir():
        return root / "themes"
    for prefix in (sys.prefix, sys.base_prefix):
        candidate = Path(prefix) / "share" / "lister-tui" / "themes"
        if candidate.is_dir():
            return candidate
    return PACKAGE_DIR.parent / "themes"
