"""The house's rules: imports point one way (engine ← study ← sessions/sweep ← cli/tui), and
no module grows past ~400 lines without saying why at its top."""

from __future__ import annotations

import ast
from pathlib import Path

import lister_tui

ROOT = Path(lister_tui.__file__).parent

# What each package under lister_tui.core may import of lister-tui (beyond itself).
ALLOWED = {
    "core.errors": set(),
    "core.limits": set(),
    "core.files": {"core.errors", "core.limits"},
    "core.engine": {"core.errors", "core.limits", "core.files", "organism.paths"},
    # organism.corpus: lister-tiny's held-out text, the reference corpus of its feature cards
    "core.study": {"core.errors", "core.limits", "core.files", "core.engine", "organism.corpus"},
    "core.sessions": {"core.errors", "core.limits", "core.files", "core.engine", "core.study"},
    "core.sweep": {"core.errors", "core.limits", "core.files", "core.engine", "core.study"},
}
MAX_LINES = 400


def _package_of(module: str) -> str:
    """``lister_tui.core.engine.loading`` → ``core.engine``; ``lister_tui.core.errors`` → ``core.errors``."""
    parts = module.split(".")[1:]
    return ".".join(parts[:2])


def _lister_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):  # every import, also the ones inside functions
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("lister_tui.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lister_tui."):
            if node.module in ("lister_tui.core", "lister_tui.organism"):  # `from lister_tui.core import files`
                found += [f"{node.module}.{a.name}" for a in node.names]
            else:
                found.append(node.module)
    return found


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def test_core_imports_point_one_way():
    offenders = []
    for path in (ROOT / "core").rglob("*.py"):
        me = _package_of(_module_name(path))
        if me == "core.__init__" or me == "core":
            continue
        allowed = ALLOWED[me] | {me}
        for imported in _lister_imports(path):
            target = _package_of(imported)
            if imported.startswith("lister_tui.organism."):
                target = ".".join(imported.split(".")[1:3])
            if target not in allowed:
                offenders.append(f"{path.relative_to(ROOT)} imports {imported} ({me} may import {sorted(allowed)})")
    assert offenders == []


def test_every_core_module_belongs_to_a_package_with_rules():
    loose = [p.name for p in (ROOT / "core").glob("*.py") if p.stem not in ("__init__", "errors", "limits")]
    assert loose == [], "a module at lister_tui/core/ top level: put it in the package of its concern"
    assert {p.name for p in (ROOT / "core").iterdir() if p.is_dir() and p.name != "__pycache__"} == {
        name.split(".")[1] for name in ALLOWED if "." in name and name not in ("core.errors", "core.limits")
    }


def test_nothing_but_the_ui_imports_the_ui_or_the_cli():
    offenders = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tui", "cli") or rel.name == "__main__.py":
            continue
        offenders += [f"{rel} imports {m}" for m in _lister_imports(path) if m.split(".")[1] in ("tui", "cli")]
    for path in (ROOT / "tui").rglob("*.py"):
        offenders += [f"{path.relative_to(ROOT)} imports {m}" for m in _lister_imports(path) if m.split(".")[1] == "cli"]
    assert offenders == []


def test_long_modules_say_why_at_their_top():
    """A module over MAX_LINES lines states its reason in its docstring ("Long because …")."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > MAX_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "Long because" not in doc:
                offenders.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
    assert offenders == []


def test_the_registry_has_no_import_circle():
    """entries (types) ← builtins, registry_file ← registry (lookup) ← loading ← prompts: no module
    imports one above it, also not inside a function (registry_file's ``__getattr__`` shim, which keeps
    ``entry_for``'s old import path, is the one marked exception)."""
    engine = ROOT / "core" / "engine"
    level = {"entries": 0, "fingerprint": 1, "builtins": 1, "registry_file": 2, "pretrained": 2, "registry": 3, "loading": 4, "prompts": 5}
    offenders = []
    for name, mine in level.items():
        tree = ast.parse((engine / f"{name}.py").read_text())
        shim = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"]
        skip = {id(x) for s in shim for x in ast.walk(s)}
        for node in ast.walk(tree):
            if id(node) in skip or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.module == "lister_tui.core.engine":
                mods = [f"lister_tui.core.engine.{a.name}" for a in node.names]
            for m in mods:
                other = m.removeprefix("lister_tui.core.engine.")
                if other in level and other != name and level[other] >= mine:
                    offenders.append(f"{name} imports {other}")
    assert offenders == []
