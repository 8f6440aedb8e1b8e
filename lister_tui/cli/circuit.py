"""`lister-tui circuit`: a sparse feature circuit of the end-of-list metric, with its faithfulness.

Every option is checked before the model loads; bad ones exit 2 with the valid range.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from lister_tui.cli.common import TEMPLATES_OPTION, app, console, err_console, fail, refuse_given_but_empty, split_values, use_user_files
from lister_tui.core.errors import ListerError
from lister_tui.core.limits import MAX_IG_STEPS, MAX_NODES_PER_SITE, MAX_SAMPLES_PER_TOPIC, MAX_SEED, MAX_THRESHOLD
from lister_tui.safe_text import text


@app.command("circuit")
def circuit_command(
    template: str = typer.Option("short", "--template", "-t", help="Prompt template: short, long, unspecified, the entry's own or one of --templates."),
    topic: Optional[list[str]] = typer.Option(None, "--topic", help="Topic (one; with --batch repeatable, default: the study's 23)."),
    sample: int = typer.Option(0, "--sample", "-i", help=f"Which sample of the template and topic (0-based) (valid: 0..{MAX_SAMPLES_PER_TOPIC - 1})."),
    batch: bool = typer.Option(False, "--batch", help="A feature-level circuit over the template's samples (effects summed over positions and samples)."),
    samples: int = typer.Option(2, "--samples", "-n", help=f"With --batch: samples per topic (valid: 1..{MAX_SAMPLES_PER_TOPIC})."),
    sites: Optional[list[str]] = typer.Option(None, "--sites", help="Sites, comma-separated or repeated (default: every site of the model)."),
    nodes: int = typer.Option(10, "--nodes", help=f"Top nodes kept per site, by |effect| (valid: 1..{MAX_NODES_PER_SITE})."),
    node_threshold: float = typer.Option(0.0, "--node-threshold", help=f"Keep nodes with |effect| at least this (valid: 0..{MAX_THRESHOLD:g})."),
    edge_threshold: float = typer.Option(0.0, "--edge-threshold", help=f"Keep edges with |weight| above this (valid: 0..{MAX_THRESHOLD:g})."),
    method: str = typer.Option("grad", "--method", help="Node effects: grad (activation x gradient) or ig (integrated gradients)."),
    ig_steps: int = typer.Option(10, "--ig-steps", help=f"Integrated-gradient steps (with --method ig) (valid: 1..{MAX_IG_STEPS})."),
    ablation: str = typer.Option("zero", "--ablation", help="How faithfulness removes nodes: zero (the study) or mean (over the batch)."),
    faithfulness: bool = typer.Option(True, "--faithfulness/--no-faithfulness", help="Measure the faithfulness curve and completeness."),
    preset: str = typer.Option("code", "--preset", help="Sampling preset the list is drawn with: code, post or greedy."),
    seed: int = typer.Option(0, help=f"Base seed (as in the explorer and the sweep) (valid: 0..{MAX_SEED})."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the circuit here.", show_default=False),
    output_format: str = typer.Option("json", "--format", help="File format of --json: json (ours) or neuronpedia (circuit-tracer's graph JSON)."),
    dot: Optional[Path] = typer.Option(None, "--dot", help="Write a Graphviz DOT file here.", show_default=False),
    sweep: Optional[Path] = typer.Option(None, "--sweep", help="A sweep's output folder: the site report shows its ablation effects.", show_default=False),
    model: str = typer.Option("lister-tiny", "--model", "-m", help="Registry entry to load."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto."),
    dtype: Optional[str] = typer.Option(None, help="float32 or bfloat16 (default: the entry's).", show_default=False),
    templates: Optional[list[Path]] = TEMPLATES_OPTION,
) -> None:
    """Find the circuit of the metric (logit(blank) − logit(newline)) at a list's attribution position."""
    from lister_tui.core.engine.prompts import TOPICS, build_prompts, get_template
    from lister_tui.core.engine.registry import get_entry
    from lister_tui.core.files.atomic import check_path_name
    from lister_tui.core.study.circuits import CircuitSettings
    from lister_tui.core.study.circuits.export import FORMATS
    from lister_tui.core.study.settings import SAMPLING_PRESETS

    try:
        use_user_files(None, templates)
        entry = get_entry(model)
        refuse_given_but_empty({"topic": topic})
        topics = split_values(topic) if batch else list(topic or [])
        if not batch and len(topics) != 1:
            raise ListerError(f"give exactly one --topic for a one-sample circuit (got {len(topics)}); valid: {', '.join(TOPICS)}")
        if batch and not topics:
            topics = list(TOPICS)
        get_template(template, entry)  # the study's, the entry's own, --templates' (unknown: the valid names)
        if not 0 <= sample < MAX_SAMPLES_PER_TOPIC:
            raise ListerError(f"--sample must be in [0, {MAX_SAMPLES_PER_TOPIC - 1}], got {sample}")
        if not 1 <= samples <= MAX_SAMPLES_PER_TOPIC:
            raise ListerError(f"--samples must be in [1, {MAX_SAMPLES_PER_TOPIC}], got {samples}")
        if not 1 <= nodes <= MAX_NODES_PER_SITE:
            raise ListerError(f"--nodes (nodes per site) must be in [1, {MAX_NODES_PER_SITE}], got {nodes}")
        for name, value in (("--node-threshold", node_threshold), ("--edge-threshold", edge_threshold)):
            if not 0 <= value <= MAX_THRESHOLD:  # NaN fails this too
                raise ListerError(f"{name} must be a number in [0, {MAX_THRESHOLD:g}], got {value}")
        if not 1 <= ig_steps <= MAX_IG_STEPS:
            raise ListerError(f"--ig-steps must be in [1, {MAX_IG_STEPS}], got {ig_steps}")
        if not 0 <= seed <= MAX_SEED:
            raise ListerError(f"--seed must be in [0, {MAX_SEED}], got {str(seed)[:40]}")
        if preset not in SAMPLING_PRESETS:
            raise ListerError(f"unknown preset {preset!r}; valid: {', '.join(SAMPLING_PRESETS)}")
        if output_format not in FORMATS:
            raise ListerError(f"unknown --format {output_format!r}; valid: {', '.join(FORMATS)}")
        if output_format == "neuronpedia" and batch:
            raise ListerError("--format neuronpedia needs token positions: leave out --batch")
        for path, option in ((json_out, "--json"), (dot, "--dot")):
            if path is not None:
                check_path_name(path, option)
            if path is not None and not path.parent.resolve().is_dir():
                raise ListerError(f"folder {path.parent} does not exist; create it or write elsewhere")
        if sweep is not None and not (sweep / "by_condition.parquet").is_file():
            raise ListerError(f"{sweep} holds no sweep table (by_condition.parquet); give a sweep's output folder")
        sweep_effects = _sweep_effects(sweep, template) if sweep is not None else None  # a damaged table: before the model loads
        settings = CircuitSettings(
            sites=tuple(split_values(sites)) or tuple(s.id for s in entry.sites),
            nodes_per_site=nodes,
            node_threshold=node_threshold,
            edge_threshold=edge_threshold,
            level="feature" if batch else "position",
            method=method,
            ig_steps=ig_steps,
            ablation=ablation,
        )
        settings.check([s.id for s in entry.sites])
        specs = build_prompts([template], topics, samples_per_topic=samples if batch else sample + 1, base_seed=seed, entry=entry)
        if not batch:
            specs = [specs[sample]]
    except ListerError as exc:
        fail(exc)
    _run(model, device, dtype, specs, settings, SAMPLING_PRESETS[preset], faithfulness, json_out, output_format, dot, sweep_effects)


