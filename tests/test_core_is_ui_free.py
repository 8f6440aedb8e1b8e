"""The science stays importable without the UI: nothing under lister_tui.core imports textual."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import lister_tui

CORE_PACKAGES = ("core", "organism")


def test_no_core_module_imports_textual():
    root = Path(lister_tui.__file__).parent
    offenders = []
    for package in CORE_PACKAGES:
        for path in (root / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[0] in ("textual", "textual_plotext")]
    assert offenders == []


def test_importing_the_core_loads_no_textual():
    code = (
        "import sys; import lister_tui.core.engine.generation, lister_tui.core.engine.attribution, lister_tui.core.engine.ablation;"
        "print(any(m.split('.')[0] == 'textual' for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
