"""`lister-tui organism build | card`: lister-tiny, the project's own model organism."""

from __future__ import annotations

from pathlib import Path

import typer

from lister_tui.cli.common import console, fail, organism_app
from lister_tui.core.errors import ListerError
from lister_tui.core.limits import MAX_BUILD_SEED


@organism_app.command("build")
def organism_build(
    out: Path = typer.Option(None, help="Output folder (default: the package's shipped lister_tiny folder)."),
    reduced: bool = typer.Option(False, help="A small, fast build of the same pipeline (for tests)."),
    seed: int = typer.Option(0, help=f"Seed of every random step (valid: 0..{MAX_BUILD_SEED})."),
) -> None:
    """Train lister-tiny: corpus, tokenizer, model, SAEs and card (about 10 minutes on 2 CPU cores)."""
    from dataclasses import replace

    from lister_tui.organism.build import BuildSettings, build_organism
    from lister_tui.organism.paths import SHIPPED_DIR

    if not 0 <= seed <= MAX_BUILD_SEED:  # each SAE trains with seed + its index; numpy takes seeds below 2^32
        fail(ListerError(f"--seed must be in [0, {MAX_BUILD_SEED}], got {str(seed)[:40]}"))
    settings = BuildSettings.reduced() if reduced else BuildSettings()
    settings = replace(settings, seed=seed)
    build_organism(out or SHIPPED_DIR, settings, log=console.print)


@organism_app.command("card")
def organism_card() -> None:
    """Print the organism card ($LISTER_TINY_DIR's if set, else the shipped one)."""
    from lister_tui.organism.paths import CARD, weights_dir

    path = weights_dir() / CARD
    if not path.exists():
        fail(ListerError(f"no card at {path}; build the organism with `lister-tui organism build`"))
    from rich.markdown import Markdown

    console.print(Markdown(path.read_text()))
