"""The `lister-tui` command: opens the explorer, and holds the headless subcommands.

One module per subcommand family (:mod:`.explore`, :mod:`.serve`, :mod:`.sweep`, :mod:`.sessions`, :mod:`.features`,
:mod:`.organism`, :mod:`.circuit`); the Typer app, the consoles and the error printing they share are in
:mod:`.common`. Importing this package registers every subcommand on :data:`app`.
"""

from __future__ import annotations

import sys

# Importing each family registers its subcommands, in the order `--help` lists them.
from lister_tui.cli import organism, sweep, explore, serve, sessions, features, models, circuit, graph  # noqa: F401, I001
from lister_tui.cli.common import app, err_console
from lister_tui.cli.sweep import bare_ray

__all__ = ["app", "main"]


def main() -> None:
    try:
        app(args=bare_ray(sys.argv[1:]))
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
