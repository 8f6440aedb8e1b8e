"""`lister-tui sweep`: the study headless, locally or on Ray, resumable.

Long because it holds the sweep's whole command line in one place: its options (the study's, Ray's,
--interventions) and their help, the checks of --resume against the sweep's own settings and entry,
and the local and Ray runs.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import typer

from lister_tui.core.limits import MAX_GPUS_PER_WORKER, MAX_IG_STEPS, MAX_K, MAX_LAYER, MAX_NEW_TOKENS, MAX_SAMPLES_PER_TOPIC  # noqa: I001
from lister_tui.core.limits import MAX_SEED, MAX_STEERING_SCALE, MAX_TEMPERATURE, MAX_TOP_K, MAX_WORKERS
from lister_tui.cli.common import (
    REGISTRY_OPTION,
    TEMPLATES_OPTION,
    THREADS_OPTION,
    app,
    console,
    entry_with_adhoc_saes,
    err_console,
    fail,
    refuse_given_but_empty,
    say,
    split_values,
    use_user_files,
)
from lister_tui.core.errors import ListerError
from lister_tui.safe_text import text

SWEEP_HELP = """Run the study headless: every SAE's top-k ablation, the baselines, the faithfulness check.

For each template, topic and sample a list is sampled with its own seed; the metric
logit(blank) - logit(newline) at its last item is attributed to every SAE's features;
then per SAE the top-k (position, feature) pairs are zeroed and the list is regenerated
from that position with the same seed. Baselines regenerate from the same position
and seed: restricted sampling (blank and end token banned; only the end token banned)
and a steering vector (mean long-template minus mean short-template activation at one
layer's hook_resid_post, times a scale, added at every position).

Writes to --out: by_condition (the study's table: per SAE and baseline, ablated - base
averaged across topics), by_condition_and_topic, by_topic, generations,
faithfulness_by_sae and faithfulness_pairs, each as .csv, .parquet and .md, and
manifest.json (every setting, seeds, versions, weights fingerprint, complete: true/false).
Tables are rewritten as the sweep goes, so Ctrl-C leaves valid tables and a manifest
saying complete: false; each finished shard of the work (the lists sampled, one
condition on them, an SAE's ablation of one topic) is kept in shards/, and --resume OUT
runs only the missing ones.

--ray [ADDRESS] runs the shards on a Ray cluster: one worker per GPU (--gpus-per-worker)
or CPU, each loading the model once; the tables are the same as a local run's.

\b
Ray is an extra:  pip install 'lister-tui[ray]'
Example:          lister-tui sweep --sae res_0 --sae attn_1 --topic Fruits --samples 2 --out /tmp/sweep
"""


@app.command("sweep", help=SWEEP_HELP)
def sweep_command(
    ctx: typer.Context,
    model: str = typer.Option("lister-tiny", "--model", "-m", help="Registry entry (`lister-tui models` lists them)."),
    sae: Optional[list[str]] = typer.Option(
        None, "--sae", "-s", help="SAE to ablate: a site id such as res_0, or an ad-hoc site RELEASE:SAE_ID or a SAELens folder (ID=… in front names it); repeat or comma-separate. Default: all the entry's SAEs.", show_default=False
    ),
    template: Optional[list[str]] = typer.Option(
        None, "--template", "-t", help="Prompt template: short, long, unspecified, or one of --templates / a registry file (repeat or comma-separate). Default: short.", show_default=False
    ),
    topic: Optional[list[str]] = typer.Option(
        None, "--topic", help="Topic: any text, e.g. 'Types of Cheese' (repeat or comma-separate). Default: the study's 23 topics.", show_default=False
    ),
    registry: Optional[list[Path]] = REGISTRY_OPTION,
    templates_file: Optional[list[Path]] = TEMPLATES_OPTION,
    samples: int = typer.Option(5, "--samples", "-n", help=f"Samples per template and topic (valid: 1..{MAX_SAMPLES_PER_TOPIC})."),
    preset: str = typer.Option("code", "--preset", help="Sampling preset: code (T 0.7, top-p 0.8), post (T 0.8, top-p 0.9) or greedy."),
    temperature: Optional[float] = typer.Option(None, help=f"Override the preset's temperature (0 = greedy) (valid: 0..{MAX_TEMPERATURE:g}).", show_default=False),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Override the preset's top-p (valid: 0..1, 0 excluded).", show_default=False),
    top_k: Optional[int] = typer.Option(None, "--top-k", help=f"Top-k filter of the sampler (default: none) (valid: 1..{MAX_TOP_K}).", show_default=False),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help=f"Override the preset's token cap (100) (valid: 1..{MAX_NEW_TOKENS}).", show_default=False),
    k: int = typer.Option(5, "--k", "-k", help=f"Top (position, feature) pairs zeroed per sample (the study's code: 10, its post: 5) (valid: 1..{MAX_K})."),
    seed: int = typer.Option(0, help=f"Base seed; each sample's seed derives from it and the sample's template, topic and number (valid: 0..{MAX_SEED})."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto."),
    dtype: Optional[str] = typer.Option(None, help="float32 or bfloat16 (default: the entry's).", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: sweeps/<model>-<UTC time>).", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty --out, replacing a previous sweep's files."),
    restricted: bool = typer.Option(True, "--restricted/--no-restricted", help="Restricted-sampling baselines (ban blank+end, ban end)."),
    steering: bool = typer.Option(True, "--steering/--no-steering", help="Steering-vector baseline."),
    steering_layer: Optional[int] = typer.Option(
        None, "--steering-layer", help=f"Layer whose hook_resid_post is steered (default: the earliest residual SAE's layer) (valid: 0..{MAX_LAYER}).", show_default=False
    ),
    steering_scale: float = typer.Option(8.0, "--steering-scale", help=f"Multiple of the long-minus-short vector added (valid: {-MAX_STEERING_SCALE:g}..{MAX_STEERING_SCALE:g})."),
    faithfulness: bool = typer.Option(True, "--faithfulness/--no-faithfulness", help="Check each top pair's attribution against a real ablation."),
    attribution: str = typer.Option(
        "grad",
        "--attribution",
        help="How the top pairs are ranked: grad (the study's activation x gradient, one pass for all SAEs) or ig (integrated gradients, --ig-steps passes per SAE; finds features read through saturated switches).",
    ),
    ig_steps: int = typer.Option(10, "--ig-steps", help=f"Integrated-gradient steps (with --attribution ig) (valid: 1..{MAX_IG_STEPS})."),
    interventions: Optional[Path] = typer.Option(
        None,
        "--interventions",
        help="A TOML or JSON file of named intervention sets ([[sets]] name = ..., [[sets.interventions]] site, feature, kind = zero|scale|clamp|steer, value, position = all|prompt|generated|N); each set is one more condition, regenerated from the same position and seed as the base.",
        show_default=False,
    ),
    threads: Optional[int] = THREADS_OPTION,
    resume: Optional[Path] = typer.Option(
        None,
        "--resume",
        help="Go on with the interrupted sweep in this folder: only its missing shards run. Its settings come from its manifest; options given must match them.",
        show_default=False,
    ),
    ray: Optional[str] = typer.Option(
        None,
        "--ray",
        metavar="[ADDRESS]",
        help="Run the shards on a Ray cluster: --ray HOST:PORT (its `ray start --head` node), or --ray alone for $RAY_ADDRESS, the cluster this machine joined, else a new local one (listening on 127.0.0.1 only). Needs pip install 'lister-tui[ray]'.",
        show_default=False,
    ),
    ray_dashboard: bool = typer.Option(False, "--ray-dashboard", help="Start Ray's dashboard (on 127.0.0.1) with a local cluster started here."),
    workers: Optional[int] = typer.Option(
        None, "--workers", help=f"Ray workers (default: as many as the cluster's GPUs, or CPUs, hold) (valid: 1..{MAX_WORKERS}).", show_default=False
    ),
    gpus_per_worker: Optional[float] = typer.Option(
        None,
        "--gpus-per-worker",
        help=f"GPUs each Ray worker reserves (default: 1 if the cluster has GPUs and --device is not cpu, else 0; 0.5 puts two workers on a GPU; valid: 0..{MAX_GPUS_PER_WORKER:g}).",
        show_default=False,
    ),
) -> None:
    from lister_tui.core.engine.threads import check_threads

    ray_options = None
    try:
        use_user_files(registry, templates_file)
        if ray is None and (workers is not None or gpus_per_worker is not None):
            raise ListerError("--workers and --gpus-per-worker set up Ray workers; add --ray")
        if workers is not None and not 1 <= workers <= MAX_WORKERS:
            raise ListerError(f"--workers must be 1 or more (at most {MAX_WORKERS}), got {workers}")
        if gpus_per_worker is not None and not (math.isfinite(gpus_per_worker) and 0 <= gpus_per_worker <= MAX_GPUS_PER_WORKER):
            raise ListerError(f"--gpus-per-worker must be a number in [0, {MAX_GPUS_PER_WORKER:g}], got {gpus_per_worker}")
        if ray is not None:
            from lister_tui.core.sweep.ray_cluster import RayOptions

            ray_options = RayOptions(address=ray or None, workers=workers, gpus_per_worker=gpus_per_worker, threads=threads, dashboard=ray_dashboard)
        check_threads(threads)
        if resume is not None:
            settings, entry = _resumed_settings(ctx, resume, out, overwrite)
            out = resume
        else:
            settings, entry, out = _new_settings(ctx.params, out, overwrite)
        from lister_tui.core.sweep.interventions_file import has_relative

        if ray_options is not None and has_relative(settings.interventions):
            raise ListerError(
                "a relative clamp (relative = true) is resolved from the card's maximum on the local model; "
                "run this sweep without --ray, or give the clamp's absolute value"
            )
    except ListerError as exc:
        fail(exc)
    _run_sweep(settings, entry, out, overwrite, threads, resume=resume is not None, ray_options=ray_options)


def _new_settings(v: dict, out: Optional[Path], overwrite: bool):
    """A new sweep's settings from the command's option values, its model entry and its output folder."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from lister_tui.core.engine.prompts import TOPICS
    from lister_tui.core.study.settings import SAMPLING_PRESETS
    from lister_tui.core.sweep.output import check_out_folder
    from lister_tui.core.sweep.settings import SweepSettings

    refuse_given_but_empty(v)
    entry, sae_ids = entry_with_adhoc_saes(v["model"], [s for s in split_values(v["sae"]) if s != "preset"])
    if v["preset"] not in SAMPLING_PRESETS:
        raise ListerError(f"unknown sampling preset {v['preset']!r}; valid: {', '.join(SAMPLING_PRESETS)}")
    overrides = {n: v[n] for n in _SAMPLING_OPTIONS if v[n] is not None}
    settings = SweepSettings(
        model=v["model"],
        saes=tuple(sae_ids),
        templates=tuple(split_values(v["template"])) or ("short",),
        topics=tuple(split_values(v["topic"])) or TOPICS,
        samples_per_topic=v["samples"],
        sampling_preset=v["preset"],
        sampling=replace(SAMPLING_PRESETS[v["preset"]], **overrides),
        k=v["k"],
        seed=v["seed"],
        device=v["device"],
        dtype=v["dtype"],
        restricted_sampling=v["restricted"],
        steering=v["steering"],
        steering_layer=v["steering_layer"],
        steering_scale=v["steering_scale"],
        faithfulness=v["faithfulness"],
        attribution=v["attribution"],
        ig_steps=v["ig_steps"],
    )
    if v["interventions"] is not None:
        from lister_tui.core.sweep.interventions_file import read_sets, sets_to_records

        sets = read_sets(v["interventions"], entry, reserved=set(settings.conditions(entry)))
        settings = replace(settings, interventions=sets_to_records(sets))
    settings.validate(entry)
    if out is None:
        out = Path("sweeps") / f"{v['model']}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    check_out_folder(out, overwrite)
    return settings, entry, out


# sweep options -> the SweepSettings fields they set (--resume checks the ones given)
_SETTING_OPTIONS = {
    "model": "model",
    "samples": "samples_per_topic",
    "k": "k",
    "seed": "seed",
    "device": "device",
    "dtype": "dtype",
    "restricted": "restricted_sampling",
    "steering": "steering",
    "steering_layer": "steering_layer",
    "steering_scale": "steering_scale",
    "faithfulness": "faithfulness",
    "attribution": "attribution",
    "ig_steps": "ig_steps",
}


_SAMPLING_OPTIONS = ("temperature", "top_p", "top_k", "max_new_tokens")


def _resumed_settings(ctx: typer.Context, folder: Path, out: Optional[Path], overwrite: bool):
    """The settings of the sweep in ``folder`` (its manifest's), with the options given on the
    command line applied; a clear error when one of them differs from the sweep's."""
    from dataclasses import replace

    from lister_tui.core.study.settings import SAMPLING_PRESETS
    from lister_tui.core.sweep.output import read_manifest, refuse_live_writer, settings_differences
    from lister_tui.core.sweep.resume import entry_to_resume
    from lister_tui.core.sweep.settings import SweepSettings

    if overwrite:
        raise ListerError("--overwrite starts a new sweep and --resume goes on with one; give one of them")
    if out is not None and Path(out).resolve() != Path(folder).resolve():
        raise ListerError(f"--out {out} and --resume {folder} name different folders; give only --resume")
    manifest = read_manifest(folder)
    stale = refuse_live_writer(folder)
    if stale:
        say(f"the sweep in {folder}: {stale}; its manifest still said running. Going on from its shards.", err=True)
    recorded = SweepSettings.from_dict(manifest["settings"])
    values = ctx.params
    # typer vendors click, so its ParameterSource is compared by name
    given = {n for n in values if getattr(ctx.get_parameter_source(n), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")}
    updates = {field: values[name] for name, field in _SETTING_OPTIONS.items() if name in given}
    if "sae" in given:
        saes = split_values(values["sae"])
        updates["saes"] = () if saes in ([], ["preset"]) else tuple(saes)
    refuse_given_but_empty({n: values[n] for n in ("sae", "template", "topic") if n in given})
    if "template" in given:
        updates["templates"] = tuple(split_values(values["template"]))
    if "interventions" in given and values["interventions"] is not None:
        from lister_tui.core.sweep.interventions_file import read_sets, sets_to_records

        sets = read_sets(values["interventions"], recorded_entry(manifest), reserved=set(replace(recorded, interventions=()).conditions(recorded_entry(manifest))))
        updates["interventions"] = sets_to_records(sets)
    if "topic" in given:
        updates["topics"] = tuple(split_values(values["topic"]))
    if given & {"preset", *_SAMPLING_OPTIONS}:
        if "preset" in given:
            if values["preset"] not in SAMPLING_PRESETS:
                raise ListerError(f"unknown sampling preset {values['preset']!r}; valid: {', '.join(SAMPLING_PRESETS)}")
            updates["sampling_preset"] = values["preset"]
        start = SAMPLING_PRESETS[values["preset"]] if "preset" in given else recorded.sampling
        updates["sampling"] = replace(start, **{n: values[n] for n in _SAMPLING_OPTIONS if n in given})
    settings = replace(recorded, **updates)
    entry, changes = entry_to_resume(manifest, folder, settings)
    for line in changes:  # a fixed registry file counts; what would mix rows was refused
        say(f"since the sweep ran, the registry entry changed: {line}", err=True)
    settings.validate(entry)
    differs = settings_differences(manifest["settings"], settings, entry)
    if differs:
        raise ListerError(
            f"cannot resume the sweep in {str(folder)!r}: its settings differ: {'; '.join(differs)}. "
            "Leave those options out (--resume takes the sweep's own settings)"
        )
    return settings, entry


def recorded_entry(manifest: dict):
    """The entry a sweep was made with: the registry's, or its manifest's record (a user entry or ad-hoc sites)."""
    from lister_tui.core.engine.registry import entry_for

    model = manifest.get("model") or {}
    record = model.get("entry") if isinstance(model.get("entry"), dict) else None
    return entry_for(str(model.get("name") or manifest["settings"]["model"]), record)


def _run_sweep(settings, entry, out: Path, overwrite: bool, threads: Optional[int], *, resume: bool, ray_options=None) -> None:
    import uuid

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from lister_tui.core.engine.generation import check_prompts_fit
    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.engine.preflight import preflight
    from lister_tui.core.study.baselines import check_layer
    from lister_tui.core.sweep.output import SweepWriter, read_table
    from lister_tui.core.sweep.run import SweepResult, run_sweep
    from lister_tui.core.engine.threads import configure_torch_threads

    loaded = None
    resolved_clamps: list[dict] = []
    if ray_options is None:
        try:
            # Fails fast (with the download commands for a pretrained entry) before any work.
            loaded = load_model(entry, device=settings.device, dtype=settings.dtype)
            preflight(loaded, settings.sae_ids(entry), template=settings.templates[0])  # every SAE opened, nothing sampled yet
            if settings.steering:
                check_layer(loaded, settings.resolved_steering_layer(entry))
            # tokenizer work only: every prompt plus --max-new-tokens must fit the model's context
            check_prompts_fit(loaded, settings.templates, settings.topics, settings.sampling.max_new_tokens)
            from lister_tui.core.sweep.interventions_file import has_relative, resolve_sets

            if has_relative(settings.interventions):  # k × the card's maximum, recorded resolved
                from dataclasses import replace

                say("resolving relative clamps from the features' cards (a corpus pass per site, cached)", err=True)
                records, resolved_clamps = resolve_sets(loaded, settings.interventions)
                settings = replace(settings, interventions=records)
        except ListerError as exc:
            fail(exc)
    writer = SweepWriter(out, overwrite=overwrite, command=["lister-tui", *sys.argv[1:]])
    run_id = uuid.uuid4().hex[:12]
    result = SweepResult()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )

    def on_progress(p) -> None:
        progress.update(task, completed=p.done, total=p.total or None, description=text(p.detail[:60]).markup)

    def ready(model, runtime: dict) -> None:
        if resolved_clamps:
            runtime = {**runtime, "interventions_resolved": resolved_clamps}
        (writer.resume if resume else writer.start)(model, settings, runtime=runtime)
        where = f"{model.device}" if loaded is not None else f"{len(runtime['ray']['workers'])} Ray workers"
        verb = "resuming the sweep" if resume else "sweep"
        progress.console.print(text(f"{verb} of {entry.name} on {where} -> {out}"), highlight=False)

    try:
        with progress:
            task = progress.add_task("starting", total=None)
            if loaded is not None:
                threads_used = configure_torch_threads(loaded, threads)
                ready(loaded, {"mode": "local", "run_id": run_id, "torch_threads": threads_used})
                run_sweep(
                    loaded, settings, on_progress=on_progress, on_checkpoint=writer.write, result=result,
                    store=writer.shards, run_id=run_id,
                )  # fmt: skip
            else:
                from lister_tui.core.sweep.ray_cluster import run_sweep_ray

                run_sweep_ray(
                    settings, entry, ray_options, store=writer.shards, result=result, run_id=run_id, on_ready=ready,
                    on_progress=on_progress, on_checkpoint=writer.write,
                )  # fmt: skip
    except KeyboardInterrupt:
        _record_stop(writer, result, "interrupted", "interrupted (Ctrl-C)")
        say(
            f"interrupted after {result.units_done} of {result.units_total} units; the tables so far are in {out} "
            f"(manifest.json says complete: false, status: interrupted); go on with: lister-tui sweep --resume {out}",
            err=True,
        )
        raise typer.Exit(code=130) from None
    except ListerError as exc:
        _record_stop(writer, None, "failed", str(exc), hint=out)
        fail(exc)
    except OSError as exc:
        _record_stop(writer, None, "failed", str(exc))
        fail(ListerError(f"could not write the sweep to {out} ({exc}); files written before stay valid, manifest complete: false"))
    except Exception as exc:  # noqa: BLE001 - a fault of a library (torch, ray): recorded and shown, never a traceback
        _record_stop(writer, None, "failed", f"{type(exc).__name__}: {exc}", hint=out)
        fail(ListerError(f"the sweep failed: {type(exc).__name__}: {exc}"))

    table = read_table(out, "by_condition")
    from rich.table import Table

    from rich import box

    # no vertical rules and one space between columns: every number stays whole at 80 columns
    view = Table(title=text(f"condition - base, averaged across topics ({entry.name}, {len(result.samples)} lists)"), box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), show_edge=False)
    columns = {
        "condition": "condition",
        "template": "template",
        "n": "n",
        "n_items_change_mean": "items",
        "n_items_change_ci": "95% CI",
        "n_items_change_variance": "var",
        "diversity_change_mean": "div",
        "diversity_change_variance": "var",
        "n_tokens_change_mean": "tok",
        "reached_end_rate": "end",
        "faithfulness_pearson_r": "faith",
    }

    def number(row, column: str) -> str:
        if column == "n_items_change_ci":
            low, high = row.get("n_items_change_ci_low"), row.get("n_items_change_ci_high")
            return "" if low is None or low != low or high != high else f"{low:.1f}..{high:.1f}"
        value = row.get(column)
        return "" if value is None or value != value else f"{value:.2f}"

    for column, header in columns.items():
        view.add_column(
            text(header), justify="left" if column in ("condition", "template") else "right", no_wrap=column not in ("condition", "template"),
            overflow="fold",
        )
    for _, row in table.iterrows():
        cells = [text(row["condition"]), text(str(row["template"]))]
        cells.append("" if row.get("n") is None or row["n"] != row["n"] else str(int(row["n"])))
        cells += [number(row, c) for c in list(columns)[3:]]
        view.add_row(*cells)
    console.print(view)
    say("95% CI: the Student t interval of the mean change in items over the row's n paired lists; var: the study's variances; tok: Δtokens; end: share of the condition's lists that ended; faith: Pearson r of the faithfulness check")
    from lister_tui.core.sweep.tables import conditions_that_zeroed_nothing

    for condition in conditions_that_zeroed_nothing(table):
        say(
            f"warning: {condition} zeroed 0 pairs in every list (pairs_zeroed_mean 0): its row is not a measured "
            "'no effect'; at the last layer act×grad is 0 before the attribution position",
            err=True,
        )
    say(f"tables and manifest in {out}")


def _record_stop(writer, result, status: str, reason: str, hint: Path | None = None) -> None:
    """The manifest says ``status`` and ``reason`` (:meth:`SweepWriter.stop`); with ``hint`` (the output
    folder), print how to go on."""
    writer.stop(result, status, reason)
    if hint is not None and writer.manifest:
        say(f"the tables so far are in {hint} (manifest.json says status: {status}); once fixed, go on with: lister-tui sweep --resume {hint}", err=True)


def bare_ray(argv: list[str]) -> list[str]:
    """``--ray`` without an address (last, or before another option) becomes ``--ray=``: the default cluster."""
    return ["--ray=" if a == "--ray" and (i + 1 == len(argv) or argv[i + 1].startswith("-")) else a for i, a in enumerate(argv)]
