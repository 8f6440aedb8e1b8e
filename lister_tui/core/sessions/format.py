"""The session format: a :class:`Workspace` as flat tables, and back.

A session is a folder holding ``manifest.json`` and one Parquet file per table
(sessions/README.md describes every field and column). This module only converts:
a Workspace to ``{table name: list of row dicts}`` plus the manifest's content
fields, and back; reading and writing files, locking and atomicity live in
:mod:`lister_tui.core.sessions.store`.

Nothing here needs the model: a :class:`ListSample` is rebuilt from its stored tokens
(its structure re-parsed with the token ids recorded in the manifest) and its stored
metrics, so a session of a model that is not on this machine still opens, read-only.

The schema (tables, versions, migrations) is :mod:`lister_tui.core.sessions.schema`."""

from __future__ import annotations

import json
import math
from typing import Callable, Sequence

import numpy as np

from lister_tui.core.engine.generation import ListSample
from lister_tui.core.engine.interventions import KINDS
from lister_tui.core.engine.listing import ListMetrics, empty_marker_lines, parse_structure
from lister_tui.core.engine.token_ids import TokenIds
from lister_tui.core.engine.prompts import PromptSpec
from lister_tui.core.errors import ListerError
from lister_tui.core.files.json_read import parse_json
from lister_tui.core.sessions.schema import SCHEMAS, ModelInfo, migrate_v0, migrate_v1
from lister_tui.core.limits import MAX_D_SAE
from lister_tui.core.sessions.workspace import AblationChoice, AblationRun, BatchAttribution, SampleState, Workspace, check_site_id, one_line
from lister_tui.core.study.circuits.graph import Circuit
from lister_tui.core.study.experiment import Pair, SAEListAttribution
from lister_tui.core.study.graphs.record import graphs_from_rows
from lister_tui.core.study.settings import SAMPLING_PRESETS

# Columns added to format 1 after its first release: a file written before may lack
# them, and readers fill in the default.
ADDED_COLUMNS: dict[str, tuple[str, ...]] = {
    "attribution_summary": ("method", "ig_steps"),
    "samples": ("removed", "empty_items"),
    "runs": ("activations_zeroed", "base_empty_items", "ablated_empty_items"),
    "choices": ("kind", "value"),
    "run_choices": ("kind", "value"),
}


def sample_identity(key: str, spec) -> dict:
    """The columns that name a sample in every table: its workspace key and prompt spec."""
    return {"key": key, "template": spec.template, "topic": spec.topic, "sample": spec.sample, "seed": spec.seed}


def _gen_row(s: ListSample, prefix: str = "") -> dict:
    m = s.metrics
    return {
        prefix + "tokens": list(s.tokens),
        prefix + "prompt_len": s.prompt_len,
        prefix + "prefix_len": s.prefix_len,
        prefix + "stopped": s.stopped,
        prefix + "n_items": m.n_items,
        prefix + "n_tokens": m.n_tokens,
        prefix + "repeated_items": m.repeated_items,
        prefix + "diversity": float(m.diversity),
        prefix + "filler_count": m.filler_count,
        prefix + "filler_items": list(m.filler_items),
        prefix + "reached_end": m.reached_end,
        prefix + "metric_at_attribution": None if m.metric_at_attribution is None else float(m.metric_at_attribution),
        prefix + "empty_items": m.empty_items,
    }


def _choice_rows(choices: Sequence[AblationChoice], **extra) -> list[dict]:
    return [
        {**extra, "order": i, "sae_id": c.sae_id, "feature": c.feature, "pos": c.pos, "mode": c.mode, "kind": c.kind, "value": float(c.value)}
        for i, c in enumerate(choices)
    ]


