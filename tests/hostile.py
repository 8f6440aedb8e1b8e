"""Hostile strings and a session that carries them in every string field (a plain module for the tests).

A session is meant to be copied to colleagues, so each of its strings is untrusted: a token string of
its ``vocab`` table, a topic, a note, its model's name, an SAE's id."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from session_fixtures import IDS, MODEL, VOCAB, make_sample  # noqa: E402

from lister_tui.core.sessions.schema import SiteInfo  # noqa: E402
from lister_tui.core.sessions.store import SessionStore  # noqa: E402
from lister_tui.core.sessions.workspace import Workspace  # noqa: E402
from lister_tui.safe_text import is_safe  # noqa: E402

# Rich markup that raises or styles, terminal escapes (clipboard, clear screen, 8-bit CSI), a carriage
# return, a bidi override, a line separator, DEL, a very long string and an empty one.
HOSTILE = (
    "[/]",
    "[bold red]x[link=http://e]y",
    "\x1b]52;c;AAAA\x07",
    "\x1b[2J",
    "\r",
    "\u202e",
    "\u2028",
    "a\x9b2Jb\x7f",
    "[" * 3 + "x" * 4000,
    "",
)


def unsafe_chars(s: str) -> list[str]:
    """The characters of ``s`` that must never reach a terminal as they are."""
    return sorted({ch for ch in s if not is_safe(ch)})


def hostile_session(folder: Path, evil: str, *, model_name: str | None = None) -> Path:
    """A session in ``folder`` whose topics, notes, token strings, model name and SAE ids carry ``evil``."""
    topic = f"Fruits{evil}"
    ws = Workspace(model_name or f"fake{evil}", notes=f"notes {evil} end")
    a = make_sample("short", topic, 0, 11, [[8, 9], [10]], [False, True], metric=1.5)
    b = make_sample("long", evil or "x", 1, 12, [[11], [12], [13, 14]], [False, False, True])
    ka, kb = ws.add_samples([a], "code") + ws.add_samples([b], "greedy")
    ws.set_curve(ka, [0.5 * i for i in range(len(a.tokens))])
    ws.set_note(kb, f"note {evil}")
    sites = (SiteInfo(f"res_0{evil}", "res", 0, "blocks.0.hook_resid_post"),)
    model = replace(MODEL, name=model_name or f"fake{evil}", sites=sites, ids=IDS)
    # every word token carries the hostile string: the token view shows vocab strings
    vocab = {**VOCAB, **{i: f"w{i}{evil}" for i in range(6, 20)}}
    SessionStore(folder).save(ws, model, token_string=lambda i: vocab[i])
    return folder
