"""The AST check behind the one rendering path (a plain module for the tests and ``docs/untrusted-text.md``).

Every place where a string reaches the terminal (a *sink*) must be handed something that cannot carry
untrusted text as it is: a literal of our own source, a number, or the result of ``safe_text.text`` /
``visible`` / ``visible_token`` (or of a function of ours that only ever returns such values). Anything
else (a name bound to a value read from a file, an attribute, an f-string with a string inside) is
reported with its file and line.

Sinks: Rich ``Text(...)``, ``Text.assemble``, ``Text.from_markup`` / ``from_ansi``, ``.append`` on a
``Text``; ``Table(...)`` headers and titles, ``.add_row``, ``.add_column``; ``console.print`` /
``.status`` / ``.log`` / ``.rule`` and a status's ``.update``; ``print``, ``typer.echo``, ``click.echo``,
``sys.stdout.write``; Textual ``Static``, ``Label``, ``Button``, ``Markdown``, ``Panel``, ``Option``,
``TabPane``, ``Tree`` and their ``.update``; ``.title``, ``.sub_title``, ``.border_title``,
``.border_subtitle`` assignments and ``title=``/``subtitle=`` arguments; plotext titles and labels.
``notify`` is not a sink: the explorer's only notification path is ``ListerApp.notify``, which shows
every message through ``visible`` (tested by behaviour). The CLI's ``say`` and ``fail`` apply ``text``.

A literal given to a sink that parses markup must not hold a bracket that is not a style
(``[ray]``, ``[templates.NAME]`` vanish as unknown tags): such a literal is reported too.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lister_tui"

SAFE_TEXT_FUNCTIONS = {"text", "visible", "visible_token"}
# builtins and methods whose result is a number, or keeps a safe string safe
NUMERIC_CALLS = {"len", "int", "float", "round", "abs", "sum", "bool"}
STRING_METHODS = {"upper", "lower", "strip", "rstrip", "lstrip", "ljust", "rjust", "center", "title", "capitalize", "replace"}
# Rich and Textual renderables whose own arguments are checked where they are built
RENDERABLES = {
    "Table", "Panel", "Group", "Columns", "Padding", "Align", "Text", "Static", "Label", "Button", "Markdown",
    "Option", "Tree", "TabPane", "Spacing", "Rule", "Bar", "Sparkline", "Segment",
}  # fmt: skip
# a sink's string arguments: call name -> (positional indexes, ("*" = all), keyword names)
CONSTRUCTOR_SINKS = {
    "Text": ((0,), ()),
    "Table": (("*",), ("title", "caption")),
    "Panel": ((0,), ("title", "subtitle")),
    "Static": ((0,), ()),
    "Label": ((0,), ()),
    "Button": ((0,), ("label",)),
    "Markdown": ((0,), ()),
    "Option": ((0,), ()),
    "TabPane": ((0,), ()),
    "Tree": ((0,), ()),
    "Content": ((0,), ()),
    "print": (("*",), ()),
}
MARKUP_SINKS = {"set_label", "add_leaf", "update_cell", "update_cell_at", "Table", "Panel", "Static", "Label", "Button", "Option", "TabPane", "Tree", "add_row", "add_column", "update", "print", "status", "log", "rule"}
METHOD_SINKS = {
    "add_row": (("*",), ()),
    "add_column": ((0,), ("header",)),
    "from_markup": ((0,), ()),
    "from_ansi": ((0,), ()),
    "assemble": (("*",), ()),
    "echo": ((0,), ()),
    "set_label": ((0,), ()),
    "add_leaf": ((0,), ()),
    "update_cell": ((2,), ()),
    "update_cell_at": ((1,), ()),
}
CONSOLE_METHODS = {"print": (("*",), ()), "status": ((0,), ()), "log": (("*",), ()), "rule": ((0,), ())}
PLOT_METHODS = {"title": ((0,), ()), "xlabel": ((0,), ()), "ylabel": ((0,), ()), "xticks": ((1,), ()), "yticks": ((1,), ())}
# the one notification path: ListerApp.notify applies visible to every message and title
NOTIFY_PATH = "lister_tui/tui/app.py"
# a sink that the check cannot follow, on a line that says why it is safe: ``# safe-text: every cell is text(...)``
WAIVER = "# safe-text:"
TITLE_ATTRIBUTES = {"title", "sub_title", "border_title", "border_subtitle", "TITLE", "SUB_TITLE"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    sink: str
    source: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.sink} gets {self.source}"


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _receiver_text(func: ast.expr) -> str:
    return ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""


def _bad_brackets(literal: str) -> list[str]:
    """The ``[...]`` tags of ``literal`` that are not a style, a Textual variable or a link (they vanish)."""
    import re

    from rich.style import Style

    bad = []
    for tag in re.findall(r"(?<!\\)\[([a-zA-Z$/@#][^\[\]]*)\]", literal):
        name = tag.strip()
        if name.startswith(("/", "$", "@", "link")):
            continue
        try:
            Style.parse(name)
        except Exception:
            bad.append(f"[{tag}]")
    return bad


class _Module:
    """One module's names: its safe_text aliases, its constants, its functions."""

    def __init__(self, path: Path, source: str):
        self.path, self.source = path, source
        self.tree = tree = ast.parse(source)
        self.safe_aliases: dict[str, str] = {}  # local name -> text, visible or visible_token
        self.constants: dict[str, ast.expr] = {}
        self.imported: dict[str, tuple[str, str]] = {}  # local name -> (module, name) of a lister_tui import
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "lister_tui.safe_text":
                self.safe_aliases.update({a.asname or a.name: a.name for a in node.names if a.name in SAFE_TEXT_FUNCTIONS})
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lister_tui"):
                self.imported.update({a.asname or a.name: (node.module, a.name) for a in node.names})
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                self.constants[node.targets[0].id] = node.value
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                self.constants[node.target.id] = node.value