def _attribution_rows(scope: str, keys: Sequence[str], by_sae: dict[str, SAEListAttribution], out: dict[str, list]) -> None:
    for sae_id, attr in by_sae.items():
        for index, key in enumerate(keys):
            out["attribution_summary"].append(
                {
                    "scope": scope,
                    "key": key,
                    "index": index,
                    "sae_id": sae_id,
                    "hook_name": attr.hook_name,
                    "d_sae": attr.d_sae,
                    "attribution_pos": attr.attribution_pos[index] if index < len(attr.attribution_pos) else None,
                    "metric": float(attr.metric[index]),
                    "feature_total": float(attr.feature_total[index]),
                    "error_total": float(attr.error_total[index]),
                    "method": attr.method,
                    "ig_steps": attr.ig_steps,
                }
            )
            for rank, p in enumerate(attr.top[index]):
                out["attribution_pairs"].append(
                    {"scope": scope, "key": key, "index": index, "sae_id": sae_id, "rank": rank, "pos": p.pos, "feature": p.feature, "attribution": float(p.attribution), "activation": float(p.activation)}
                )
            row = np.asarray(attr.max_activation[index])
            for feature in np.flatnonzero(row):
                out["max_activations"].append({"scope": scope, "key": key, "index": index, "sae_id": sae_id, "feature": int(feature), "value": float(row[feature])})


def workspace_rows(ws: Workspace, decode: Callable[[list[int]], str] | None = None, token_string: Callable[[int], str] | None = None) -> dict[str, list[dict]]:
    """Every table of the format as row dicts (``decode``/``token_string``: optional text columns)."""
    out: dict[str, list[dict]] = {name: [] for name in SCHEMAS}
    used: set[int] = set()
    # removed samples are written too (flagged), so that a removal can be undone after a save
    every = [(key, st, False) for key, st in ws.samples.items()] + [(key, st, True) for key, st in ws.removed.items()]
    for key, st, removed in every:
        s = st.sample
        spec = s.spec
        used.update(s.tokens)
        out["samples"].append(
            {
                **sample_identity(key, spec),
                "preset": st.preset,
                **_gen_row(s),
                "curve": None if st.curve is None else [float(v) for v in st.curve],
                "note": st.note,
                "removed": removed,
                "text": None if decode is None else decode(list(s.continuation)),
            }
        )
        out["choices"] += _choice_rows(st.choices, key=key)
        for i, run in enumerate(st.runs):
            used.update(run.base.tokens)
            used.update(run.ablated.tokens)
            out["runs"].append(
                {
                    "key": key,
                    "run": i,
                    "from_attribution_pos": run.from_attribution_pos,
                    "preset": run.preset,
                    "metric_before": run.metric_before,
                    "metric_under_ablation": run.metric_under_ablation,
                    "activations_zeroed": run.activations_zeroed,
                    **_gen_row(run.base, "base_"),
                    "base_curve": [float(v) for v in run.base_curve],
                    **_gen_row(run.ablated, "ablated_"),
                    "ablated_curve": [float(v) for v in run.ablated_curve],
                }
            )
            out["run_choices"] += _choice_rows(run.choices, key=key, run=i)
        if st.attribution is not None:
            _attribution_rows("sample", [key], st.attribution, out)
    if ws.batch is not None:
        _attribution_rows("batch", ws.batch.keys, ws.batch.by_sae, out)
    out["labels"] = [{"sae_id": sae_id, "feature": feature, "label": text} for (sae_id, feature), text in sorted(ws.labels.items())]
    for i, circuit in enumerate(ws.circuits):
        out["circuits"].append(
            {
                "index": i,
                "samples": list(circuit.samples),
                "level": circuit.settings.level,
                "n_nodes": len(circuit.nodes),
                "n_edges": len(circuit.edges),
                "metric": circuit.metric,
                "recovered": circuit.recovered,
                "completeness": circuit.completeness,
                "n_for_0_8": circuit.n_for(0.8),
                "data": json.dumps(circuit.to_dict()),
            }
        )
    for i, exp in enumerate(ws.experiments):
        out["experiments"].append(
            {"index": i, "name": exp.settings.interventions.name or exp.settings.interventions.describe()[:200], "units": exp.units_total, "done": exp.done, "data": json.dumps(exp.to_dict())}
        )
    out["graphs"] = [{"index": i, **graph.summary(), "data": json.dumps(graph.to_dict())} for i, graph in enumerate(ws.graphs)]
    if token_string is not None:
        out["vocab"] = [{"id": i, "string": token_string(i)} for i in sorted(used)]
    return out


