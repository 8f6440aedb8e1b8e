"""One rendering path for untrusted text, enforced: every sink in lister_tui/ (Rich Text, markup, table
cells, titles, Static/Label content, console.print, echo) gets a literal, a number, or what
``safe_text.text`` / ``visible`` made of it (see tests/render_rule.py and docs/untrusted-text.md).
Our own help texts with brackets show them as written."""

from __future__ import annotations

import re
import textwrap

import pytest
from typer.testing import CliRunner

import render_rule
from lister_tui.cli import app


def test_every_sink_in_the_package_gets_text_by_the_one_rule():
    checker = render_rule.Checker()
    assert len(checker.modules) > 80  # the whole package was read
    found = checker.findings()
    assert found == [], "\n" + "\n".join(map(str, found)) + "\n(wrap the value in safe_text.text(...) or visible(...))"


def test_waivers_are_few_and_each_says_why():
    waivers = [
        (p, line) for p in render_rule.PACKAGE.rglob("*.py") for line in p.read_text(encoding="utf-8").splitlines() if render_rule.WAIVER in line
    ]
    assert len(waivers) <= 15, waivers
    for path, line in waivers:
        reason = line.split(render_rule.WAIVER, 1)[1].strip()
        assert len(reason) >= 10, (path, line)


def _flagged(code: str) -> list[str]:
    source = "from rich.text import Text\nfrom lister_tui.safe_text import text, visible\n" + textwrap.dedent(code)
    return [f.sink for f in render_rule.findings({"lister_tui/probe.py": source})]


# each a way round the rule that the check must catch
BAD = {
    "Text of a value": "def f(name):\n    return Text(name)",
    "Text of an f-string": "def f(topic):\n    return Text(f'circuit of {topic}')",
    "markup in a table cell": "def f(table, row):\n    table.add_row(row['updated'])",
    "visible() into markup": "def f(table, row):\n    table.add_row(visible(row))",
    "console.print of a value": "def f(console, s):\n    console.print(s)",
    "print of a value": "def f(s):\n    print(s)",
    "typer.echo": "import typer\ndef f(s):\n    typer.echo(s)",
    "a title": "def f(self, topic):\n    self.title = topic",
    "a border title": "def f(widget, key):\n    widget.border_title = f'samples {key}'",
    "a Static": "def f(s):\n    return Static(s)",
    "a widget update": "def f(self, err):\n    self.query_one('#x').update(f'failed: {err}')",
    "append to a Text": "def f(name):\n    out = Text()\n    out.append(name)\n    return out",
    "a status line": "def f(err_console, model):\n    with err_console.status(f'loading {model}'):\n        pass",
    "a plot title": "def f(plt, sae):\n    plt.title(sae)",
    "Text.from_markup": "def f(s):\n    return Text.from_markup(s)",
    "Text.assemble": "def f(s):\n    return Text.assemble(('x', 'bold'), s)",
    "a literal whose bracket vanishes": "def f(console):\n    console.print(\"pip install 'lister-tui[ray]'\")",
    "a loop variable": "def f(table, names):\n    for n in names:\n        table.add_row(n)",
    "a notification around ListerApp.notify": "class S:\n    def f(self, err):\n        super().notify(err)",
    "a parameter kept on self": "class A:\n    def __init__(self, q):\n        self.q = q\n    def g(self):\n        return Static(self.q)",
}
GOOD = {
    "a literal": "def f(console):\n    console.print('done')",
    "intended markup": "def f(console):\n    console.print('[bold red]error[/]')",
    "text()": "def f(table, name):\n    table.add_row(text(name))",
    "visible() in a Text": "def f(name):\n    return Text(visible(name), style='bold')",
    "numbers": "def f(table, x, n):\n    table.add_row(f'{x:.3f}', f'{n:d}', str(len(n)))",
    "a loop over our own tuple": "def f(table):\n    for label, w in (('a', 1), ('b', 2)):\n        table.add_column(label)",
    "a helper that returns text()": "def cell(s):\n    return text(s)\ndef f(table, s):\n    table.add_row(cell(s))",
    "a waiver with its reason": "def f(out, ch):\n    out = Text()\n    out.append(ch)  # safe-text: bar characters of this function",
}


@pytest.mark.parametrize("name", BAD)
def test_the_check_catches_each_way_round_the_rule(name):
    assert _flagged(BAD[name]), f"not caught: {name}"


