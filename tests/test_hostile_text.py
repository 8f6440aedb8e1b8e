"""Untrusted text is text: hostile strings in every string field of a session reach the shell as
visible markers, never as markup or terminal escapes, and never as a traceback."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.safe_text import is_safe, text, visible, visible_token

from hostile import HOSTILE, hostile_session, unsafe_chars


@given(st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x2FFFF), max_size=60))
@settings(max_examples=400, deadline=None)
def test_visible_leaves_nothing_unsafe_and_renders_without_markup(s):
    import unicodedata

    for shown in (visible(s), visible_token(s), visible(s, keep_newlines=True)):
        assert is_safe(shown), unsafe_chars(shown)
        # checked independently of the helper's own rule: no control, format, separator or surrogate
        # character is left but a kept line break
        left = [ch for ch in shown if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") and ch != "\n"]
        left += [ch for ch in shown if unicodedata.category(ch) == "Cf" and ch not in "\u00ad\u200c\u200d"]
        assert left == [], left
    console = Console(record=True, width=80, file=open("/dev/null", "w"), color_system=None)
    console.print(text(s))  # a Text is never parsed as markup: "[/]" cannot raise
    assert unsafe_chars(console.export_text()) == []


def test_markers_name_what_was_there():
    assert visible("\x1b]52;c;AAAA\x07") == "␛]52;c;AAAA␇"
    assert visible("a\rb\u202ec\u2028d\x7f\x9b") == "a␍b⟨U+202E⟩c⟨U+2028⟩d␡⟨U+009B⟩"
    assert visible_token(" \n\t\u00a0") == "·↵⇥⍽" and visible_token("") == "∅"
    assert str(text("[/][bold]x")) == "[/][bold]x"


def _clean(result) -> None:
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert unsafe_chars(result.output) == [], result.output[:400]


@pytest.mark.parametrize("evil", HOSTILE, ids=range(len(HOSTILE)))
def test_listing_export_open_and_replay_show_hostile_strings_as_text(evil, tmp_path, monkeypatch):
    folder = tmp_path / "sessions"
    hostile_session(folder / "evil", evil)
    runner = CliRunner()

    listed = runner.invoke(app, ["sessions", "--sessions-dir", str(folder)])
    _clean(listed)
    assert listed.exit_code == 0 and "evil" in listed.output
    # the model's name is shown as it is (markup as brackets, escapes as markers), folded in its column
    flat = "".join(ch for ch in listed.output if not ch.isspace() and ch not in "│┃")
    if "model" in listed.output:  # the listing drops the model column when a name too long for 80 columns would need it
        assert "".join(visible(f"fake{evil}").split())[:8] in flat

    for fmt in ("csv", "markdown"):
        exported = runner.invoke(app, ["export", "evil", "--sessions-dir", str(folder), "-f", fmt, "-o", str(tmp_path / fmt)])
        _clean(exported)
        assert exported.exit_code == 0, exported.output

    # the model is not here: open says so (with the model's hostile name as text) and opens read-only
    from lister_tui.tui import app as tui_app

    started = []
    monkeypatch.setattr(tui_app.ListerApp, "run", lambda self: started.append(self))
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    opened = runner.invoke(app, ["open", "evil", "--sessions-dir", str(folder), "--device", "cpu"])
    _clean(opened)
    assert opened.exit_code == 0 and len(started) == 1

    replayed = runner.invoke(app, ["replay", "evil", "--sessions-dir", str(folder)])
    _clean(replayed)
    assert replayed.exit_code == 2 and "fake" in replayed.output  # the model is not in the registry


@pytest.mark.parametrize("evil", HOSTILE[:4], ids=range(4))
def test_replay_on_the_shipped_model_reports_hostile_topics_as_text(evil, tmp_path):
    folder = tmp_path / "sessions"
    hostile_session(folder / "evil", evil, model_name="lister-tiny")
    replayed = CliRunner().invoke(app, ["replay", "evil", "--sessions-dir", str(folder)])
    _clean(replayed)
    assert replayed.exit_code in (0, 1, 2), replayed.output


@given(st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=30), min_size=1, max_size=5))
@settings(max_examples=300, deadline=None)
def test_markdown_export_round_trips_every_string(notes):
    """Notes with \\r, U+2028, U+0085, '|', backslashes or escapes read back as they were written."""
    import tempfile
    from pathlib import Path

    import pandas as pd

    from lister_tui.core.sessions.export import read_markdown, to_markdown

    frame = pd.DataFrame({"key": [f"k{i}" for i in range(len(notes))], "note": ["x" + n for n in notes]})
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.md"
        path.write_text(to_markdown(frame, "notes"), encoding="utf-8")
        back = read_markdown(path)
    assert list(back["note"]) == list(frame["note"])


def test_the_listed_hard_cases_round_trip_through_markdown(tmp_path):
    import pandas as pd

    from lister_tui.core.sessions.export import read_markdown, to_markdown

    hard = ["a\rb", "a\u2028b", "a|b", "a\\nb", "a\\u2028b", "a\r\nb", "a\x85b\x1c", "tail\\"]
    frame = pd.DataFrame({"note": hard})
    (tmp_path / "t.md").write_text(to_markdown(frame, "notes"), encoding="utf-8")
    assert list(read_markdown(tmp_path / "t.md")["note"]) == hard


@pytest.mark.parametrize("folder,name", [("my sweep", "sweep-my-sweep"), ("Übersicht", "sweep-Ubersicht"), ("日本", "sweep-folder"), ("a/../b", "sweep-a-..-b")])
def test_a_sweep_folder_of_any_name_gets_a_valid_session_name(folder, name):
    from lister_tui.core.sessions.opening import session_name_for
    from lister_tui.core.sessions.store import check_name

    assert session_name_for(folder) == name and check_name(name) == name


# any character UTF-8 can store (control characters, bidi controls, markup brackets included)
_ANY = st.text(alphabet=st.characters(codec="utf-8", categories=("Cc", "Cf", "Zl", "Zp", "Ps", "Pe", "Po", "L")), min_size=1, max_size=12)


@given(evil=_ANY)
@settings(max_examples=15, deadline=None)
def test_drawn_hostile_strings_in_a_session_reach_the_shell_as_text(evil):
    """Hypothesis draws the string put into every field; `sessions` and `export` show it as text."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "sessions"
        hostile_session(folder / "evil", evil)
        runner = CliRunner()
        listed = runner.invoke(app, ["sessions", "--sessions-dir", str(folder)])
        _clean(listed)
        assert listed.exit_code == 0 and "evil" in listed.output
        exported = runner.invoke(app, ["export", "evil", "--sessions-dir", str(folder), "-f", "markdown", "-o", str(Path(d) / "md")])
        _clean(exported)
        assert exported.exit_code == 0