def workspace_fields(ws: Workspace) -> dict:
    """The manifest's summary of a workspace: templates, topics, SAEs, presets, seeds, batch."""
    samples = [st.sample.spec for st in ws.samples.values()]
    presets = sorted({st.preset for st in ws.samples.values()} | {r.preset for st in ws.samples.values() for r in st.runs})
    saes = []
    for st in ws.samples.values():
        saes += list(st.attribution or {})
        for run in st.runs:
            saes += [c.sae_id for c in run.choices]
    if ws.batch is not None:
        saes += list(ws.batch.by_sae)
    return {
        "templates": list(dict.fromkeys(s.template for s in samples)),
        "topics": list(dict.fromkeys(s.topic for s in samples)),
        "saes": list(dict.fromkeys(saes)),
        "sampling": {p: _preset_dict(p) for p in presets},
        "seeds": {key: st.sample.spec.seed for key, st in ws.samples.items()},
        "batch": None if ws.batch is None else {"keys": list(ws.batch.keys), "saes": list(ws.batch.by_sae)},
        "notes": ws.notes,
        "counts": {
            "samples": len(ws.samples),
            "runs": sum(len(st.runs) for st in ws.samples.values()),
            "attributed": sum(st.attribution is not None for st in ws.samples.values()),
            "notes": sum(bool(st.note) for st in ws.samples.values()),
            "removed": len(ws.removed),
        },
    }


