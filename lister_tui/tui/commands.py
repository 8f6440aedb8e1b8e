"""The command palette's provider: every explorer action, by name, with its key."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from lister_tui.tui.keymap import APP_KEYS, MAIN_KEYS, KeySpec, key_label


class ExplorerCommands(Provider):
    """Offers the main screen's actions (and the app's) wherever the palette is opened."""

    def _specs(self) -> list[KeySpec]:
        return [s for s in APP_KEYS + MAIN_KEYS if s.palette]

    def _run(self, spec: KeySpec) -> None:
        from lister_tui.tui.screens.main import MainScreen

        target = next((s for s in reversed(self.app.screen_stack) if isinstance(s, MainScreen)), None)
        namespace = self.app if spec in APP_KEYS else target
        if namespace is None:
            return
        if self.app.screen is not target and namespace is target:
            self.app.pop_screen()  # run main-screen actions on the main screen
        self.app.call_later(self.app.run_action, spec.action, namespace)

    def _title(self, spec: KeySpec) -> str:
        return f"{spec.title} ({key_label(spec, getattr(self.app, 'keymap_overrides', None))})"

    async def discover(self) -> Hits:
        for spec in self._specs():
            yield DiscoveryHit(self._title(spec), partial(self._run, spec), help=spec.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for spec in self._specs():
            text = f"{self._title(spec)} {spec.help}"
            score = max(matcher.match(self._title(spec)), matcher.match(text) * 0.8)
            if score > 0:
                yield Hit(score, matcher.highlight(self._title(spec)), partial(self._run, spec), help=spec.help)