def test_invisible_format_characters_are_marked_but_joiners_kept():
    assert visible("a\U000e0041b\u2060c") == "a⟨U+E0041⟩b⟨U+2060⟩c"  # a tag character, a word joiner
    assert visible("👩\u200d💻 می\u200cخواهم") == "👩\u200d💻 می\u200cخواهم"  # ZWJ emoji, ZWNJ in Persian


@pytest.mark.parametrize("evil", HOSTILE + ("a·b — café\u200d", "x\u00a0y\tz\n"), ids=range(len(HOSTILE) + 2))
def test_a_card_shows_untrusted_text_by_the_one_rule(evil):
    """The card's labels, sources and tokens go through safe_text: a label or a source as
    ``visible`` (a literal ``·`` stays a middle dot), a token as ``visible_token``."""
    from lister_tui.core.study.cards import Context
    from lister_tui.tui.card_render import context_text, label_text, strip_text

    label = label_text(evil)
    assert label.plain == (visible(evil) if evil else "") and label.spans == []  # never parsed as markup
    context = Context(1.0, "corpus", 0, ("a", evil, "b"), 1, (0.0, 1.0, 0.0))
    assert context_text(context).plain == "a" + visible_token(evil) + "b"
    assert strip_text(("a", evil), (0.0, 1.0)).plain == "a" + visible_token(evil)