def _preset_dict(name: str) -> dict | None:
    s = SAMPLING_PRESETS.get(name)
    if s is None:
        return None
    return {"temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k, "max_new_tokens": s.max_new_tokens}


def _sample_from(row: dict, spec: PromptSpec, ids: TokenIds, prefix: str, where: str) -> ListSample:
    tokens = tuple(int(t) for t in row[prefix + "tokens"])
    prompt_len = int(row[prefix + "prompt_len"])
    try:
        structure = parse_structure(tokens, ids, prompt_len - 1)
    except ValueError as exc:
        raise ListerError(f"{where}: {prefix}tokens do not hold the item marker at {prefix}prompt_len - 1 ({exc}); the table is damaged") from exc
    metrics = ListMetrics(
        n_items=int(row[prefix + "n_items"]),
        n_tokens=int(row[prefix + "n_tokens"]),
        repeated_items=int(row[prefix + "repeated_items"]),
        diversity=float(row[prefix + "diversity"]),
        filler_count=int(row[prefix + "filler_count"]),
        filler_items=tuple(int(i) for i in row[prefix + "filler_items"] or ()),
        reached_end=bool(row[prefix + "reached_end"]),
        metric_at_attribution=None if row[prefix + "metric_at_attribution"] is None else float(row[prefix + "metric_at_attribution"]),
        # a session saved before the column: counted from the saved tokens
        empty_items=(
            empty_marker_lines(tokens, ids, structure, prompt_len - 1)
            if row.get(prefix + "empty_items") is None
            else int(row[prefix + "empty_items"])
        ),
    )
    prefix_len = row[prefix + "prefix_len"]
    return ListSample(spec, prompt_len, tokens, bool(row[prefix + "stopped"]), structure, metrics, None if prefix_len is None else int(prefix_len))


def _choices_from(rows: list[dict]) -> list[AblationChoice]:
    rows = sorted(rows, key=lambda r: r["order"])
    out = []
    for r in rows:
        if r["mode"] not in ("position", "every"):
            raise ListerError(f"choices: mode {r['mode']!r} of {r['sae_id']} f{r['feature']} is not 'position' or 'every'")
        kind = r.get("kind") or "zero"  # absent in older files: zero-ablation
        if kind not in KINDS:
            raise ListerError(f"choices: kind {kind!r} of {r['sae_id']} f{r['feature']} is not one of {', '.join(KINDS)}")
        value = float(r.get("value") or 0.0)
        if not math.isfinite(value):
            raise ListerError(f"choices: value {value!r} of {r['sae_id']} f{r['feature']} is not a finite number")
        out.append(AblationChoice(str(r["sae_id"]), int(r["feature"]), int(r["pos"]), r["mode"], kind, value))
    return out


def _attributions_from(summary: list[dict], pairs: list[dict], acts: list[dict]) -> dict[str, SAEListAttribution]:
    """One SAEListAttribution per SAE from the rows of one attribution (its indices 0..n-1)."""
    by_sae: dict[str, list[dict]] = {}
    for r in summary:
        by_sae.setdefault(r["sae_id"], []).append(r)
    out: dict[str, SAEListAttribution] = {}
    for sae_id, rows in by_sae.items():
        rows.sort(key=lambda r: r["index"])
        n = len(rows)
        d_sae = int(rows[0]["d_sae"])
        top: list[list[Pair]] = [[] for _ in range(n)]
        for p in sorted((p for p in pairs if p["sae_id"] == sae_id), key=lambda p: (p["index"], p["rank"])):
            top[p["index"]].append(Pair(sae_id, int(p["index"]), int(p["pos"]), int(p["feature"]), float(p["attribution"]), float(p["activation"])))
        max_act = np.zeros((n, d_sae), dtype=np.float32)
        for a in acts:
            if a["sae_id"] == sae_id:
                max_act[a["index"], a["feature"]] = a["value"]
        out[sae_id] = SAEListAttribution(
            sae_id,
            str(rows[0]["hook_name"]),
            d_sae,
            top=top,
            max_activation=max_act,
            feature_total=np.array([r["feature_total"] for r in rows], dtype=np.float32),
            error_total=np.array([r["error_total"] for r in rows], dtype=np.float32),
            metric=np.array([r["metric"] for r in rows], dtype=np.float32),
            attribution_pos=[int(r["attribution_pos"]) for r in rows if r["attribution_pos"] is not None],
            method=rows[0].get("method") or "grad",
            ig_steps=int(rows[0].get("ig_steps") or 0),
        )
    return out


def _group(rows: list[dict], *keys: str) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def _checked_label_target(row: dict, i: int, sites: list[str], widths: dict[str, int]) -> tuple[str, int]:
    """A labels row's (SAE, feature), refused unless the SAE is one of the session's sites and the
    feature lies inside its width (an SAE ``../../etc``, a feature -1 or 10^9 name damage)."""
    sae_id, feature = row.get("sae_id"), row.get("feature")
    where = f"labels table, row {i}"
    if not isinstance(sae_id, str) or (sites and sae_id not in sites) or not check_site_id(sae_id):
        shown = repr(sae_id)[:60]
        raise ListerError(f"{where}: column sae_id is {shown}; valid: one of the session's SAEs ({', '.join(sites) or 'none'}); the session is damaged")
    width = widths.get(sae_id, MAX_D_SAE)
    if isinstance(feature, bool) or not isinstance(feature, int) or not 0 <= feature < width:
        raise ListerError(f"{where}: column feature is {feature!r}; valid: 0..{width - 1} for {sae_id}; the session is damaged")
    return sae_id, feature


def workspace_from_rows(manifest: dict, tables: dict[str, list[dict]]) -> Workspace:
    """The Workspace a (version-1) manifest and its tables describe."""
    model = ModelInfo.from_dict(manifest["model"])
    ws = Workspace(model.name, notes=str(manifest.get("notes") or ""))
    choices = _group(tables.get("choices", []), "key")
    run_choices = _group(tables.get("run_choices", []), "key", "run")
    runs = _group(tables.get("runs", []), "key")
    for i, row in enumerate(tables["samples"]):
        where = f"samples table, row {i} ({row.get('key')})"
        spec = PromptSpec(str(row["template"]), str(row["topic"]), int(row["sample"]), int(row["seed"]))
        sample = _sample_from(row, spec, model.ids, "", where)
        key = str(row["key"])
        st = SampleState(sample, str(row["preset"]), None if row["curve"] is None else tuple(float(v) for v in row["curve"]), note=row["note"] or "")
        st.choices = _choices_from(choices.get((key,), []))
        for r in sorted(runs.get((key,), []), key=lambda r: r["run"]):
            rwhere = f"runs table, {key} run {r['run']}"
            st.runs.append(
                AblationRun(
                    key,
                    tuple(_choices_from(run_choices.get((key, r["run"]), []))),
                    bool(r["from_attribution_pos"]),
                    str(r["preset"]),
                    _sample_from(r, spec, model.ids, "base_", rwhere),
                    _sample_from(r, spec, model.ids, "ablated_", rwhere),
                    tuple(float(v) for v in r["base_curve"] or ()),
                    tuple(float(v) for v in r["ablated_curve"] or ()),
                    r["metric_before"],
                    r["metric_under_ablation"],
                    r.get("activations_zeroed"),
                )
            )
        (ws.removed if row.get("removed") else ws.samples)[key] = st
    scopes = {scope: [r for r in tables.get("attribution_summary", []) if r["scope"] == scope] for scope in ("sample", "batch")}
    pairs = _group(tables.get("attribution_pairs", []), "scope", "key")
    acts = _group(tables.get("max_activations", []), "scope", "key")
    for (key,), rows in _group(scopes["sample"], "key").items():
        owner = ws.samples if key in ws.samples else ws.removed
        if key not in owner:
            raise ListerError(f"attribution_summary: sample {key!r} is not in the samples table; the session is damaged")
        owner[key].attribution = _attributions_from(rows, pairs.get(("sample", key), []), acts.get(("sample", key), []))
    widths = {sae: a.d_sae for st in [*ws.samples.values(), *ws.removed.values()] for sae, a in (st.attribution or {}).items()}
    for i, r in enumerate(tables.get("labels", [])):
        if r.get("label"):
            sae_id, feature = _checked_label_target(r, i, [s.id for s in model.sites], widths)
            ws.labels[(sae_id, feature)] = one_line(str(r["label"]))  # at most LABEL_MAX_CHARS, as set_label keeps it
    batch = manifest.get("batch")
    if batch and scopes["batch"]:
        keys = list(batch["keys"])
        bpairs = [p for p in tables.get("attribution_pairs", []) if p["scope"] == "batch"]
        bacts = [a for a in tables.get("max_activations", []) if a["scope"] == "batch"]
        ws.batch = BatchAttribution(keys, _attributions_from(scopes["batch"], bpairs, bacts))
    for row in sorted(tables.get("circuits", []), key=lambda r: r["index"]):
        try:
            # depth and size checked before parsing: a circuit nested 100,000 deep is damage, not a RecursionError
            ws.circuits.append(Circuit.from_dict(parse_json(str(row["data"]), f"circuits table, row {row.get('index')}")))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            raise ListerError(f"circuits table, row {row.get('index')}: the circuit's JSON is damaged ({exc})") from exc
    from lister_tui.core.study.intervention_batch import BatchExperiment

    for row in sorted(tables.get("experiments", []), key=lambda r: r["index"]):
        try:
            ws.experiments.append(BatchExperiment.from_dict(parse_json(str(row["data"]), f"experiments table, row {row.get('index')}")))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            raise ListerError(f"experiments table, row {row.get('index')}: the experiment's JSON is damaged ({exc})") from exc
    ws.graphs = graphs_from_rows(tables.get("graphs", []), {*ws.samples, *ws.removed})
    return ws


MIGRATIONS: dict[int, Callable[[dict], tuple[dict, dict[str, list[dict]] | None]]] = {0: migrate_v0, 1: migrate_v1}