def _loop_values(target: ast.expr, iterable: ast.expr, name: str) -> list[ast.expr] | None:
    """The values ``name`` takes in ``for target in iterable`` when the iterable is a literal tuple or list."""
    if isinstance(iterable, ast.Call) and _call_name(iterable.func) in ("items", "values", "keys") and isinstance(iterable.func.value, ast.Dict):
        d, how = iterable.func.value, _call_name(iterable.func)
        iterable = ast.Tuple([ast.Tuple([k, v]) if how == "items" else (v if how == "values" else k) for k, v in zip(d.keys, d.values)])
    if not isinstance(iterable, (ast.Tuple, ast.List)):
        return None
    values = []
    for element in iterable.elts:
        if isinstance(target, ast.Name):
            values.append(element)
        elif isinstance(target, ast.Tuple) and isinstance(element, ast.Tuple) and len(element.elts) == len(target.elts):
            values += [v for t, v in zip(target.elts, element.elts) if isinstance(t, ast.Name) and t.id == name]
        else:
            return None
    return values


def _literal_container(expr: ast.expr) -> bool:
    """A dict, tuple, list or set literal of string/number constants (a lookup table of ours)."""
    try:
        value = ast.literal_eval(expr)
    except Exception:
        return False

    def plain(v) -> bool:
        if isinstance(v, (str, int, float, bool)) or v is None:
            return True
        if isinstance(v, (tuple, list, set, frozenset)):
            return all(plain(x) for x in v)
        if isinstance(v, dict):
            return all(plain(k) and plain(x) for k, x in v.items())
        return False

    return plain(value)


