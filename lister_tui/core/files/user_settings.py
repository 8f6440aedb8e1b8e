"""The user's settings file: ``settings.json`` in the config folder (``lister-tui locate config``).

It keeps the chosen theme and the recently opened sessions. A missing or damaged
file means defaults (a damaged one is replaced on the next change); writes are
atomic. ``$LISTER_TUI_CONFIG_DIR`` moves it (tests use a temporary folder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lister_tui.core.files.atomic import atomic_write
from lister_tui.core.files.locations import config_dir

SETTINGS_FILE = "settings.json"
MAX_RECENT = 20


@dataclass
class UserSettings:
    theme: str | None = None
    recent: list[str] = field(default_factory=list)  # session folders, most recent first
    path: Path | None = None
    problem: str | None = None  # why the file could not be read, if it could not

    @classmethod
    def load(cls, folder: Path | None = None) -> "UserSettings":
        path = Path(folder or config_dir()) / SETTINGS_FILE
        if not path.is_file():
            return cls(path=path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            theme = data.get("theme")
            recent = [str(r) for r in data.get("recent", []) if isinstance(r, str)]
            return cls(theme if isinstance(theme, str) else None, recent[:MAX_RECENT], path)
        except (OSError, ValueError) as exc:
            return cls(path=path, problem=f"settings file {path} is unreadable ({exc}); using defaults")

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"theme": self.theme, "recent": self.recent}, indent=2) + "\n"
        atomic_write(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def add_recent(self, folder: str | Path) -> None:
        text = str(Path(folder).resolve())
        self.recent = [text] + [r for r in self.recent if r != text]
        del self.recent[MAX_RECENT:]
