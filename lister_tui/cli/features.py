"""`lister-tui feature SITE FEATURE`: a feature's card in the terminal (and as JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from lister_tui.cli.common import SESSIONS_DIR_OPTION, app, console, err_console, fail, resolve_target, say
from lister_tui.core.errors import ListerError
from lister_tui.core.limits import MAX_CARD_CONTEXTS, MAX_D_SAE
from lister_tui.safe_text import text as visible_text


def _shipped_width(entry, sae_id: str) -> int | None:
    """The SAE's width from its shipped config, without loading anything (None when not shipped)."""
    if entry.source != "shipped" or entry.weights_dir is None:
        return None
    from lister_tui.core.engine.folder_checks import sae_config

    # an SAE's folder, or a transcoder's (tc_L: transcoders/mlp_L)
    folder = Path(entry.site(sae_id).path or Path(entry.weights_dir) / "saes" / sae_id)
    if not (folder / "cfg.json").is_file():
        return None  # the model's own loading says what is missing
    return int(sae_config(folder, f"fix or replace the files of {entry.weights_dir}")["d_sae"])


@app.command("feature")
def feature_command(
    site: str = typer.Argument(..., help="The SAE, e.g. res_0 or attn_2, or a layer's transcoder, e.g. tc_2 (`lister-tui organism card` lists lister-tiny's)."),
    feature: int = typer.Argument(..., help=f"The feature's index in that SAE (valid: 0..{MAX_D_SAE - 1})."),
    model: str = typer.Option("lister-tiny", "--model", "-m", help="Registry entry."),
    corpus: Optional[Path] = typer.Option(
        None, "--corpus", help="Text file (paragraphs) or JSONL with a 'text' field; default: lister-tiny's held-out text.", show_default=False
    ),
    session: Optional[str] = typer.Option(None, "--session", help="Add this session's lists to the corpus and show its label.", show_default=False),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the card as JSON to this file.", show_default=False),
    k: int = typer.Option(20, "--k", help=f"Top contexts to show (valid: 1..{MAX_CARD_CONTEXTS})."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute the corpus pass (the cache: `lister-tui locate cache`)."),
    sessions_dir: Optional[Path] = SESSIONS_DIR_OPTION,
) -> None:
    """Show what a feature is: its top contexts over a corpus, interval samples, density, histogram and logit effects."""
    from lister_tui.core.engine.registry import get_entry

    # every check a user can fail comes before the model loads and the corpus pass runs
    try:
        entry = get_entry(model)
        entry.site(site)
        width = _shipped_width(entry, site)
        if width is not None and not 0 <= feature < width:
            raise ListerError(f"feature {feature} is out of range for {site}; valid: 0..{width - 1}")
        if not 1 <= k <= MAX_CARD_CONTEXTS:
            raise ListerError(f"--k {k} is out of range; valid: 1..{MAX_CARD_CONTEXTS}")
        if feature < 0:
            raise ListerError(f"feature {feature} is out of range; valid: 0 up to the SAE's width - 1")
        if corpus is not None:
            from lister_tui.core.files.atomic import check_path_name

            check_path_name(corpus, "--corpus")
        if corpus is not None and not corpus.is_file():
            raise ListerError(f"corpus file {corpus} does not exist; give a text file or JSONL with a 'text' field")
        if json_out is not None:
            from lister_tui.core.files.atomic import check_path_name

            check_path_name(json_out, "--json")
        if json_out is not None and not json_out.parent.is_dir():
            raise ListerError(f"cannot write {json_out}: folder {json_out.parent} does not exist")
        opened = None
        if session is not None:
            from lister_tui.core.sessions.store import read_session

            opened = read_session(resolve_target(session, sessions_dir))
            if opened.model.name != entry.name:
                raise ListerError(f"session {opened.name} is of model {opened.model.name}, not {entry.name}; pass --model {opened.model.name}")
    except ListerError as exc:
        fail(exc)
    card = _compute(entry.name, site, feature, corpus, opened, k, device, not no_cache)
    from lister_tui.tui.card_render import card_renderable

    for notice in card.notices:
        say(f"note: {notice}", "yellow", err=True)
    console.print(card_renderable(card, width=console.width))
    if json_out is not None:
        from lister_tui.core.files.atomic import atomic_write_bytes

        atomic_write_bytes(json_out, (json.dumps(card.to_dict(), indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        say(f"card written to {json_out}", err=True)


def _compute(model: str, site: str, feature: int, corpus: Optional[Path], opened, k: int, device: str, cache: bool):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.study.cards import feature_card
    from lister_tui.core.study.corpus import check_feature, default_corpus

    try:
        with err_console.status(visible_text(f"loading {model}…")):  # a session's model name: text, not markup
            lab = load_model(model, device=device)
            check_feature(lab, site, feature)
            samples = {key: st.sample for key, st in opened.workspace.samples.items()} if opened is not None else None
            text = default_corpus(lab, samples, corpus)
        label = opened.workspace.label(site, feature) if opened is not None else ""
        with Progress(TextColumn("corpus pass"), BarColumn(), TextColumn("{task.completed:,.0f}/{task.total:,.0f} tokens"), TimeRemainingColumn(), console=err_console, transient=True) as bar:
            task = bar.add_task("pass", total=text.n_tokens)
            return feature_card(lab, site, feature, text, k=k, label=label, cache=cache, on_progress=lambda done, total: bar.update(task, completed=done))
    except ListerError as exc:
        fail(exc)