class Checker:
    """The rule over a set of modules (by default every module of the package but safe_text.py)."""

    def __init__(self, sources: dict[str, str] | None = None):
        if sources is None:
            sources = {
                str(p.relative_to(PACKAGE.parent)): p.read_text(encoding="utf-8")
                for p in sorted(PACKAGE.rglob("*.py"))
                if p.name != "safe_text.py"
            }
        self.modules = [_Module(Path(name), src) for name, src in sources.items()]
        self.by_module = {str(m.path.with_suffix("")).replace("/", "."): m for m in self.modules}
        for m in self.modules:  # a safe_text function imported through another module of ours
            for local, (source, original) in m.imported.items():
                other = self.by_module.get(source)
                if other is not None and original in other.safe_aliases:
                    m.safe_aliases[local] = other.safe_aliases[original]
        self.safe_functions: dict[bool, set[str]] = {False: set(), True: set()}
        self.numeric_attributes = self._numeric_attributes()
        self._find_safe_functions()

    def _numeric_attributes(self) -> set[str]:
        """Field names that every class of the package annotates as a number or a bool (``n_items: int``)."""
        kinds: dict[str, set[bool]] = {}
        for m in self.modules:
            for cls in ast.walk(m.tree):
                if not isinstance(cls, ast.ClassDef):
                    continue
                for item in cls.body:
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        words = set(ast.unparse(item.annotation).replace("|", " ").replace("Optional[", " ").replace("]", " ").split())
                        kinds.setdefault(item.target.id, set()).add(words <= {"int", "float", "bool", "None"})
        return {name for name, k in kinds.items() if k == {True}}

    # --- which of our functions only return safe values -----------------------------------------
    def _find_safe_functions(self) -> None:
        functions = [
            (m, node) for m in self.modules for node in ast.walk(m.tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        ]
        by_name: dict[str, list] = {}
        for m, f in functions:
            by_name.setdefault(f.name, []).append((m, f))
        for markup in (False, True):
            changed = True
            while changed:
                changed = False
                for name, defs in by_name.items():
                    if name in self.safe_functions[markup]:
                        continue
                    ok = True
                    for m, f in defs:
                        returns = [r for r in ast.walk(f) if isinstance(r, ast.Return)]
                        if not returns or any(r.value is None or not self.safe(r.value, m, f, markup=markup) for r in returns):
                            ok = False
                            break
                    if ok:
                        self.safe_functions[markup].add(name)
                        changed = True

    # --- is an expression safe ---------------------------------------------------------------------
    def safe(self, expr: ast.expr | None, module: _Module, scope: ast.AST | None, seen: frozenset = frozenset(), markup: bool = False) -> bool:
        """Whether ``expr`` is safe at a sink; with ``markup`` the sink parses markup, so a plain string from
        ``visible`` is not enough (``[/]`` stays a tag): it needs ``text(...)``, a ``Text`` or ``escape``."""
        if expr is None:
            return True
        if isinstance(expr, ast.Constant):
            return True
        if isinstance(expr, ast.JoinedStr):
            return all(self._safe_formatted(v, module, scope, seen, markup) for v in expr.values if isinstance(v, ast.FormattedValue))
        if isinstance(expr, ast.BinOp):
            if isinstance(expr.op, ast.Mod) and isinstance(expr.left, ast.Constant):
                parts = expr.right.elts if isinstance(expr.right, ast.Tuple) else [expr.right]
                return all(self.safe(p, module, scope, seen, markup) for p in parts)
            if isinstance(expr.op, (ast.Sub, ast.Div, ast.FloorDiv, ast.Pow)):
                return True  # a number: a string there would raise
            if isinstance(expr.op, ast.Add) and any(isinstance(e, ast.Constant) and isinstance(e.value, (int, float)) for e in (expr.left, expr.right)):
                return True
            return self.safe(expr.left, module, scope, seen, markup) and self.safe(expr.right, module, scope, seen, markup)
        if isinstance(expr, ast.UnaryOp):
            return True  # -x, not x: a number or a bool
        if isinstance(expr, (ast.Compare,)):
            return True
        if isinstance(expr, ast.IfExp):
            return self.safe(expr.body, module, scope, seen, markup) and self.safe(expr.orelse, module, scope, seen, markup)
        if isinstance(expr, ast.BoolOp):
            return all(self.safe(v, module, scope, seen, markup) for v in expr.values)
        if isinstance(expr, (ast.Tuple, ast.List)):
            return all(self.safe(e, module, scope, seen, markup) for e in expr.elts)
        if isinstance(expr, (ast.ListComp, ast.GeneratorExp)):
            return self.safe(expr.elt, module, scope, seen, markup)
        if isinstance(expr, ast.Starred):
            return self.safe(expr.value, module, scope, seen, markup)
        if isinstance(expr, ast.Subscript):
            # a lookup in a literal table of ours, or a slice of a safe value
            if isinstance(expr.value, ast.Name) and expr.value.id in module.constants and _literal_container(module.constants[expr.value.id]):
                return True
            return isinstance(expr.slice, ast.Slice) and self.safe(expr.value, module, scope, seen, markup)
        if isinstance(expr, ast.Name):
            return self._safe_name(expr.id, module, scope, seen, markup)
        if isinstance(expr, ast.Attribute):
            if expr.attr in self.numeric_attributes:
                return True
            if isinstance(expr.value, ast.Name) and expr.value.id == "self":
                return self._safe_self_attribute(expr.attr, module, scope, seen, markup)
            return False
        if isinstance(expr, ast.Call):
            return self._safe_call(expr, module, scope, seen, markup)
        return False

    def _safe_formatted(self, v: ast.FormattedValue, module, scope, seen, markup) -> bool:
        if v.format_spec is not None:
            spec = "".join(c.value for c in v.format_spec.values if isinstance(c, ast.Constant))
            if spec and spec[-1] in "dfeEgGn%xXob" or spec.endswith(","):
                return True  # a numeric format: a string there would raise
        return self.safe(v.value, module, scope, seen, markup)

    def _safe_call(self, call: ast.Call, module, scope, seen, markup) -> bool:
        name = _call_name(call.func)
        if isinstance(call.func, ast.Name):
            if name in NUMERIC_CALLS:
                return True
            if name in module.safe_aliases:
                return module.safe_aliases[name] == "text" or not markup
            if name == "escape" and call.args:
                return self.safe(call.args[0], module, scope, seen, False)
            if name in ("str", "set_cell_size") and call.args:
                return self.safe(call.args[0], module, scope, seen, markup)
            if name in self.safe_functions[markup]:
                return True
            if name in RENDERABLES:
                return True  # its own arguments are checked as a sink where it is built
            return False
        if isinstance(call.func, ast.Attribute):
            receiver = call.func.value
            if name in ("join", "format") and isinstance(receiver, ast.Constant):
                return all(self.safe(a, module, scope, seen, markup) for a in call.args) and all(self.safe(k.value, module, scope, seen, markup) for k in call.keywords)
            if name in STRING_METHODS:
                return self.safe(receiver, module, scope, seen, markup)  # widths and fill characters of ours
            if name in ("join", "format"):
                return self.safe(receiver, module, scope, seen, markup) and all(self.safe(a, module, scope, seen, markup) for a in call.args)
            if isinstance(receiver, ast.Name) and receiver.id == "self":
                method = self._own_method(name, module, scope)
                if method is not None:
                    key = ("method", id(method), markup)
                    if key in seen:
                        return True
                    returns = [r for r in ast.walk(method) if isinstance(r, ast.Return)]
                    return bool(returns) and all(r.value is not None and self.safe(r.value, module, method, seen | {key}, markup) for r in returns)
            if name in ("assemble", "from_markup", "from_ansi") or name in RENDERABLES:
                return True  # checked as a sink
            if name in self.safe_functions[markup]:
                return True  # a method of ours that only returns safe values (matched by name)
        return False

    def _own_method(self, name: str, module, scope):
        """The method ``name`` of the class that holds ``scope``."""
        for cls in ast.walk(module.tree):
            if isinstance(cls, ast.ClassDef) and any(n is scope for n in ast.walk(cls)):
                return next((f for f in cls.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name == name), None)
        return None

    def _safe_self_attribute(self, attr: str, module, scope, seen, markup) -> bool:
        """``self.attr`` is safe when every value the class binds to it is (a parameter is not)."""
        cls = next((c for c in ast.walk(module.tree) if isinstance(c, ast.ClassDef) and any(n is scope for n in ast.walk(c))), None)
        if cls is None or ("self." + attr, id(cls)) in seen:
            return cls is not None
        seen = seen | {("self." + attr, id(cls))}
        values = []
        for item in cls.body:
            if isinstance(item, (ast.Assign, ast.AnnAssign)):
                targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                if any(isinstance(t, ast.Name) and t.id == attr for t in targets) and item.value is not None:
                    values.append((item.value, None))
        for f in ast.walk(cls):
            if not isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(f):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
                for t in targets:
                    if isinstance(t, ast.Attribute) and t.attr == attr and isinstance(t.value, ast.Name) and t.value.id == "self":
                        if node.value is None:
                            continue
                        values.append((node.value, f))
        return bool(values) and all(self.safe(v, module, f, seen, markup) for v, f in values)

    def _assignments(self, name: str, scope: ast.AST | None) -> list[ast.expr] | None:
        """Every value bound to ``name`` in ``scope``; None when it is also bound in a way we cannot follow."""
        if scope is None:
            return None
        values: list[ast.expr] = []
        args = scope.args if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else None
        if args is not None and name in {a.arg for a in args.args + args.kwonlyargs + args.posonlyargs}:
            return None
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id == name:
                        values.append(node.value)
                    elif isinstance(target, ast.Tuple) and any(isinstance(e, ast.Name) and e.id == name for e in target.elts):
                        if isinstance(node.value, ast.Tuple) and len(node.value.elts) == len(target.elts):
                            values += [v for e, v in zip(target.elts, node.value.elts) if isinstance(e, ast.Name) and e.id == name]
                        else:
                            return None
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and isinstance(node.target, ast.Name) and node.target.id == name:
                if node.value is not None:
                    values.append(node.value)
            elif isinstance(node, (ast.For, ast.comprehension)):
                if any(isinstance(t, ast.Name) and t.id == name for t in ast.walk(node.target)):
                    bound = None
                    for iterable in self._literal_iterables(node.iter, scope):
                        more = _loop_values(node.target, iterable, name)
                        if more is None:
                            bound = None
                            break
                        bound = (bound or []) + more
                    if bound is None:
                        return None
                    values += bound
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                if isinstance(node.optional_vars, ast.Name) and node.optional_vars.id == name:
                    values.append(node.context_expr)
            elif isinstance(node, ast.NamedExpr) and node.target.id == name:
                values.append(node.value)
        return values

    def _literal_iterables(self, iterable: ast.expr, scope, depth: int = 0) -> list[ast.expr]:
        """``iterable`` as literal tuples: itself, or what a local name was bound to (``cols = (...) + (...)``)."""
        if depth > 4:
            return [iterable]
        if isinstance(iterable, ast.BinOp) and isinstance(iterable.op, ast.Add):
            return self._literal_iterables(iterable.left, scope, depth + 1) + self._literal_iterables(iterable.right, scope, depth + 1)
        if isinstance(iterable, ast.IfExp):
            return self._literal_iterables(iterable.body, scope, depth + 1) + self._literal_iterables(iterable.orelse, scope, depth + 1)
        if isinstance(iterable, ast.Name):
            values = self._assignments(iterable.id, scope)
            if values:
                return [x for v in values for x in self._literal_iterables(v, scope, depth + 1)]
        return [iterable]

    def _safe_name(self, name: str, module, scope, seen, markup) -> bool:
        if (name, id(scope)) in seen:
            return True  # a loop of assignments: the other bindings decide
        seen = seen | {(name, id(scope))}
        values = self._assignments(name, scope)
        if values:
            return all(self.safe(v, module, scope, seen, markup) for v in values)
        if values is None:
            return False
        if name in module.constants:  # a module constant of ours
            return self.safe(module.constants[name], module, None, seen, markup) or _literal_container(module.constants[name])
        if name in module.imported:  # a constant of another module of ours
            source, original = module.imported[name]
            other = self.by_module.get(source)
            if other is not None and original in other.constants:
                return self.safe(other.constants[original], other, None, seen, markup) or _literal_container(other.constants[original])
        return False

    # --- the sinks -----------------------------------------------------------------------------------
    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        for module in self.modules:
            out += self._module_findings(module)
        return out

    def _module_findings(self, module: _Module) -> list[Finding]:
        found: list[Finding] = []
        scopes: dict[int, ast.AST] = {}

        def mark(node: ast.AST, scope: ast.AST | None) -> None:
            for child in ast.iter_child_nodes(node):
                inner = child if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else scope
                scopes[id(child)] = inner
                mark(child, inner)

        mark(module.tree, None)

        lines = module.source.splitlines()

        def report(node: ast.AST, sink: str, expr: ast.expr) -> None:
            end = getattr(node, "end_lineno", node.lineno)
            if any(WAIVER in lines[i - 1] for i in range(node.lineno, end + 1)):
                return  # a waiver with its reason, on the sink's own lines
            found.append(Finding(str(module.path), node.lineno, sink, ast.unparse(expr)[:120]))

        def check(node: ast.AST, sink: str, expr: ast.expr, markup: bool) -> None:
            scope = scopes.get(id(node))
            if not self.safe(expr, module, scope, markup=markup):
                report(node, sink, expr)
            elif markup:
                for c in ast.walk(expr):
                    if isinstance(c, ast.Constant) and isinstance(c.value, str) and _bad_brackets(c.value):
                        report(node, f"{sink} (markup that vanishes: {', '.join(_bad_brackets(c.value))})", expr)
                        break

        def check_args(call: ast.Call, sink: str, spec, markup: bool) -> None:
            positions, keywords = spec
            markup = markup and not any(k.arg == "markup" and isinstance(k.value, ast.Constant) and k.value.value is False for k in call.keywords)
            for i, arg in enumerate(call.args):
                if "*" in positions or i in positions:
                    check(call, sink, arg, markup)
            for k in call.keywords:
                if k.arg in keywords:
                    check(call, f"{sink}({k.arg}=)", k.value, markup)

        for node in ast.walk(module.tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and target.attr in TITLE_ATTRIBUTES:
                        check(node, f".{target.attr} =", node.value, True)
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.Assign) and any(isinstance(t, ast.Name) and t.id in ("TITLE", "SUB_TITLE") for t in item.targets):
                        check(item, "TITLE", item.value, True)
            if not isinstance(node, ast.Call):
                continue
            name, receiver = _call_name(node.func), _receiver_text(node.func)
            if name == "notify" and receiver in ("super()", "App", "Screen", "Widget") and str(module.path) != NOTIFY_PATH:
                found.append(Finding(str(module.path), node.lineno, f"{receiver}.notify", "a notification that skips ListerApp.notify"))
            if isinstance(node.func, ast.Name) and name in CONSTRUCTOR_SINKS:
                check_args(node, name, CONSTRUCTOR_SINKS[name], name in MARKUP_SINKS)
            elif isinstance(node.func, ast.Attribute):
                if name in METHOD_SINKS and (name != "echo" or receiver in ("typer", "click")) and (name != "set_label" or "node" in receiver or "root" in receiver) and (name not in ("assemble", "from_markup", "from_ansi") or receiver in ("Text", "Content")):
                    if name == "assemble":
                        for part in node.args:
                            check(node, "Text.assemble", part.elts[0] if isinstance(part, ast.Tuple) else part, False)
                    else:
                        check_args(node, f"{receiver}.{name}", METHOD_SINKS[name], name in MARKUP_SINKS or name == "from_markup")
                elif name in CONSOLE_METHODS and "console" in receiver:
                    check_args(node, f"{receiver}.{name}", CONSOLE_METHODS[name], True)
                elif name in PLOT_METHODS and receiver.endswith("plt"):
                    check_args(node, f"{receiver}.{name}", PLOT_METHODS[name], False)
                elif name == "write" and receiver in ("sys.stdout", "sys.stderr"):
                    check_args(node, f"{receiver}.write", ((0,), ()), False)
                elif name in ("append", "append_text") and self._is_text(node.func.value, module, scopes.get(id(node))):
                    check_args(node, f"{receiver}.append", ((0,), ()), False)
                elif name == "update" and self._is_widget(node.func.value, module, scopes.get(id(node))):
                    check_args(node, f"{receiver}.update", ((0,), ("description",)), True)
            for k in node.keywords:
                if k.arg in ("title", "subtitle") and name not in ("notify", "Table", "Panel") and not isinstance(node.func, ast.Name) or (
                    k.arg in ("border_title", "border_subtitle", "placeholder", "tooltip")
                ):
                    if k.arg in ("title", "subtitle", "border_title", "border_subtitle", "placeholder", "tooltip"):
                        check(node, f"{name}({k.arg}=)", k.value, True)
        return found

    def _bound_from(self, expr: ast.expr, module, scope) -> list[ast.expr]:
        if isinstance(expr, ast.Name):
            return self._assignments(expr.id, scope) or []
        return [expr]

    def _is_text(self, receiver: ast.expr, module, scope) -> bool:
        """A Rich Text being built: a name bound to Text(...), text(...), Text.assemble(...)."""
        for value in self._bound_from(receiver, module, scope):
            if isinstance(value, ast.Call):
                name = _call_name(value.func)
                if name in ("Text", "assemble", "from_markup") or name in module.safe_aliases:
                    return True
        return False

    def _is_widget(self, receiver: ast.expr, module, scope) -> bool:
        """A Textual widget or a Rich status/progress: ``query_one(...)``, a name bound to it or to
        ``console.status(...)``, or ``self`` in a Static subclass."""
        if isinstance(receiver, ast.Call) and _call_name(receiver.func) in ("query_one", "get_widget_by_id"):
            return True
        if isinstance(receiver, ast.Name) and receiver.id == "self":
            for cls in ast.walk(module.tree):
                if isinstance(cls, ast.ClassDef) and any(n is scope for n in ast.walk(cls)):
                    return any(_call_name(b) in ("Static", "Label") for b in cls.bases)
            return False
        for value in self._bound_from(receiver, module, scope):
            if isinstance(value, ast.Call) and _call_name(value.func) in ("query_one", "status", "Static", "Label"):
                return True
        return False


def findings(sources: dict[str, str] | None = None) -> list[Finding]:
    return Checker(sources).findings()
