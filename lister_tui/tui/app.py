"""The explorer app: holds the loaded model and the Workspace, shows the main screen.

With a session (``session=SessionStore``) every change is saved in a worker thread
(:mod:`lister_tui.tui.autosave`); save-as, open and export are modal screens
(:mod:`lister_tui.tui.screens.sessions`). Themes come from TOML files
(:mod:`lister_tui.tui.themes`); with ``persist=True`` the chosen theme and the recent
sessions are kept in the user's settings file.

Long because every app-wide concern meets here (model, workspace, autosave, sessions, themes,
notifications, screenshots), each as one short method.
"""

from __future__ import annotations

from pathlib import Path

from textual import events, on, work
from textual.app import App
from textual.theme import Theme

from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.engine.prompts import TEMPLATES, TOPICS
from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.workspace import Workspace
from lister_tui.safe_text import visible
from lister_tui.tui.autosave import CHECK_INTERVAL_S, Autosaver
from lister_tui.tui.commands import ExplorerCommands
from lister_tui.tui.keymap import APP_KEYS, bindings
from lister_tui.tui.messages import ExportDone, SessionOpened, SessionSaved, SessionSaveFailed, TaskFailed
from lister_tui.tui.screens.generate import GenerateRequest, entry_first_request
from lister_tui.tui.screens.help import HelpScreen
from lister_tui.tui.screens.main import MainScreen
from lister_tui.tui.theme import LISTER_THEME
from lister_tui.tui.themes import DEFAULT_THEME, load_themes
from lister_tui.tui.widgets.message_line import MESSAGES_KEPT, Message

# What the explorer generates when it opens: every template, four topics, two seeds each.
DEFAULT_REQUEST = GenerateRequest(tuple(TEMPLATES), TOPICS[:4], 2, 0, "code")


