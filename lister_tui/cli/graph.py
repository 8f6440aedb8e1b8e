"""`lister-tui graph`: the attribution graph of the metric on one list (transcoders, attention features).

Options are checked before the model loads; the target position after the list is sampled
and before any graph work; the memory estimate before the backward passes. Bad input exits 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lister_tui.cli.common import (
    SESSIONS_DIR_OPTION,
    app,
    console,
    err_console,
    fail,
    resolve_target,
)
from lister_tui.core.errors import ListerError
from lister_tui.core.limits import MAX_GRAPH_BATCH, MAX_GRAPH_CHECKS, MAX_GRAPH_MEMORY_GIB, MAX_POSITION, MAX_SAMPLES_PER_TOPIC, MAX_SEED
from lister_tui.safe_text import text as safe_text, visible


@app.command("graph")
def graph_command(
    template: str = typer.Option("short", "--template", "-t", help="Prompt template: short, long or unspecified."),
    topic: str = typer.Option("Animals", "--topic", help="Topic of the list."),
    sample: int = typer.Option(0, "--sample", "-i", help=f"Which sample of the template and topic (0-based) (valid: 0..{MAX_SAMPLES_PER_TOPIC - 1})."),
    pos: int | None = typer.Option(None, "--pos", help=f"Target position (default: the attribution position, the last item's last token) (valid: 0..{MAX_POSITION}).", show_default=False),
    each_item: bool = typer.Option(False, "--each-item", help="One target per item end of the list (equal weights)."),
    node_threshold: float = typer.Option(0.8, "--node-threshold", help="Keep nodes up to this share of cumulative influence (valid: 0..1, 0 excluded)."),
    edge_threshold: float = typer.Option(0.98, "--edge-threshold", help="Keep edges up to this share of cumulative influence (valid: 0..1, 0 excluded)."),
    attention_features: bool = typer.Option(True, "--attention-features/--no-attention-features", help="Attention-SAE (hook_z) features as nodes, or attention frozen without features (as circuit-tracer)."),
    checks: int = typer.Option(5, "--checks", help=f"Zero this many of the most influential feature nodes: graph vs replacement vs real model (valid: 0..{MAX_GRAPH_CHECKS})."),
    transcoders: Path | None = typer.Option(None, "--transcoders", help="A folder of SAELens transcoders mlp_0, mlp_1, … (default: the entry's set).", show_default=False),
    max_memory: float = typer.Option(4.0, "--max-memory", help=f"GiB the graph may use; a larger estimate is refused before the work (valid: 0..{MAX_GRAPH_MEMORY_GIB:g}, 0 excluded)."),
    batch: int = typer.Option(64, "--batch", help=f"Targets per backward pass (valid: 1..{MAX_GRAPH_BATCH})."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the pruned graph here.", show_default=False),
    output_format: str = typer.Option("json", "--format", help="File format of --json: json (ours) or neuronpedia (circuit-tracer's graph JSON)."),
    session: str | None = typer.Option(None, "--session", help="Name nodes (clerp) with this session's feature labels.", show_default=False),
    save: bool = typer.Option(False, "--save", help="Add the graph to --session (and its list, if the session lacks it); the session is saved as the explorer saves it."),
    sessions_dir: Path | None = SESSIONS_DIR_OPTION,
    preset: str = typer.Option("code", "--preset", help="Sampling preset the list is drawn with: code, post or greedy."),
    seed: int = typer.Option(0, help=f"Base seed (as in the explorer and the sweep) (valid: 0..{MAX_SEED})."),
    model: str = typer.Option("lister-tiny", "--model", "-m", help="Registry entry to load."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto."),
    dtype: str | None = typer.Option(None, help="float32 or float64 (default: the entry's).", show_default=False),
) -> None:
    """The attribution graph of logit(blank) − logit(newline): every MLP replaced by its transcoder, attention frozen."""
    from lister_tui.core.engine.prompts import TEMPLATES, TOPICS, build_prompts
    from lister_tui.core.engine.registry import get_entry
    from lister_tui.core.engine.transcoders import transcoder_set
    from lister_tui.core.study.graphs.export import FORMATS
    from lister_tui.core.study.graphs.prune import check_threshold
    from lister_tui.core.study.settings import SAMPLING_PRESETS

    try:
        entry = get_entry(model)
        if template not in TEMPLATES:
            raise ListerError(f"unknown template {template!r}; valid: {', '.join(TEMPLATES)}")
        if topic not in TOPICS:
            raise ListerError(f"unknown topic {topic!r}; valid: {', '.join(TOPICS)}")
        if not 0 <= sample < MAX_SAMPLES_PER_TOPIC:
            raise ListerError(f"--sample must be in [0, {MAX_SAMPLES_PER_TOPIC - 1}], got {str(sample)[:40]}")
        if not 0 <= seed <= MAX_SEED:
            raise ListerError(f"--seed must be in [0, {MAX_SEED}], got {str(seed)[:40]}")
        if pos is not None and each_item:
            raise ListerError("give --pos or --each-item, not both")
        if pos is not None and not 0 <= pos <= MAX_POSITION:
            raise ListerError(f"--pos must be in [0, {MAX_POSITION}] (and inside the list), got {str(pos)[:40]}")
        check_threshold("--node-threshold", node_threshold)
        check_threshold("--edge-threshold", edge_threshold)
        if not 0 <= checks <= MAX_GRAPH_CHECKS:
            raise ListerError(f"--checks must be in [0, {MAX_GRAPH_CHECKS}], got {str(checks)[:40]}")
        if not 0 < max_memory <= MAX_GRAPH_MEMORY_GIB:  # NaN fails this too
            raise ListerError(f"--max-memory must be a number of GiB in (0, {MAX_GRAPH_MEMORY_GIB:g}], got {max_memory}")
        if not 1 <= batch <= MAX_GRAPH_BATCH:
            raise ListerError(f"--batch must be in [1, {MAX_GRAPH_BATCH}], got {str(batch)[:40]}")
        if output_format not in FORMATS:
            raise ListerError(f"unknown --format {output_format!r}; valid: {', '.join(FORMATS)}")
        if preset not in SAMPLING_PRESETS:
            raise ListerError(f"unknown preset {preset!r}; valid: {', '.join(SAMPLING_PRESETS)}")
        if json_out is not None and not json_out.parent.resolve().is_dir():
            raise ListerError(f"folder {json_out.parent} does not exist; create it or write elsewhere")
        if transcoders is not None:
            if not transcoders.is_dir():
                raise ListerError(f"--transcoders {transcoders} is not a folder; give a folder holding mlp_0, mlp_1, …")
        else:
            transcoder_set(entry)  # refuses an entry without transcoders
        if dtype not in (None, "float32", "float64"):
            raise ListerError(f"--dtype {dtype!r} is not valid for graphs; valid: float32, float64")
        if save and session is None:
            raise ListerError("--save adds the graph to a session: give --session NAME as well")
        specs = build_prompts([template], [topic], samples_per_topic=sample + 1, base_seed=seed)
        spec = specs[sample]
        labels = None
        opened = None
        if session is not None:
            from lister_tui.core.sessions.store import read_session

            opened = read_session(resolve_target(session, sessions_dir))
            if opened.model.name != entry.name:
                raise ListerError(f"session {opened.name} is of model {opened.model.name}, not {entry.name}; pass --model {opened.model.name}")
            if save:
                _check_session_for_save(opened, entry, spec, preset)
            known = dict(opened.workspace.labels)
            labels = lambda site, feature: known.get((site, feature))
    except ListerError as exc:
        fail(exc)
    _run(entry, model, device, dtype, spec, pos, each_item, node_threshold, edge_threshold, attention_features, checks,
         transcoders, max_memory, batch, json_out, output_format, SAMPLING_PRESETS[preset], labels,
         save_to=(opened, preset) if save else None)


def _check_session_for_save(opened, entry, spec, preset: str) -> None:
    """Before the model loads: the session was made with these weights, and a list of the same key there was drawn with this preset."""
    from lister_tui.core.engine.fingerprint import fingerprint_differences, weights_fingerprint

    differs = fingerprint_differences(opened.model.fingerprint, weights_fingerprint(entry))
    if differs:
        raise ListerError(f"session {opened.name} was made with other weights of {entry.name} ({', '.join(differs[:3])}); "
                          "a graph of these weights is not saved there: save it to another session")
    ws = opened.workspace
    key = f"{spec.key}@{spec.seed}"
    state = ws.samples.get(key) or ws.removed.get(key)
    if state is not None and state.preset != preset:
        raise ListerError(f"session {opened.name} holds {key} drawn with preset {state.preset}; pass --preset {state.preset} to graph that list")


def _run(entry, model, device, dtype, spec, pos, each_item, node_threshold, edge_threshold, attention_features, checks,
         tc_folder, max_memory, batch, json_out, output_format, sampling, labels=None, save_to=None) -> None:
    import torch
    from rich.text import Text

    from lister_tui.core.engine.generation import sample_lists
    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.files.atomic import atomic_write_bytes
    from lister_tui.core.study.graphs.export import graph_json, neuronpedia_json
    from lister_tui.core.study.graphs.pipeline import (
        compute_graph,
        graph_checks,
        graph_head_shares,
        graph_saes,
        graph_targets,
        kept_cross_edges,
        top_features,
    )
    from lister_tui.core.study.graphs.prune import prune, scores

    try:
        with err_console.status(safe_text(f"loading {model}…")):
            loaded = load_model(model, device=device, dtype={"float64": torch.float64, "float32": torch.float32}.get(dtype))
            tcs, attn = graph_saes(loaded, attention_features, tc_folder)
        with err_console.status("sampling the list…"):
            drawn = sample_lists(loaded, [spec], sampling)[0]
        targets = graph_targets(drawn, pos, each_item)
        with err_console.status("attributing…") as status:
            def estimate(n_nodes: int, need: int, passes: int) -> None:
                err_console.print(Text(visible(f"{len(targets)} target(s): {n_nodes} nodes, about {need / 2**30:.2f} GiB "
                                               f"(allowed {max_memory:g}), {passes} backward passes of {batch} targets")))

            graph = compute_graph(loaded, drawn.tokens, tcs, attn, targets, batch=batch, max_memory=int(max_memory * 2**30),
                                  on_progress=lambda done, total: status.update(safe_text(f"attributing: backward pass {done}/{total}")),
                                  on_estimate=estimate)
            pruned = prune(graph, node_threshold, edge_threshold)
            rep_score, comp_score = scores(graph)
            status.update("head shares of the kept edges…")
            heads = graph_head_shares(loaded, graph, tcs, attn, kept_cross_edges(graph, pruned))
            status.update("checking nodes in the replacement and the real model…")
            checked = graph_checks(loaded, graph, tcs, attn, top_features(graph, pruned, checks))
        token_strings = [visible(t) for t in loaded.to_str_tokens(graph.tokens)]
        ours = graph_json(graph, pruned, token_strings, scores=(rep_score, comp_score), heads=heads, checks=checked, labels=labels,
                          extra={"model": model, "sample": spec.key})
        if json_out is not None:
            if output_format == "neuronpedia":
                slug = spec.key.replace("/", "-").replace(" ", "_")
                data = neuronpedia_json(graph, pruned, token_strings, slug=slug, model_name=model, blank_id=loaded.ids.blank, labels=labels)
            else:
                data = ours
            atomic_write_bytes(json_out, json.dumps(data, indent=1).encode())
        saved = None if save_to is None else _save_to_session(loaded, drawn, ours, *save_to)
    except ListerError as exc:
        fail(exc)
    _print_summary(graph, pruned, (rep_score, comp_score), heads, checked, token_strings)
    if saved is not None:
        console.print(Text(visible(saved)))


def _save_to_session(loaded, drawn, data: dict, opened, preset: str) -> str:
    """The graph (and its list, when the session lacks it) added to ``opened`` and saved; returns what was done."""
    from lister_tui.core.sessions.opening import model_info
    from lister_tui.core.sessions.store import SessionStore
    from lister_tui.core.sessions.workspace import sample_key
    from lister_tui.core.study.graphs.record import GraphRecord

    ws = opened.workspace
    key = sample_key(drawn)
    state = ws.samples.get(key) or ws.removed.get(key)
    if state is not None and tuple(state.sample.tokens) != tuple(drawn.tokens):
        raise ListerError(f"session {opened.name} holds another list under {key} (its tokens differ from the one drawn now); "
                          "the graph is not saved; save it to another session")
    added = state is None
    if added:
        ws.add_samples([drawn], preset)
    index = ws.add_graph(GraphRecord.from_graph_json(key, data))
    tok = loaded.tokenizer
    SessionStore.of(opened).save(ws, model_info(loaded), decode=tok.decode, token_string=lambda i: tok.decode([i]))
    return f"saved as graph {index} of {key} in session {opened.name}" + (" (the list was added to the session)" if added else "")


def _print_summary(graph, pruned, graph_scores, heads, checked, token_strings) -> None:
    import numpy as np
    from rich.table import Table
    from rich.text import Text

    from lister_tui.core.study.graphs.export import node_name
    from lister_tui.core.study.graphs.heads import head_label

    kept = int(pruned.node_mask.sum())
    console.print(Text(
        f"graph of {len(graph.targets)} target(s) at {', '.join(str(int(graph.nodes.pos[t])) for t in graph.targets)}: "
        f"{len(graph.nodes)} nodes, {kept} kept, {int(pruned.edge_mask.sum())} edges kept; {graph.seconds:.1f} s"
    ))
    console.print(Text(
        f"replacement score {graph_scores[0]:.3f}, completeness score {graph_scores[1]:.3f}; kept nodes carry "
        f"{pruned.kept_node_influence:.3f} of the influence (threshold {pruned.node_threshold}), kept edges {pruned.kept_edge_influence:.3f}"
    ))
    table = Table("node", "token", "influence", "strongest parent", "heads", title="most influential nodes")
    order = [int(i) for i in np.argsort(-pruned.node_influence) if pruned.node_mask[i]][:12]
    for i in order:
        parents = np.flatnonzero(pruned.edge_mask[i].numpy())
        if len(parents):
            p = int(parents[np.argmax(np.abs(graph.adjacency[i, parents].numpy()))])
            parent = f"{node_name(graph, p)} ({float(graph.adjacency[i, p]):+.3f})"
            shares = heads.get((i, p))
            head = "" if shares is None else ", ".join(f"{head_label(h, graph.n_heads)} {shares[h]:+.2f}" for h in np.argsort(-np.abs(shares))[:2])
        else:
            parent, head = "—", ""
        table.add_row(Text(visible(node_name(graph, i))), Text(visible(token_strings[int(graph.nodes.pos[i])])), f"{pruned.node_influence[i]:.3f}", Text(visible(parent)), Text(visible(head)))
    console.print(table)
    if checked:
        check_table = Table("node zeroed", "graph Δ", "replacement Δ", "real Δ", title="checks: change of the metric")
        for c in checked:
            check_table.add_row(Text(visible(node_name(graph, c["node"]))), f"{c['graph']:+.4f}", f"{c['replacement']:+.4f}", f"{c['real']:+.4f}")
        console.print(check_table)
