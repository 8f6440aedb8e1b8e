"""`lister-tui models`: the registry's entries (built-in and the user's), their sites, and what is here."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from lister_tui.cli.common import REGISTRY_OPTION, app, console, err_console, fail, human_size, use_user_files
from lister_tui.core.errors import ListerError
from lister_tui.safe_text import visible


def plain(text: str) -> str:
    """Text from a user's file as it is: control characters shown as markers (the one rule, safe_text), never interpreted."""
    return visible(text)


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
    """("yes" | "partial" | "no" | "?", size): the model's files whole (every shard, tokenizer, config) and every SAE here."""
    from lister_tui.core.engine.pretrained import cached_size, missing_pretrained_files, model_state

    try:
        state, _problems = model_state(entry)
        missing = missing_pretrained_files(entry)
        size = cached_size(entry)
    except ListerError:
        return "?", ""
    if state == "yes" and missing:
        state = "partial"  # the model is here, an SAE is not
    return state, "" if size is None else human_size(size)


@app.command("models")
def models_command(
    name: Optional[str] = typer.Argument(None, help="One entry to show in full: its sites, what it needs and the download commands.", show_default=False),
    registry: Optional[list[Path]] = REGISTRY_OPTION,
    check: bool = typer.Option(False, "--check", help="Load NAME's Hugging Face weights on the CPU and compare one probe forward with transformers' model from the same folder."),
    dtype: str = typer.Option("float32", "--dtype", help="The dtype of --check: float32 (the exact check), bfloat16 or float16."),
) -> None:
    """List the models lister-tui can load: built-in entries and your own (TOML in `lister-tui locate config`
    as registry.toml or models/*.toml, or --registry FILE); whether their weights are here, and their size."""
    from lister_tui.core.engine.builtins import BUILTINS
    from lister_tui.core.engine.registry import get_entry, user_entries
    from lister_tui.core.engine.registry_file import registry_files

    try:
        use_user_files(registry, None, strict=False)
        if check and name is None:
            raise ListerError("--check needs a model: lister-tui models NAME --check")
        if name is not None:
            entry = get_entry(name)
            _show_entry(entry)
            if check:
                _check(entry, dtype)
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
        label = Text(plain(entry.name)) if entry.origin == "built-in" else Text(plain(entry.name) + " *")
        table.add_row(label, Text(plain(state)), Text(plain(size)), Text(plain(sites_summary(entry) + transcoders_summary(entry))))
    console.print(table, width=min(console.width, 80))
    console.print(
        Text("here: model (every weights shard, tokenizer, config) and SAEs in the local Hugging Face cache or folder "
             "(yes / partial / no); * your entry. "
             "`lister-tui models NAME` shows one entry and its download commands.", style="dim"),  # fmt: skip
        width=min(console.width, 80),
    )
    if users:
        console.print(Text(plain("your registry files: " + ", ".join(str(p) for p in registry_files())), style="dim"), width=min(console.width, 80))
    for problem in problems:
        err_console.print(Text.assemble(("registry error: ", "bold red"), plain(problem)), highlight=False, soft_wrap=True)


def _show_entry(entry) -> None:
    from lister_tui.core.engine.pretrained import LEGACY_HINT, missing_pretrained_files

    state, size = _status(entry)
    lines = [
        ("entry", entry.name),
        ("from", entry.origin),
        ("about", entry.description),
        ("model", str(entry.weights_dir) if entry.source == "shipped" else (f"{entry.hf_folder} (architecture from its config.json)" if entry.hf_folder else f"{entry.hf_model_name} (the local Hugging Face cache)")),
        ("dtype", entry.default_dtype),
        ("chat", "the tokenizer's chat template" if entry.use_tokenizer_chat_template else f"{entry.chat_prefix!r} … {entry.chat_suffix!r}"),
        ("list marker", repr(entry.item_marker)),
        ("metric", f"logit({entry.blank_token!r}) - logit({entry.newline_token!r})"),
        ("stops", ", ".join(map(repr, entry.stop_tokens))),
        ("needs", entry.needs or "—"),
        ("here", f"{state} {size}".strip()),
    ]
    for key, value in lines:
        console.print(Text.assemble((plain(f"{key:>12}  "), "bold"), plain(value)), soft_wrap=True)
    for t in entry.templates:
        console.print(Text.assemble(("    template  ", "bold"), plain(f"{t.name} ({t.length}): {t.text}")), soft_wrap=True)
    for s in entry.sites:
        console.print(Text.assemble((plain(f"{s.id:>12}  "), "bold"), plain(f"{s.hook_name}  {s.source_text}")), soft_wrap=True)
    _show_transcoders(entry)
    from lister_tui.core.engine.pretrained import GATED_HINT, model_folder, model_state

    _state, problems = model_state(entry)
    for problem in problems:
        console.print(Text.assemble(("     missing  ", "bold"), plain(f"{model_folder(entry)}: {problem}")), soft_wrap=True)
    missing = missing_pretrained_files(entry)
    if missing:
        console.print(Text("missing; download on a machine with access:", style="bold"))
        for line in missing:
            console.print(Text(plain(line.strip())), soft_wrap=True)  # one command per line, never wrapped
        console.print(Text(plain(LEGACY_HINT), style="dim"), soft_wrap=True)
        console.print(Text(GATED_HINT, style="dim"), soft_wrap=True)


def _check(entry, dtype_name: str) -> None:
    """``--check``: the parity of the entry's Hugging Face weights with transformers, measured here (or cached)."""
    from lister_tui.core.engine.loading import DTYPES
    from lister_tui.core.engine.pretrained import load_pretrained

    if dtype_name not in DTYPES:
        raise ListerError(f"--dtype {dtype_name!r} is not one of {', '.join(DTYPES)}")
    if entry.source != "pretrained":
        console.print(Text("parity: shipped TransformerLens weights; there is no transformers model to compare with"))
        return
    _model, _tokenizer, parity = load_pretrained(entry, "cpu", DTYPES[dtype_name])
    del _model
    when = "measured before for these files" if parity.cached else "measured now"
    console.print(Text.assemble(("parity  ", "bold"), plain(f"ok: {parity.line()}; {when}")), soft_wrap=True)


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