def _run(model, device, dtype, specs, settings, sampling, faithfulness, json_out, output_format, dot, sweep_effects) -> None:
    from lister_tui.core.engine.generation import sample_lists
    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.files.atomic import atomic_write_bytes
    from lister_tui.core.study.circuits import find_circuit
    from lister_tui.core.study.circuits.export import (
        circuit_dot,
        circuit_json,
        neuronpedia_json,
    )
    from lister_tui.core.study.circuits.report import sae_memory, site_report

    try:
        with err_console.status(text(f"loading {model}…")):
            loaded = load_model(model, device=device, dtype=dtype)
            from lister_tui.core.engine.preflight import preflight

            preflight(loaded, settings.sites, template=specs[0].template)  # before the first sample
        with err_console.status("sampling the lists…"):
            drawn = sample_lists(loaded, specs, sampling)
        usable = [s for s in drawn if s.structure.attribution_pos is not None]
        if not usable:
            raise ListerError("no sampled list has a complete item, so there is no attribution position; try another sample")
        with err_console.status("finding the circuit…") as status:
            built = find_circuit(loaded, usable, settings, faithfulness=faithfulness, on_progress=lambda m: status.update(text(m)))
        circuit = built.circuit
        report = site_report(circuit, {k: sae_memory(v) for k, v in built.saes.items()}, sweep_effects)
        prompt_tokens = loaded.to_str_tokens(usable[0].tokens[: usable[0].structure.attribution_pos + 1])
        if json_out is not None:
            if output_format == "neuronpedia":
                data = neuronpedia_json(circuit, prompt_tokens, slug=usable[0].spec.key.replace("/", "-").replace(" ", "_"), model_name=model)
            else:
                data = circuit_json(circuit, {"model": model, "site_report": report.to_dict(orient="records"), "tokens": prompt_tokens})
            atomic_write_bytes(json_out, json.dumps(data, indent=1).encode())
        if dot is not None:
            atomic_write_bytes(dot, circuit_dot(circuit).encode())
    except ListerError as exc:
        fail(exc)
    _print_summary(circuit, report)