@pytest.mark.parametrize("name", GOOD)
def test_the_check_leaves_safe_code_alone(name):
    assert _flagged(GOOD[name]) == []


def _commands():
    """Every command and group of the CLI, as argument paths (derived from the Typer app)."""
    import typer.main

    root = typer.main.get_command(app)

    def walk(cmd, path):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, path + [name])

    return list(walk(root, []))


def test_help_texts_show_their_brackets_as_written():
    runner = CliRunner()
    checked = 0
    for path, cmd in _commands():
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        shown = runner.invoke(app, path + ["--help"], terminal_width=200)
        assert shown.exit_code == 0, (path, shown.output)
        flat = "".join(shown.output.split())
        for t in texts:
            for bracket in re.findall(r"\[[^\[\]\s]+\]", t):
                assert bracket in flat, (path, bracket)
                checked += 1
    assert checked >= 3  # [ray], [templates.NAME], [ADDRESS] at least
    sweep = runner.invoke(app, ["sweep", "--help"], terminal_width=100).output
    assert "pip install 'lister-tui[ray]'" in sweep and "[bold]" not in sweep


def test_the_screenshot_message_names_the_file_without_markup(tmp_path, monkeypatch):
    import asyncio

    from textual import events

    from lister_tui.core.sessions.opening import view_session
    from lister_tui.core.sessions.store import read_session
    from lister_tui.tui.app import ListerApp

    from hostile import hostile_session

    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    hostile_session(tmp_path / "s" / "plain", "")
    view = view_session(read_session(tmp_path / "s" / "plain"))
    shot = tmp_path / "shot [x]\x1b]52;c;AA\x07.svg"

    async def go():
        app = ListerApp(view.lab, initial=None, workspace=view.opened.workspace, session=view.store, banner=view.banner, session_name="plain", sessions_dir=tmp_path / "s")
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            app.post_message(events.DeliveryComplete(key="k", path=shot, name="screenshot"))
            await pilot.pause()
            return [m for m in app.messages if m.title == "Screenshot"]

    said = asyncio.run(go())
    assert len(said) == 1, said  # ours alone, not Textual's as well
    assert "[$" not in said[0].text and "shot [x]␛]52;c;AA␇.svg" in said[0].text


def test_the_circuit_summary_shows_a_hostile_topic_as_text():
    """`circuit --topic` with C1 and bidi characters: the summary, node and site tables show markers."""
    from types import SimpleNamespace

    import pandas as pd

    from lister_tui.cli.circuit import _print_summary
    from lister_tui.cli.common import console

    from hostile import unsafe_chars

    evil = "Fruits\x85\u202e[/]\x1b]52;c;AA\x07"
    node = SimpleNamespace(id=f"res_1/3/{evil}", kind="feature", token=evil, effect=0.5)
    circuit = SimpleNamespace(
        samples=[f"short/{evil}/0"], nodes=[node], edges=[], metric=1.0, faithfulness=[], n_for=lambda share: None,
        parents=lambda node_id: [], n_candidates=1,
    )
    report = pd.DataFrame([{"site": evil, "sae_memory_bytes": 2**20, "circuit_nodes": 1, "circuit_node_share": 1.0, "effect_share": 1.0, "error_share": 0.0, "sweep_n_items_change": None}])
    with console.capture() as captured:
        _print_summary(circuit, report)
    out = captured.get()
    assert unsafe_chars(out) == [] and "Fruits⟨U+0085⟩⟨U+202E⟩[/]␛]52" in out


@pytest.mark.parametrize("field", ["updated", "created"])
@pytest.mark.parametrize("value", ["[/]", "2026-12-07T[bold]x", "\x1b]52;c;QUFBQQ==\x07", "\x1b[2J\u202e"])
def test_the_sessions_listing_shows_a_hostile_date_as_text(field, value, tmp_path):
    import json

    from hostile import hostile_session, unsafe_chars

    folder = hostile_session(tmp_path / "sessions" / "dated", "")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest[field] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))
    listed = CliRunner().invoke(app, ["sessions", "--sessions-dir", str(tmp_path / "sessions")], terminal_width=120)
    assert listed.exit_code == 0 and "Traceback" not in listed.output and "dated" in listed.output, listed.output
    assert unsafe_chars(listed.output) == []
