"""What every `lister-tui` subcommand shares: the Typer app, the consoles, error printing, option parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.text import Text

from lister_tui.safe_text import text, visible

from lister_tui.core.errors import ListerError
from lister_tui.core.limits import MAX_THREADS

app = typer.Typer(
    name="lister-tui",
    help="Explore why a language model's lists end: tokens, the blank-vs-newline metric, SAE features, ablations.",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode=None,  # help texts are shown as written: brackets such as [ray] are text, never markup
)
organism_app = typer.Typer(help="Build or inspect lister-tiny, the project's own model organism.", no_args_is_help=True)
app.add_typer(organism_app, name="organism")

console = Console()
err_console = Console(stderr=True)


def _click_errors_as_text() -> None:
    """Click's own error lines repeat what was typed (an unknown option, an extra argument, a bad
    value); they are printed through the one rule too, so no escape typed or pasted reaches the terminal."""
    import click.exceptions
    from typer._click import exceptions as typer_click_exceptions

    for module in (typer_click_exceptions, click.exceptions):
        real = module.echo
        if getattr(real, "shows_text", False):
            continue

        def echo(message=None, *args, _real=real, **kwargs):
            return _real(visible(message, keep_newlines=True) if isinstance(message, str) else message, *args, **kwargs)

        echo.shows_text = True
        module.echo = echo


_click_errors_as_text()


def fail(exc: Exception) -> None:
    """Print ``exc``'s message (untrusted text: names and values from files or the user) and exit 2."""
    # soft_wrap: download commands in the message must stay copyable, one per line
    err_console.print(Text.assemble(("error: ", "bold red"), visible(exc, keep_newlines=True)), soft_wrap=True, highlight=False)
    raise typer.Exit(code=2)


def say(message: object, style: str = "", *, err: bool = False) -> None:
    """Print a line that holds untrusted text (a session's name, a folder, a model's name): never as markup,
    control characters shown as markers."""
    (err_console if err else console).print(text(message, style, keep_newlines=True), soft_wrap=True, highlight=False)


def split_values(values: Optional[list[str]]) -> list[str]:
    """Repeated options, each possibly comma-separated: ["a,b", "c"] -> ["a", "b", "c"]."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def refuse_given_but_empty(values: dict) -> None:
    """``--topic ""`` (or ``--template ""``, ``--sae ,``, or one empty value among others: ``--topic a
    --topic ''``, ``--topic 'a,'``) is a mistake, not a request for the default (every topic) nor
    something to drop silently: refuse it, with what would be valid."""
    from lister_tui.core.engine.prompts import TEMPLATES, TOPICS
    from lister_tui.core.errors import ListerError

    valid = {"sae": "the model's SAE ids, e.g. res_0", "template": ", ".join(TEMPLATES), "topic": ", ".join(TOPICS)}
    for name, hint in valid.items():
        given = values.get(name) or []  # not given: None or an empty list
        if given and not split_values(given):
            raise ListerError(f"--{name} was given but names no {name}; leave it out for the default, or give one of: {hint}")
        if any(not piece.strip() for value in given for piece in value.split(",")):
            shown = ", ".join(repr(v) for v in given)
            example = {"sae": "--sae res_0", "template": "--template short", "topic": "--topic 'Types of Cheese'"}[name]
            raise ListerError(f"--{name} holds an empty value ({shown:.200}); remove it, and give each {name} as text, e.g. {example}")


SESSIONS_DIR_OPTION = typer.Option(
    None, "--sessions-dir", help="Sessions folder (default: $LISTER_TUI_SESSIONS, else the checkout's sessions/; `lister-tui locate`).", show_default=False
)


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def resolve_target(target: str, sessions_dir: Optional[Path]) -> Path:
    from lister_tui.core.files.locations import sessions_dir as resolve_sessions_dir
    from lister_tui.core.sessions.catalog import resolve_session

    return resolve_session(target, resolve_sessions_dir(sessions_dir))


REGISTRY_OPTION = typer.Option(
    None, "--registry", help="A TOML registry file of your own models, SAE sites and templates (repeatable; see `lister-tui models`).", show_default=False
)
TEMPLATES_OPTION = typer.Option(
    None, "--templates", help="A TOML file of prompt templates: [templates.NAME] text = \"… {topic} …\", length = short|long|unspecified|neutral.", show_default=False
)
THREADS_OPTION = typer.Option(
    None,
    "--threads",
    help=f"CPU threads for torch (default: 1 for lister-tiny on CPU, whose matrices are too small to gain from more; torch's default otherwise; valid: 1..{MAX_THREADS}, 4 per core).",
    show_default=False,
)


def use_user_files(registry: Optional[list[Path]], templates: Optional[list[Path]], strict: bool = True) -> None:
    """Apply --registry and --templates (before any entry is looked up). A --registry file's templates
    are usable with every model; with ``strict`` off a broken file is left to be reported per entry."""
    from lister_tui.core.engine.prompts import register_templates
    from lister_tui.core.engine.registry import use_registry_files
    from lister_tui.core.engine.registry_file import parse_templates, read_templates_file, read_toml

    from lister_tui.core.files.atomic import check_path_name

    for path in [*(registry or []), *(templates or [])]:
        check_path_name(Path(path), "--registry or --templates file")
    use_registry_files(registry or [])
    for path in registry or []:
        try:
            register_templates(parse_templates(read_toml(Path(path)), Path(path)), ("--registry", str(Path(path).resolve())))
        except ListerError:
            if strict:
                raise
    for path in templates or []:
        register_templates(read_templates_file(Path(path)), ("--templates", str(Path(path).resolve())))


def _is_folder(value: str) -> bool:
    """Whether ``value`` names a folder (a name no file can have, too long or with a NUL, is not one)."""
    try:
        return Path(value).expanduser().is_dir()
    except (OSError, ValueError):
        return False


def entry_with_adhoc_saes(model: str, values: list[str]):
    """The entry ``model`` with the ad-hoc sites among ``values`` added (registered for this run),
    and the SAE ids ``values`` name. A value is a site id, ``RELEASE:SAE_ID`` or a SAELens folder,
    optionally ``ID=`` in front."""
    from lister_tui.core.engine.registry import get_entry, register_entry
    from lister_tui.core.engine.registry_file import adhoc_site

    entry = get_entry(model)
    known = {s.id for s in entry.sites}
    extra, ids = [], []
    for value in values:
        if value in known:
            ids.append(value)
            continue
        if ":" not in value and not _is_folder(value.partition("=")[2] or value):
            entry.site(value)  # "unknown SAE 'x' for model …; valid: …" (and how to add one)
        site = adhoc_site(value, taken=known | {s.id for s in extra})
        extra.append(site)
        ids.append(site.id)
    if extra:
        from dataclasses import replace

        specs = {site.id: site.source_text for site in extra}  # what --sae ID=… repeats this run with
        entry = replace(
            entry.with_sites(tuple(extra)), origin=f"{entry.origin} + ad hoc --sae",
            extra={**entry.extra, "adhoc": {**entry.extra.get("adhoc", {}), **specs}, "base_origin": entry.origin},
        )  # fmt: skip
        register_entry(entry)
    return entry, ids