def _sweep_effects(folder: Path, template: str) -> dict[str, float]:
    """Per SAE: the mean change in items when the sweep zeroed its top pairs, for ``template``."""
    from lister_tui.core.sweep.output import read_table
    from lister_tui.core.sweep.tables import SAE_ABLATION

    table = read_table(folder, "by_condition", ("method", "template", "sae", "n_items_change_mean"))
    rows = table[(table["method"] == SAE_ABLATION) & (table["template"] == template)]
    try:
        return {str(s): float(v) for s, v in zip(rows["sae"], rows["n_items_change_mean"])}
    except (TypeError, ValueError) as exc:
        raise ListerError(f"{folder / 'by_condition.parquet'}: column n_items_change_mean holds a value that is not a number ({exc}); the file is damaged") from None


def _print_summary(circuit, report) -> None:
    from rich.table import Table

    n08 = circuit.n_for(0.8)
    console.print(
        text(
            f"circuit of {', '.join(circuit.samples[:3])}{' …' if len(circuit.samples) > 3 else ''}: "
            f"{len(circuit.nodes)} nodes, {len(circuit.edges)} edges; metric {circuit.metric:+.3f}"
        )
    )
    if circuit.faithfulness:
        console.print(
            text(
                f"faithfulness: {n08 if n08 is not None else 'never'} of {circuit.n_candidates} nodes reach 0.8; "
                f"this circuit recovers {circuit.recovered:.2f}, completeness {circuit.completeness:.2f} "
                f"(m(∅) {circuit.metric_empty:+.3f})"
            )
        )
    top = Table("node", "token", "effect", "strongest parent", title="strongest nodes")
    for n in [n for n in circuit.nodes if n.kind != "metric"][:12]:
        parents = circuit.parents(n.id)
        top.add_row(text(n.id), text(n.token or ""), f"{n.effect:+.3f}", text(f"{parents[0].source} ({parents[0].weight:+.3f})" if parents else "—"))
    console.print(top)
    sites = Table("site", "SAE memory", "nodes", "node share", "effect share", "error share", "sweep Δ items", title="sites")
    for row in report.to_dict(orient="records"):
        sweep = row["sweep_n_items_change"]
        sites.add_row(
            text(row["site"]), f"{row['sae_memory_bytes'] / 2**20:.1f} MB", f"{row['circuit_nodes']:d}", f"{row['circuit_node_share']:.2f}",
            f"{row['effect_share']:.2f}", f"{row['error_share']:.2f}", "—" if sweep is None or sweep != sweep else f"{sweep:+.2f}",
        )
    console.print(sites)
