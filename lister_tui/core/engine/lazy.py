"""torch, imported on first use: the engine's data types (samples, ablations, attributions) are
read by commands that never run the model (`lister-tui sessions`, `export`), which then import no
torch (tests/test_quick_commands.py). ``torch.tensor(...)`` in a function works as before."""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """A module imported on the first attribute read."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


torch = LazyModule("torch")
