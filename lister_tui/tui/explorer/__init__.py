"""The main screen's machinery, apart from its layout.

- :mod:`.state`: what the explorer is showing (the selected sample, compare, live, the
  features table's mode) as plain data;
- :mod:`.controller`: :class:`~.controller.ExplorerController`, which owns the
  workspace's changes, the workers and every state transition, and posts
  :class:`~lister_tui.tui.messages.ExplorerChanged` naming the parts to redraw;
- :mod:`.views`: pure functions that turn the workspace and the state into what each
  pane renders (token documents, status text, feature rows).

The panes (:mod:`lister_tui.tui.panes`) only render what they are given and post what
the user asked for; :class:`~lister_tui.tui.screens.main.MainScreen` wires the three.
"""
