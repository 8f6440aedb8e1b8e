"""`lister-tui organism build | card`: lister-tiny, the project's own model organism."""

from __future__ import annotations

from pathlib import Path

import typer

from lister_tui.cli.common import console, fail, organism_app, say
from lister_tui.core.errors import ListerError
from lister_tui.core.limits import MAX_BUILD_SEED
from lister_tui.safe_text import visible


@organism_app.command("build")
def organism_build(
    out: Path = typer.Option(None, help="Output folder (default: the package's shipped lister_tiny folder)."),
    reduced: bool = typer.Option(False, help="A small, fast build of the same pipeline (for tests)."),
    seed: int = typer.Option(0, help=f"Seed of every random step (valid: 0..{MAX_BUILD_SEED})."),
) -> None:
    """Train lister-tiny: corpus, tokenizer, model, SAEs, transcoders and card (about 10 minutes on 2 idle CPU cores)."""
    from dataclasses import replace

    from lister_tui.organism.build import BuildSettings, build_organism
    from lister_tui.organism.paths import SHIPPED_DIR

    try:
        if not 0 <= seed <= MAX_BUILD_SEED:  # each SAE trains with seed + its index; numpy takes seeds below 2^32
            raise ListerError(f"--seed must be in [0, {MAX_BUILD_SEED}], got {str(seed)[:40]}")
        if out is not None:
            from lister_tui.core.files.atomic import check_path_name

            check_path_name(out, "--out")
        settings = BuildSettings.reduced() if reduced else BuildSettings()
        settings = replace(settings, seed=seed)
        build_organism(out or SHIPPED_DIR, settings, log=say)
    except ListerError as exc:
        fail(exc)


@organism_app.command("transcoders")
def organism_transcoders(
    folder: Path = typer.Option(None, help="A built organism folder (default: the package's shipped lister_tiny folder)."),
    reduced: bool = typer.Option(False, help="The reduced build's transcoder settings (for a --reduced build's folder)."),
    seed: int = typer.Option(0, help=f"The seed the folder was built with (valid: 0..{MAX_BUILD_SEED})."),
) -> None:
    """Train only the transcoders of a built lister-tiny (what a full build's transcoder stage writes; minutes)."""
    from dataclasses import replace

    from lister_tui.organism.build import BuildSettings, build_transcoders
    from lister_tui.organism.paths import BUILD_RECORD, SHIPPED_DIR

    if not 0 <= seed <= MAX_BUILD_SEED:
        fail(ListerError(f"--seed must be in [0, {MAX_BUILD_SEED}], got {str(seed)[:40]}"))
    target = folder or SHIPPED_DIR
    if not (target / BUILD_RECORD).is_file():
        fail(ListerError(f"{target} holds no built organism ({BUILD_RECORD} is missing); give a folder `lister-tui organism build` wrote"))
    settings = replace(BuildSettings.reduced() if reduced else BuildSettings(), seed=seed)
    build_transcoders(target, settings, log=say)


@organism_app.command("card")
def organism_card() -> None:
    """Print the organism card ($LISTER_TINY_DIR's if set, else the shipped one)."""
    from lister_tui.organism.paths import CARD, weights_dir

    path = weights_dir() / CARD
    if not path.exists():
        fail(ListerError(f"no card at {path}; build the organism with `lister-tui organism build`"))
    from rich.markdown import Markdown

    console.print(Markdown(visible(path.read_text(encoding="utf-8", errors="replace"), keep_newlines=True)))
