"""Autosave: the workspace is written to its session after each change, off the UI thread.

Every change to the :class:`Workspace` bumps its ``revision``. A timer compares it with
the last revision saved; when it differs (and no save is running) a snapshot of the
workspace is taken on the UI thread (a shallow copy: the records are immutable) and a
thread worker writes it (:meth:`SessionStore.save`). Changes made while a save runs
are coalesced into the next one, so a burst of toggles costs one or two saves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.store import SessionConflict, SessionStore, snapshot
from lister_tui.tui.messages import SessionSaved, SessionSaveFailed

if TYPE_CHECKING:
    from lister_tui.tui.app import ListerApp

CHECK_INTERVAL_S = 0.5


class Autosaver:
    def __init__(self, app: "ListerApp", store: SessionStore | None) -> None:
        self.app = app
        self.store = store
        self.saved_revision: int | None = None  # workspace revision last saved
        self.saving = False
        self.failed: str | None = None
        self.saves = 0

    @property
    def active(self) -> bool:
        return self.store is not None and self.failed is None

    def reset(self, store: SessionStore | None, saved_revision: int | None) -> None:
        self.store = store
        self.saved_revision = saved_revision
        self.failed = None

    def dirty(self) -> bool:
        ws = self.app.workspace
        if ws.revision == self.saved_revision:
            return False
        # an empty new session is not worth a folder
        return bool(ws.samples) or (self.store is not None and self.store.revision is not None)

    def check(self) -> None:
        if self.active and not self.saving and self.dirty():
            self.start()

    def start(self) -> None:
        ws = snapshot(self.app.workspace)
        self.saving = True
        store = self.store
        self.app.run_worker(
            lambda: self._save(store, ws), thread=True, group="autosave", exit_on_error=False, description="Saving the session"
        )

    def _save(self, store: SessionStore, ws) -> None:
        try:
            manifest = self.app.save_workspace(store, ws)
        except SessionConflict as exc:
            self.app.post_message(SessionSaveFailed(str(store.path), str(exc), True))
            return
        except (ListerError, OSError) as exc:
            self.app.post_message(SessionSaveFailed(str(store.path), str(exc), False))
            return
        except Exception as exc:  # never a traceback on screen
            self.app.post_message(SessionSaveFailed(str(store.path), f"{type(exc).__name__}: {exc}", False))
            return
        self.app.post_message(SessionSaved(str(store.path), int(manifest["revision"]), ws.revision))

    def on_saved(self, message: SessionSaved) -> None:
        self.saving = False
        self.saves += 1
        if self.store is not None and str(self.store.path) == message.path:
            self.saved_revision = message.workspace_revision

    def on_failed(self, message: SessionSaveFailed) -> None:
        self.saving = False
        if self.store is not None and str(self.store.path) == message.path:
            self.failed = message.error

    def save_blocking(self) -> None:
        """Save now on this thread (at exit), if anything changed since the last save."""
        if self.active and self.dirty():
            try:
                self.app.save_workspace(self.store, snapshot(self.app.workspace))
                self.saved_revision = self.app.workspace.revision
            except (ListerError, OSError):
                pass