class ListerApp(App):
    """lister-tui: why a language model's lists end."""

    TITLE = "lister-tui"
    BINDINGS = bindings(APP_KEYS)
    COMMANDS = App.COMMANDS | {ExplorerCommands}

    def __init__(
        self,
        lab: LoadedModel,
        *,
        initial: GenerateRequest | None = DEFAULT_REQUEST,
        workspace: Workspace | None = None,
        keymap: dict[str, str] | None = None,
        session=None,
        sessions_dir: Path | None = None,
        banner: str | None = None,
        notice: str | None = None,
        session_name: str | None = None,
        persist: bool = False,
        theme_dirs: list[Path] | None = None,
    ) -> None:
        super().__init__()
        self.lab = lab
        self.workspace = workspace or Workspace(lab.entry.name)
        self.initial = entry_first_request(lab.entry) if initial is DEFAULT_REQUEST and lab.entry.templates else initial
        self.keymap_overrides = dict(keymap or {})
        self.sessions_dir = Path(sessions_dir) if sessions_dir is not None else None
        self.banner = banner
        self.notice = notice
        self.session_name = session_name or (session.name if session is not None else None)
        self.persist = persist
        self.theme_dirs = theme_dirs
        self.autosaver = Autosaver(self, session)
        # the attribution graphs computed this session, so reopening the graph view does not recompute
        from lister_tui.tui.screens.graph import GraphCache

        self.graph_cache = GraphCache()
        # an opened session is saved as it is on disk: only changes need a save
        self.autosaver.saved_revision = self.workspace.revision if workspace is not None else None
        self._model_info = None
        self.settings = None
        self.theme_problems: list = []
        self.messages: list[Message] = []  # every notification, oldest first (key M)

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None, markup: bool = False) -> None:
        """Every notification of the explorer (screens' and widgets' ``notify`` come here): its text holds
        names, paths and errors from files or the user, so it is shown as text, with control characters
        as markers, never as markup (``markup`` is accepted and ignored)."""
        text, heading = visible(message, keep_newlines=True), visible(title)
        self.messages.append(Message.now(severity, heading, text))
        del self.messages[:-MESSAGES_KEPT]
        line = getattr(self.screen_stack[-1], "message_line", None) if self.screen_stack else None
        if line is not None:  # the main screen: one line under the panes, never a toast over the tables
            line.say(f"{heading}: {text}" if heading else text, severity, timeout)
        else:  # a modal screen (card, circuit, dialogs) has no message line: a toast
            super().notify(text, title=heading, severity=severity, timeout=timeout, markup=False)

    def clear_notifications(self) -> None:
        super().clear_notifications()
        for screen in self.screen_stack:
            line = getattr(screen, "message_line", None)
            if line is not None:
                line.clear()

    def action_messages(self) -> None:
        from lister_tui.tui.screens.messages import MessagesScreen

        self.push_screen(MessagesScreen(list(self.messages)))

    # --- start --------------------------------------------------------------------

    def on_mount(self) -> None:
        self._register_file_themes()
        if DEFAULT_THEME not in self.available_themes:  # the bundled file is missing or bad
            self.register_theme(LISTER_THEME)
        if self.persist:
            from lister_tui.core.files.user_settings import UserSettings

            self.settings = UserSettings.load()
            if self.settings.problem:
                self.notify(self.settings.problem, severity="warning", timeout=8)
            wanted = self.settings.theme or DEFAULT_THEME
        else:
            wanted = DEFAULT_THEME  # tests and scripts: the default theme, nothing persisted
        self.theme = self._available(wanted)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        if self.keymap_overrides:
            self.set_keymap(self.keymap_overrides)
        self.push_screen(MainScreen(self.initial))
        self.set_interval(CHECK_INTERVAL_S, self.autosaver.check)
        if self.notice:
            self.notify(self.notice, timeout=8)
        if self.settings is not None and self.session is not None and (self.session.path / "manifest.json").exists():
            self._remember(self.session.path)

    def _register_file_themes(self) -> None:
        themes, problems = load_themes(self.theme_dirs)
        for theme in themes.values():
            self.register_theme(theme)
        self.theme_problems = problems
        for problem in problems:
            self.notify(f"{problem}; it is skipped (using {DEFAULT_THEME} instead if it was chosen)", title="bad theme file", severity="warning", timeout=10)

    def _available(self, name: str) -> str:
        if name in self.available_themes:
            return name
        if DEFAULT_THEME in self.available_themes:
            if name != DEFAULT_THEME:
                self.notify(f"theme {name!r} is not available; using {DEFAULT_THEME}", severity="warning", timeout=6)
            return DEFAULT_THEME
        return LISTER_THEME.name

    def _theme_changed(self, theme: Theme) -> None:
        from lister_tui.tui.widgets import MetricStrip, TokenView

        for screen in self.screen_stack:
            for view in screen.query(TokenView):
                view.restyle()
            for strip in screen.query(MetricStrip):
                strip.refresh()
        if self.settings is not None and self.settings.theme != theme.name:
            self.settings.theme = theme.name
            self._save_settings()

    def _save_settings(self) -> None:
        try:
            self.settings.save()
        except OSError as exc:
            self.notify(f"cannot write {self.settings.path} ({exc.strerror or exc}); settings are not kept", severity="warning")

    def _remember(self, folder: Path) -> None:
        if self.settings is not None:
            self.settings.add_recent(folder)
            self._save_settings()

    # --- state ----------------------------------------------------------------------

    @property
    def main(self) -> MainScreen:
        return next(s for s in self.screen_stack if isinstance(s, MainScreen))

    @property
    def session(self):
        return self.autosaver.store

    @property
    def can_compute(self) -> bool:
        """False for a read-only session whose model is not here."""
        return getattr(self.lab, "model", None) is not None

    def session_status(self) -> str:
        """For the status bar: the session's name and save state ("" without a session)."""
        name = self.session.name if self.session is not None else self.session_name
        if name is None:
            return ""
        if self.session is None:
            return f"session {name} (read-only)"
        if self.autosaver.failed:
            return f"session {name}: NOT SAVED"
        if self.autosaver.saving:
            return f"session {name} saving…"
        return f"session {name}" + (" ✓" if self.autosaver.saved_revision == self.workspace.revision else "")

    def model_info(self):
        if self._model_info is None:
            from lister_tui.core.sessions.opening import model_info

            offline_info = getattr(self.lab, "info", None)  # an OfflineModel knows what its session recorded
            self._model_info = offline_info if offline_info is not None else model_info(self.lab)
        return self._model_info

    def _token_text(self):
        tok = self.lab.tokenizer
        return tok.decode, (lambda i: tok.decode([i]))

    def save_workspace(self, store, ws) -> dict:
        """Write ``ws`` to ``store`` (called from a worker thread)."""
        decode, token_string = self._token_text()
        return store.save(ws, self.model_info(), decode=decode, token_string=token_string)

    # --- messages -----------------------------------------------------------------------

    def on_session_saved(self, message: SessionSaved) -> None:
        first = self.autosaver.saves == 0
        self.autosaver.on_saved(message)
        if first:
            self._remember(Path(message.path))
        self._refresh_status()

    def on_session_save_failed(self, message: SessionSaveFailed) -> None:
        self.autosaver.on_failed(message)
        if message.conflict:
            self.set_banner(f"NOT SAVED: {message.error}")
        self.notify(f"{message.error}. Autosave is off for this session; save as (ctrl+s) to keep your work.", title="session not saved", severity="error", timeout=15)
        self._refresh_status()

    def set_banner(self, text: str | None) -> None:
        self.banner = text
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                screen.refresh_banner()

    def _refresh_status(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                screen.refresh_status()

    # --- actions --------------------------------------------------------------------------

    def action_circuit(self) -> None:
        """The current sample's circuit (key C on the main screen; bound as app.circuit)."""
        self.main.controller.open_circuit()

    def action_graph(self) -> None:
        """The current sample's attribution graph (key G on the main screen; bound as app.graph)."""
        self.main.controller.open_graph()

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None, time_format: str | None = None) -> str | None:
        """Textual's screenshot (palette: "Screenshot"), saved beside the work: in the session's
        folder, else the current directory (Textual's default, ~/Downloads, often does not exist)."""
        if path is None:
            folder = self.session.path if self.session is not None else Path.cwd()
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError:
                folder = Path.cwd()
            path = str(folder)
        return super().deliver_screenshot(filename, path, time_format)

    @on(events.DeliveryComplete)
    def _screenshot_saved(self, event: events.DeliveryComplete) -> None:  # Textual's says it in markup
        if event.name == "screenshot":
            event.prevent_default()
            self.notify(f"saved screenshot to {event.path}" if event.path is not None else "saved screenshot", title="Screenshot")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.keymap_overrides))

    async def action_quit(self) -> None:
        self.autosaver.save_blocking()
        self.exit()

    def _sessions_dir(self) -> Path:
        if self.sessions_dir is None:
            from lister_tui.core.files.locations import sessions_dir

            self.sessions_dir = sessions_dir()
        return self.sessions_dir

    def action_save_now(self) -> None:
        if self.session is None:
            self.action_save_as()
            return
        if self.autosaver.failed:
            self.notify("autosave failed for this session; save as (ctrl+s) instead", severity="error")
            return
        if not self.autosaver.dirty():
            self.notify(f"session {self.session.name} is saved", timeout=2)
            return
        self.autosaver.check()

    def action_save_as(self) -> None:
        from lister_tui.core.sessions.store import SessionStore, default_name
        from lister_tui.tui.screens.sessions import SaveAsScreen

        folder = self._sessions_dir()

        def chosen(name: str | None) -> None:
            if name is None:
                return
            try:
                store = SessionStore.new(folder, name)
            except ListerError as exc:
                self.notify(str(exc), severity="error")
                return
            self.autosaver.reset(store, None)
            self.session_name = name
            if self.banner and (self.banner.startswith("NOT SAVED") or "save as" in self.banner):
                self.set_banner(None)
            self.notify(f"saving as {store.path}", timeout=3)
            self.autosaver.check()
            self._refresh_status()

        self.push_screen(SaveAsScreen(default_name(self.lab.entry.name), folder), chosen)

    def action_open_session(self) -> None:
        from lister_tui.tui.screens.sessions import OpenSessionScreen, infos_for

        recent = self.settings.recent if self.settings is not None else []
        infos = infos_for(recent, self._sessions_dir())
        current = self.session.path if self.session is not None else None

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.autosaver.save_blocking()
                self.notify(f"opening {path}…", timeout=3)
                self.open_worker(path)

        self.push_screen(OpenSessionScreen(infos, current), chosen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="open", description="Opening a session")
    def open_worker(self, path: Path) -> None:
        from lister_tui.core.sessions.opening import is_sweep, open_sweep, view_session
        from lister_tui.core.sessions.store import read_session

        try:
            loaded = self.lab if self.can_compute else None
            if is_sweep(path):
                if loaded is None:
                    raise ListerError("opening a sweep samples its lists again, which needs the model; run `lister-tui open` on it")
                opened = open_sweep(path, loaded, self._sessions_dir())
            else:
                opened = read_session(path)
            if loaded is not None and opened.model.name != loaded.entry.name:
                loaded = None  # load the session's own model (or open it read-only)
            view = view_session(opened, loaded)
        except Exception as exc:
            self.post_message(TaskFailed.of("open", exc))
            return
        self.post_message(SessionOpened(view))

    def on_session_opened(self, message: SessionOpened) -> None:
        view = message.view
        self.lab = view.lab
        self._model_info = None
        self.workspace = view.opened.workspace
        self.autosaver.reset(view.store, self.workspace.revision)
        self.session_name = view.opened.name
        self.banner = view.banner
        self._remember(view.opened.path)
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.push_screen(MainScreen(None))
        if view.notice:
            self.notify(view.notice, timeout=8)
        self.notify(f"opened {view.opened.name}: {len(self.workspace.samples)} samples", timeout=3)

    def on_task_failed(self, message: TaskFailed) -> None:
        # failures of the app's own workers (open, export); the main screen handles its own
        if message.task not in ("open", "export"):
            return
        self.notify(message.error, title=f"{message.task} failed", severity="error", timeout=10)

    def action_export(self) -> None:
        from lister_tui.tui.screens.sessions import ExportScreen

        if self.session is not None:
            folder = self.session.path / "exports"
        else:
            folder = Path.cwd() / "exports" / (self.session_name or self.lab.entry.name)

        def chosen(request) -> None:
            if request is not None:
                self.export_worker(request.fmt, request.folder)

        self.push_screen(ExportScreen(folder), chosen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="export", description="Exporting tables")
    def export_worker(self, fmt: str, folder: Path) -> None:
        from lister_tui.core.sessions.export import session_export, write_exports
        from lister_tui.core.sessions.store import snapshot

        try:
            decode, token_string = self._token_text()
            # the same tables as `lister-tui export` (a session opened from a sweep adds the sweep's)
            manifest = self.session.extra if self.session is not None else None
            tables = session_export(snapshot(self.workspace), manifest, decode, token_string)
            files = write_exports(tables, folder, fmt)
        except Exception as exc:
            self.post_message(TaskFailed.of("export", exc))
            return
        self.post_message(ExportDone(str(folder), [str(f) for f in files]))

    def on_export_done(self, message: ExportDone) -> None:
        self.notify(f"{len(message.files)} tables written to {message.folder}", title="exported", timeout=6)
