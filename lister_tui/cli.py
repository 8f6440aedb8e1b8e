"""The `lister-tui` command: opens the explorer, and holds the headless subcommands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from lister_tui.core.errors import ListerError

app = typer.Typer(
    name="lister-tui",
    help="Explore why a language model's lists end: tokens, the blank-vs-newline metric, SAE features, ablations.",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode="rich",
)
organism_app = typer.Typer(help="Build or inspect lister-tiny, the project's own model organism.", no_args_is_help=True)
app.add_typer(organism_app, name="organism")

console = Console()
err_console = Console(stderr=True)


def _fail(exc: Exception) -> None:
    # soft_wrap: download commands in the message must stay copyable, one per line
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=2)


@app.callback(invoke_without_command=True)
def main_callback(
    ctx: typer.Context,
    model: str = typer.Option("lister-tiny", "--model", "-m", help="Registry entry to load."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto."),
    dtype: Optional[str] = typer.Option(None, help="float32 or bfloat16 (default: the entry's)."),
) -> None:
    """Open the explorer on MODEL (default: the shipped lister-tiny)."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        from lister_tui.preview import show_preview

        show_preview(model, device=device, dtype=dtype, console=console)
    except ListerError as exc:
        _fail(exc)


@organism_app.command("build")
def organism_build(
    out: Path = typer.Option(None, help="Output folder (default: the package's shipped lister_tiny folder)."),
    reduced: bool = typer.Option(False, help="A small, fast build of the same pipeline (for tests)."),
    seed: int = typer.Option(0, help="Seed of every random step."),
) -> None:
    """Train lister-tiny: corpus, tokenizer, model, SAEs and card (about 10 minutes on 2 CPU cores)."""
    from dataclasses import replace

    from lister_tui.organism.build import BuildSettings, build_organism
    from lister_tui.organism.paths import SHIPPED_DIR

    settings = BuildSettings.reduced() if reduced else BuildSettings()
    settings = replace(settings, seed=seed)
    build_organism(out or SHIPPED_DIR, settings, log=console.print)


@organism_app.command("card")
def organism_card() -> None:
    """Print the shipped organism card."""
    from lister_tui.organism.paths import CARD, SHIPPED_DIR

    path = SHIPPED_DIR / CARD
    if not path.exists():
        _fail(ListerError(f"no card at {path}; build the organism with `lister-tui organism build`"))
    from rich.markdown import Markdown

    console.print(Markdown(path.read_text()))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
