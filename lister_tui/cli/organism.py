"""`lister-tui organism build | card`: lister-tiny, the project's own model organism."""

from __future__ import annotations

from pathlib import Path

import typer

from lister_tui.cli.common import console, fail, organism_app
from lister_tui.core.errors import ListerError


@organism_app.command("build")
def organism_build(
    out: Path = typer.Option(None, help="Output folder (default: the package's shipped lister_tiny folder)."),
    reduced: bool = typer.Option(False, help="A small, fast build of the same pipeline (for tests)."),
    seed: int = typer.Option(0, help="Seed of every random step."),
) -> None:
    """Train lister-tiny: corpus, tokenizer, model, SAEs, transcoders and card (about 10 minutes on 2 idle CPU cores)."""
    from dataclasses import replace

    from lister_tui.organism.build import BuildSettings, build_organism
    from lister_tui.organism.paths import SHIPPED_DIR

    settings = BuildSettings.reduced() if reduced else BuildSettings()
    settings = replace(settings, seed=seed)
    build_organism(out or SHIPPED_DIR, settings, log=console.print)


@organism_app.command("transcoders")
def organism_transcoders(
    folder: Path = typer.Option(None, help="A built organism folder (default: the package's shipped lister_tiny folder)."),
    reduced: bool = typer.Option(False, help="The reduced build's transcoder settings (for a --reduced build's folder)."),
    seed: int = typer.Option(0, help="The seed the folder was built with."),
) -> None:
    """Train only the transcoders of a built lister-tiny (what a full build's transcoder stage writes; minutes)."""
    from dataclasses import replace

    from lister_tui.organism.build import BuildSettings, build_transcoders
    from lister_tui.organism.paths import BUILD_RECORD, SHIPPED_DIR

    target = folder or SHIPPED_DIR
    if not (target / BUILD_RECORD).is_file():
        fail(ListerError(f"{target} holds no built organism ({BUILD_RECORD} is missing); give a folder `lister-tui organism build` wrote"))
    settings = replace(BuildSettings.reduced() if reduced else BuildSettings(), seed=seed)
    build_transcoders(target, settings, log=console.print)


@organism_app.command("card")
def organism_card() -> None:
    """Print the organism card ($LISTER_TINY_DIR's if set, else the shipped one)."""
    from lister_tui.organism.paths import CARD, weights_dir

    path = weights_dir() / CARD
    if not path.exists():
        fail(ListerError(f"no card at {path}; build the organism with `lister-tui organism build`"))
    from rich.markdown import Markdown

    console.print(Markdown(path.read_text()))
