"""`lister-tui models`: the registry's entries (built-in and the user's), their sites, and what is here."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lister_tui.cli.common import REGISTRY_OPTION, app, console, err_console, fail, human_size, use_user_files
from lister_tui.core.errors import ListerError


def plain(text: str) -> str:
    """Text from a user's file as it is: control characters shown as escapes, never interpreted."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def sites_summary(entry) -> str:
    """"res 0,5,10 · attn 2,7" (layers per kind, in the entry's order)."""
    by_kind: dict[str, list[str]] = {}
    for s in entry.sites:
        by_kind.setdefault(s.kind, []).append(str(s.layer))
    return " · ".join(f"{kind} {','.join(layers)}" for kind, layers in by_kind.items()) or "no SAEs"


def transcoders_summary(entry) -> str:
    """" · tc 0-25" when the entry names a transcoder set (its first set's layers)."""
    from lister_tui.core.engine.transcoders import transcoder_sets

    sets = transcoder_sets(entry)
    if not sets or not sets[0].layers:
        return ""
    layers = sets[0].layers
    return f" · tc {layers[0]}-{layers[-1]}" if len(layers) > 1 else f" · tc {layers[0]}"


def _status(entry) -> tuple[str, str]:
    from lister_tui.core.engine.pretrained import cached_size, missing_pretrained_files

    try:
        missing = missing_pretrained_files(entry)
        size = cached_size(entry)
    except ListerError:
        return "?", ""
    state = "yes" if not missing else ("part" if size is not None else "no")
    return state, "" if size is None else human_size(size)


@app.command("models")
def models_command(
    name: Optional[str] = typer.Argument(None, help="One entry to show in full: its sites, what it needs and the download commands.", show_default=False),
    registry: Optional[list[Path]] = REGISTRY_OPTION,
) -> None:
    """List the models lister-tui can load: built-in entries and your own (TOML in `lister-tui locate config`
    as registry.toml or models/*.toml, or --registry FILE); whether their weights are here, and their size."""
    from lister_tui.core.engine.builtins import BUILTINS
    from lister_tui.core.engine.registry import get_entry, user_entries
    from lister_tui.core.engine.registry_file import registry_files

    try:
        use_user_files(registry, None, strict=False)
        if name is not None:
            _show_entry(get_entry(name))
            return
    except ListerError as exc:
        fail(exc)
    entries = [BUILTINS[n]() for n in BUILTINS]
    users, problems = user_entries()
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("entry", no_wrap=True, max_width=24)
    table.add_column("here", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("SAE sites", max_width=36)
    for entry in entries + users:
        state, size = _status(entry)
        label = Text(entry.name) if entry.origin == "built-in" else Text(entry.name + " *")
        table.add_row(label, state, size, Text(sites_summary(entry) + transcoders_summary(entry)))
    console.print(table, width=min(console.width, 80))
    console.print(
        Text("here: weights and SAEs in the local Hugging Face cache (yes / part / no); * your entry. "
             "`lister-tui models NAME` shows one entry and its download commands.", style="dim"),  # fmt: skip
        width=min(console.width, 80),
    )
    if users:
        console.print(Text("your registry files: " + ", ".join(str(p) for p in registry_files()), style="dim"), width=min(console.width, 80))
    for problem in problems:
        err_console.print(f"[bold red]registry error:[/] {escape(plain(problem))}", highlight=False, soft_wrap=True)


def _show_entry(entry) -> None:
    from lister_tui.core.engine.pretrained import LEGACY_HINT, missing_pretrained_files

    state, size = _status(entry)
    lines = [
        ("entry", entry.name),
        ("from", entry.origin),
        ("about", entry.description),
        ("model", str(entry.weights_dir) if entry.source == "shipped" else f"{entry.tl_name}" + (f" (weights: {entry.hf_folder})" if entry.hf_folder else "")),
        ("dtype", entry.default_dtype),
        ("chat", "the tokenizer's chat template" if entry.use_tokenizer_chat_template else f"{entry.chat_prefix!r} … {entry.chat_suffix!r}"),
        ("list marker", repr(entry.item_marker)),
        ("metric", f"logit({entry.blank_token!r}) - logit({entry.newline_token!r})"),
        ("stops", ", ".join(map(repr, entry.stop_tokens))),
        ("needs", entry.needs or "—"),
        ("here", f"{state} {size}".strip()),
    ]
    for key, value in lines:
        console.print(Text.assemble((f"{key:>12}  ", "bold"), plain(value)), soft_wrap=True)
    for t in entry.templates:
        console.print(Text.assemble(("    template  ", "bold"), plain(f"{t.name} ({t.length}): {t.text}")), soft_wrap=True)
    for s in entry.sites:
        console.print(Text.assemble((f"{s.id:>12}  ", "bold"), plain(f"{s.hook_name}  {s.source_text}")), soft_wrap=True)
    _show_transcoders(entry)
    missing = missing_pretrained_files(entry)
    if missing:
        console.print(Text("missing; download on a machine with access:", style="bold"))
        for line in missing:
            console.print(Text(plain(line.strip())), soft_wrap=True)  # one command per line, never wrapped
        console.print(Text(LEGACY_HINT, style="dim"), soft_wrap=True)


def _show_transcoders(entry) -> None:
    """Each transcoder set: its layers, where its weights are, whether they are here and how to get them."""
    from lister_tui.core.engine.transcoders import download_lines, set_present, transcoder_sets

    for tset in transcoder_sets(entry):
        layers = f"layers {tset.layers[0]}-{tset.layers[-1]}" if tset.layers else "no layers"
        try:
            here = "here" if set_present(entry, tset) else "not here"
            lines = download_lines(entry, tset) if tset.release is not None else []
        except ListerError as exc:
            here, lines = f"unusable ({exc})", []
        console.print(
            Text.assemble(("transcoders  ", "bold"), plain(f"{tset.id}: {layers}, {tset.hook_in} -> {tset.hook_out}, {tset.source_text}; {here}")),
            soft_wrap=True,
        )
        if tset.description:
            console.print(Text.assemble(("              ", "bold"), plain(tset.description)), soft_wrap=True)
        for line in lines:
            console.print(Text(plain(line.strip())), soft_wrap=True)  # one command per line, never wrapped
