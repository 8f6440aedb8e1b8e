"""Modal screens for sessions: save as, open (recent first), export, notes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Select, Static, TextArea

from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.catalog import SessionInfo, session_info
from lister_tui.core.sessions.export import FORMATS
from lister_tui.core.sessions.store import check_name
from lister_tui.safe_text import is_safe, text, visible

_MODAL_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 84; max-width: 100%; height: auto; max-height: 90%; border: thick $primary; background: $panel; padding: 0 1; }}
{name} Label {{ text-style: bold; }}
{name} #buttons {{ height: 1; margin-top: 1; }}
{name} #buttons Button {{ margin-right: 2; }}
{name} Input {{ width: 100%; }}
"""


def _size(n: int) -> str:
    return f"{n / 1024:.0f} KB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MB"


class SaveAsScreen(ModalScreen[str | None]):
    """Ask for a session name; returns it (validated), or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="lister.save_as.cancel")]
    DEFAULT_CSS = _MODAL_CSS.format(name="SaveAsScreen")

    def __init__(self, suggestion: str, folder: Path) -> None:
        super().__init__()
        self.suggestion = suggestion
        self.folder = folder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(text(f"Save the exploration as a new session in {self.folder}  ·  enter saves · esc cancels"))
            yield Input(self.suggestion, id="name", compact=True)
            with Horizontal(id="buttons"):
                yield Button("Save", variant="primary", id="save", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _submit(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        try:
            check_name(name)
        except ListerError as exc:
            self.notify(str(exc), severity="error")
            return
        if (self.folder / name / "manifest.json").exists():
            self.notify(f"a session called {name!r} exists already; choose another name", severity="error")
            return
        self.dismiss(name)

    def on_input_submitted(self) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self._submit()
        else:
            self.dismiss(None)


class OpenSessionScreen(ModalScreen[Path | None]):
    """Sessions (recently opened first, then the sessions folder by date); enter opens one.

    A path typed in the box (a session or a sweep's folder) opens too."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="lister.open.cancel")]
    DEFAULT_CSS = _MODAL_CSS.format(name="OpenSessionScreen") + """
    OpenSessionScreen DataTable { height: auto; max-height: 20; }
    """

    def __init__(self, infos: list[SessionInfo], current: Path | None = None) -> None:
        super().__init__()
        self.infos = infos
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Open a session  ·  enter opens · esc cancels")
            table = DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
            yield table
            yield Input(placeholder="or a folder: a session, or a sweep's output", id="path", compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#sessions", DataTable)
        table.add_columns("name", "updated", "model", "samples", "runs", "size", "")
        for i, info in enumerate(self.infos):
            mark = "current" if self.current is not None and info.path.resolve() == self.current.resolve() else (info.kind if info.kind != "session" else "")
            if info.problem:
                mark = "unreadable"
            cells = (
                info.name,
                (info.updated or "")[:16].replace("T", " "),
                info.model or "?",
                "" if info.samples is None else str(info.samples),
                "" if info.runs is None else str(info.runs),
                _size(info.size_bytes),
                mark,
            )
            # Text cells: a plain string in a DataTable is parsed as markup
            table.add_row(*(text(c) for c in cells), key=str(i))
        if self.infos:
            table.focus()
        else:
            self.query_one("#path", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        info = self.infos[int(event.row_key.value)]
        if info.problem:
            self.notify(info.problem, title=f"cannot open {info.name}", severity="error", timeout=8)
            return
        self.dismiss(info.path)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        path = Path(event.value.strip()).expanduser()
        if not path.is_dir():
            self.notify(f"no folder {path}", severity="error")
            return
        self.dismiss(path)


@dataclass(frozen=True)
class ExportRequest:
    fmt: str
    folder: Path


class ExportScreen(ModalScreen[ExportRequest | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="lister.export.cancel")]
    DEFAULT_CSS = _MODAL_CSS.format(name="ExportScreen")

    def __init__(self, folder: Path, fmt: str = "csv") -> None:
        super().__init__()
        self.folder = folder
        self.fmt = fmt
        # a session opened by path may live in a folder whose name holds control characters:
        # the box shows their markers, and the folder itself is used when the box is left as shown
        self.shown = visible(str(folder))

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Export tables: generations, attributions, ablations (with deltas), per-SAE summary")
            yield Select([(f, f) for f in FORMATS], value=self.fmt, allow_blank=False, id="format", compact=True)
            yield Label("folder")
            yield Input(self.shown, id="folder", compact=True)
            with Horizontal(id="buttons"):
                yield Button("Export", variant="primary", id="go", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _submit(self) -> None:
        folder = self.query_one("#folder", Input).value.strip()
        if not folder:
            self.notify("give a folder to export to", severity="error")
            return
        path = self.folder if folder == self.shown.strip() else Path(folder).expanduser()
        self.dismiss(ExportRequest(str(self.query_one("#format", Select).value), path))

    def on_input_submitted(self) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "go":
            self._submit()
        else:
            self.dismiss(None)


class NoteScreen(ModalScreen[str | None]):
    """Edit a note; ctrl+s keeps it, esc discards the edit.

    A note from a session made elsewhere may hold control characters, which a text editor would
    send to the terminal: they are shown as their markers (ESC as ␛), and a kept note keeps the
    markers; esc leaves the note as it was."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="lister.note.cancel"),
        Binding("ctrl+s", "keep", "Keep", id="lister.note.keep"),
    ]
    DEFAULT_CSS = _MODAL_CSS.format(name="NoteScreen") + """
    NoteScreen TextArea { height: 10; }
    """

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text = title
        self.marked = any(not is_safe(ch) for ch in text if ch != "\t")
        self.text = "".join(ch if ch in "\n\t" else visible(ch) for ch in text) if self.marked else text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(text(f"{self.title_text}  ·  ctrl+s keeps · esc cancels"))
            if self.marked:
                yield Static("control characters are shown as markers (␛ …); keeping the note keeps the markers", id="marked")
            yield TextArea(self.text, id="note", soft_wrap=True)
            with Horizontal(id="buttons"):
                yield Button("Keep", variant="primary", id="keep", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#note", TextArea).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_keep(self) -> None:
        self.dismiss(self.query_one("#note", TextArea).text)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "keep":
            self.action_keep()
        else:
            self.dismiss(None)


def infos_for(recent: list[str], sessions_dir: Path) -> list[SessionInfo]:
    """Recently opened sessions first (those that still exist), then the sessions folder's."""
    from lister_tui.core.sessions.catalog import list_sessions

    seen: set[Path] = set()
    out: list[SessionInfo] = []
    for r in recent:
        p = Path(r)
        if (p / "manifest.json").is_file() and p.resolve() not in seen:
            seen.add(p.resolve())
            out.append(session_info(p))
    for info in list_sessions(sessions_dir):
        if info.path.resolve() not in seen:
            seen.add(info.path.resolve())
            out.append(info)
    return out
