"""A session's tables for papers and notebooks: CSV, Parquet, Markdown or LaTeX (pandas).

- ``generations``: one row per list: each sample, and each run's base and ablated
  regeneration, with its list metrics, token ids and text;
- ``attributions``: each sample's top (position, feature) pairs per SAE, with the
  feature's label;
- ``ablations``: one row per ablation tried: the features switched off and, per
  metric, base, ablated and ablated − base;
- ``labels``: the user's name of each labelled feature;
- ``sae_summary``: per SAE: attribution averages, the most frequent top feature, and
  the mean change of the runs that ablated only that SAE's features;
- ``graphs``, ``graph_nodes``, ``graph_edges``: each saved attribution graph (sample, targets,
  settings, scores, sizes, the user's supernodes), its kept nodes and its kept edges;
- ``sweep_*``: for a session opened from a sweep folder, the sweep's own tables (and
  all an export of a sweep folder itself writes).

Floats are written at full precision (Markdown and LaTeX too), so every format
loads back to the same values. :func:`session_export` and :func:`sweep_export` are the
one definition of what an export holds, for the explorer's **E** and ``lister-tui export``.

Long because the tables, every format's writer and the Markdown reader live together, so
that the explorer and the CLI cannot write different files.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.format import sample_identity
from lister_tui.core.sessions.workspace import DELTA_METRICS, AblationChoice, Workspace
from lister_tui.core.study.circuits.graph import Edge, Node
from lister_tui.core.study.columns import current_name, migrate_frame

FORMATS = {"csv": "csv", "parquet": "parquet", "markdown": "md", "latex": "tex"}
TABLES = ("generations", "attributions", "ablations", "labels", "sae_summary", "circuits", "circuit_nodes", "circuit_edges", "experiments", "graphs", "graph_nodes", "graph_edges")
_LIST_METRICS = ("n_items", "n_tokens", "repeated_items", "diversity", "filler_count", "empty_items", "reached_end", "metric_at_attribution")
# a metric's column: the workspace's field name under the tables' name (metric_at_attribution is the
# plain model's metric at the list's own last item: plain_metric_at_last_item)
_COLUMN = {name: current_name(name) for name in (*_LIST_METRICS, *DELTA_METRICS)}


def _choice_text(c: AblationChoice, ws: Workspace | None = None) -> str:
    text = f"{c.sae_id} f{c.feature}@{'all' if c.mode == 'every' else c.pos}"
    label = ws.label(c.sae_id, c.feature) if ws is not None else ""
    return f"{text} ({label})" if label else text


# Each table's columns, so that an empty table is still written with its header (a
# header-less, 1-byte CSV is one that pandas and spreadsheets refuse).
_ID_COLUMNS = ["key", "template", "topic", "sample", "seed"]
EMPTY_COLUMNS: dict[str, list[str]] = {
    "generations": _ID_COLUMNS + ["preset", "kind", "run", "prompt_len", "regenerated_from", *(_COLUMN[m] for m in _LIST_METRICS), "stopped", "token_ids", "text", "note"],
    "attributions": _ID_COLUMNS
    + ["sae", "hook_name", "rank", "pos", "token", "feature", "label", "attribution", "activation", "attribution_pos", "metric", "error_share"],
    "ablations": _ID_COLUMNS
    + ["run", "preset", "regenerated_from", "from_attribution_pos", "n_features", "saes", "features", "activations_zeroed"]
    + ["metric_before", "metric_under_ablation", "direct_metric_change"]
    + [f"{p}_{_COLUMN[name]}" for name in DELTA_METRICS for p in ("base", "ablated", "delta")],
}


def _frame(name: str, rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=EMPTY_COLUMNS[name])


def _gen(kind: str, key: str, st, s, run: int | None, decode) -> dict:
    spec = s.spec
    m = s.metrics
    return {
        **sample_identity(key, spec),
        "preset": st.preset,
        "kind": kind,
        "run": run,
        "prompt_len": s.prompt_len,
        "regenerated_from": s.prefix_len,
        **{_COLUMN[name]: getattr(m, name) for name in _LIST_METRICS},
        "stopped": s.stopped,
        "token_ids": " ".join(str(t) for t in s.tokens),
        "text": decode(list(s.continuation)) if decode else None,
        "note": st.note if kind == "sample" else None,
    }


def export_tables(ws: Workspace, decode: Callable[[list[int]], str] | None = None, token_string: Callable[[int], str] | None = None) -> dict[str, pd.DataFrame]:
    """The export tables of a workspace (``decode``/``token_string`` add text columns)."""
    gens, attrs, abls = [], [], []
    for key, st in ws.samples.items():
        gens.append(_gen("sample", key, st, st.sample, None, decode))
        spec = st.sample.spec
        for i, run in enumerate(st.runs):
            gens.append(_gen("base", key, st, run.base, i, decode))
            gens.append(_gen("ablated", key, st, run.ablated, i, decode))
            row = {
                **sample_identity(key, spec),
                "run": i,
                "preset": run.preset,
                "regenerated_from": run.ablated.prefix_len,
                "from_attribution_pos": run.from_attribution_pos,
                "n_features": len(run.choices),
                "saes": " ".join(dict.fromkeys(c.sae_id for c in run.choices)),
                "features": "; ".join(_choice_text(c, ws) for c in run.choices),
                # non-zero activations the ablation switched off (0: it changed nothing; None: not recorded)
                "activations_zeroed": run.activations_zeroed,
                "metric_before": run.metric_before,
                "metric_under_ablation": run.metric_under_ablation,
                "direct_metric_change": None
                if run.metric_before is None or run.metric_under_ablation is None
                else run.metric_under_ablation - run.metric_before,
            }
            for name, (b, a, d) in run.deltas().items():
                column = _COLUMN[name]
                row[f"base_{column}"], row[f"ablated_{column}"], row[f"delta_{column}"] = b, a, d
            abls.append(row)
        for sae_id, attr in (st.attribution or {}).items():
            share = attr.error_share(0)
            for rank, p in enumerate(attr.top[0]):
                attrs.append(
                    {
                        **sample_identity(key, spec),
                        "sae": sae_id,
                        "hook_name": attr.hook_name,
                        "rank": rank + 1,
                        "pos": p.pos,
                        "token": token_string(st.sample.tokens[p.pos]) if token_string else None,
                        "feature": p.feature,
                        "label": ws.label(sae_id, p.feature),
                        "attribution": float(p.attribution),
                        "activation": float(p.activation),
                        "attribution_pos": attr.attribution_pos[0] if attr.attribution_pos else None,
                        "metric": float(attr.metric[0]),
                        "error_share": float(share),
                    }
                )
    tables = {
        "generations": _frame("generations", gens),
        "attributions": _frame("attributions", attrs),
        "ablations": _frame("ablations", abls),
        "labels": pd.DataFrame(
            [{"sae": sae_id, "feature": feature, "label": text} for (sae_id, feature), text in sorted(ws.labels.items())],
            columns=["sae", "feature", "label"],
        ),
        "sae_summary": sae_summary(ws),
        **circuit_tables(ws),
        "experiments": experiment_table(ws),
        **graph_tables(ws),
    }
    for name, frame in tables.items():
        tables[name] = _tidy(frame)
    return tables


def sae_summary(ws: Workspace, k: int = 5) -> pd.DataFrame:
    """Per SAE: attribution averages over the attributed samples, and the mean change of the
    runs that ablated features of that SAE only."""
    rows = []
    saes: list[str] = []
    for st in ws.samples.values():
        saes += list(st.attribution or {})
        for run in st.runs:
            saes += [c.sae_id for c in run.choices]
    for sae_id in dict.fromkeys(saes):
        attributed = [st.attribution[sae_id] for st in ws.samples.values() if st.attribution and sae_id in st.attribution]
        top = Counter(p.feature for a in attributed for p in a.top[0][:k])
        only = [r for st in ws.samples.values() for r in st.runs if r.choices and all(c.sae_id == sae_id for c in r.choices)]
        using = [r for st in ws.samples.values() for r in st.runs if any(c.sae_id == sae_id for c in r.choices)]
        row = {
            "sae": sae_id,
            "samples_attributed": len(attributed),
            "metric_mean": _mean([float(a.metric[0]) for a in attributed]),
            "feature_total_mean": _mean([float(a.feature_total[0]) for a in attributed]),
            "error_total_mean": _mean([float(a.error_total[0]) for a in attributed]),
            "error_share_mean": _mean([a.error_share(0) for a in attributed]),
            f"most_frequent_top{k}_feature": top.most_common(1)[0][0] if top else None,
            f"most_frequent_top{k}_feature_samples": top.most_common(1)[0][1] if top else None,
            "runs_using": len(using),
            "runs_only_this_sae": len(only),
        }
        for name in DELTA_METRICS:
            row[f"delta_{_COLUMN[name]}_mean"] = _mean([r.deltas()[name][2] for r in only])
        rows.append(row)
    if not rows:  # the header of an empty summary
        columns = ["sae", "samples_attributed", "metric_mean", "feature_total_mean", "error_total_mean", "error_share_mean"]
        columns += [f"most_frequent_top{k}_feature", f"most_frequent_top{k}_feature_samples", "runs_using", "runs_only_this_sae"]
        return pd.DataFrame(columns=columns + [f"delta_{_COLUMN[name]}_mean" for name in DELTA_METRICS])
    return pd.DataFrame(rows)


CIRCUIT_COLUMNS = [
    "circuit", "samples", "level", "sites", "nodes_per_site", "method", "ablation", "n_nodes", "n_edges",
    "metric", "metric_empty", "recovered", "completeness", "n_for_0_8", "faithfulness",
]


def circuit_tables(ws: Workspace) -> dict[str, pd.DataFrame]:
    """Every circuit of the session: one summary row each, and its nodes and edges (with the circuit's index)."""
    summary, nodes, edges = [], [], []
    for i, c in enumerate(ws.circuits):
        s = c.settings
        summary.append(
            {
                "circuit": i,
                "samples": " ".join(c.samples),
                "level": s.level,
                "sites": " ".join(s.sites),
                "nodes_per_site": s.nodes_per_site,
                "method": s.method,
                "ablation": s.ablation,
                "n_nodes": len(c.nodes),
                "n_edges": len(c.edges),
                "metric": c.metric,
                "metric_empty": c.metric_empty,
                "recovered": c.recovered,
                "completeness": c.completeness,
                "n_for_0_8": c.n_for(0.8),
                "faithfulness": " ".join(f"{p.n_nodes}:{p.recovered:.3f}" for p in c.faithfulness),
            }
        )
        nodes += [{"circuit": i, **n.to_dict()} for n in c.nodes]
        edges += [{"circuit": i, **e.to_dict()} for e in c.edges]
    # explicit columns: a session without circuits still exports each table with its header
    return {
        "circuits": pd.DataFrame(summary, columns=CIRCUIT_COLUMNS),
        "circuit_nodes": pd.DataFrame(nodes, columns=["circuit", *Node.__dataclass_fields__]),
        "circuit_edges": pd.DataFrame(edges, columns=["circuit", *Edge.__dataclass_fields__]),
    }


GRAPH_COLUMNS = [
    "graph", "sample", "targets", "attention_features", "node_threshold", "edge_threshold", "replacement_score",
    "completeness_score", "n_nodes", "n_kept", "n_edges", "supernodes", "created",
]
GRAPH_NODE_COLUMNS = ["graph", "id", "kind", "site", "layer", "pos", "token", "feature", "label", "activation", "influence", "supernodes"]
GRAPH_EDGE_COLUMNS = ["graph", "source", "target", "weight"]


def graph_tables(ws: Workspace) -> dict[str, pd.DataFrame]:
    """Every saved attribution graph: one summary row each, its kept nodes (with the user's supernodes
    each belongs to) and its kept edges, with the graph's index."""
    summary, nodes, edges = [], [], []
    for i, g in enumerate(ws.graphs):
        row = g.summary()
        summary.append({"graph": i, **row, "targets": " ".join(map(str, g.targets)), "supernodes": "; ".join(row["supernodes"])})
        groups: dict[str, list[str]] = {}
        for s in g.supernodes:
            for m in s.members:
                groups.setdefault(m, []).append(s.name)
        nodes += [
            {"graph": i, **{c: n.get(c) for c in GRAPH_NODE_COLUMNS[1:-1]}, "supernodes": "; ".join(groups.get(n["id"], []))}
            for n in g.graph["nodes"]
        ]
        edges += [{"graph": i, "source": e["source"], "target": e["target"], "weight": e["weight"]} for e in g.graph["edges"]]
    # explicit columns: a session without graphs still exports each table with its header
    return {
        "graphs": pd.DataFrame(summary, columns=GRAPH_COLUMNS),
        "graph_nodes": pd.DataFrame(nodes, columns=GRAPH_NODE_COLUMNS),
        "graph_edges": pd.DataFrame(edges, columns=GRAPH_EDGE_COLUMNS),
    }


def experiment_table(ws: Workspace) -> pd.DataFrame:
    """Every batch experiment's summary: per experiment, template and condition, n and each measure's
    paired mean, 95% interval (its method in ci_method) and sign-flip p-value."""
    from lister_tui.core.study.intervention_batch import MEASURES

    rows = []
    for i, exp in enumerate(ws.experiments):
        s = exp.settings
        for row in exp.summary():
            rows.append(
                {
                    "experiment": i,
                    "name": s.interventions.name,
                    "interventions": s.interventions.describe(),
                    "seeds_per_list": s.n_seeds,
                    "start": s.start,
                    "preset": s.preset,
                    "done": exp.done,
                    **row,
                }
            )
    columns = ["experiment", "name", "interventions", "seeds_per_list", "start", "preset", "done", "template", "condition", "n"]
    columns += ["n_items_base_mean", "reached_end_base_rate"]
    columns += [f"{m}_{p}" for m in MEASURES for p in ("n", "mean", "ci_low", "ci_high", "p", "sd")] + ["ci_method"]
    return pd.DataFrame(rows, columns=columns)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(values) / len(values) if values else None


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable integer columns stay integers (not floats with NaN) in every format."""
    for column in frame.columns:
        values = frame[column]
        if values.dtype == object and values.map(lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool))).all() and values.notna().any():
            frame[column] = values.astype("Int64")
        elif values.dtype == object and values.map(lambda v: v is None or isinstance(v, (int, float)) and not isinstance(v, bool)).all() and values.notna().any():
            frame[column] = values.astype("float64")
    return frame


# The sweep's tables, in the order a sweep writes them; exported as ``sweep_<name>``.
SWEEP_TABLES = ("by_condition", "by_condition_and_topic", "by_topic", "generations", "faithfulness_by_sae", "faithfulness_pairs")


def sweep_folder_tables(folder: str | Path) -> dict[str, pd.DataFrame]:
    """A sweep output folder's tables as ``sweep_<name>`` (read from its Parquet files, old column
    names migrated); a table the sweep did not write (e.g. no faithfulness check) is left out."""
    folder = Path(folder)
    out = {}
    for name in SWEEP_TABLES:
        path = folder / f"{name}.parquet"
        if path.is_file():
            try:
                out[f"sweep_{name}"] = migrate_frame(pd.read_parquet(path))
            except Exception as exc:  # pyarrow raises several types for a bad file
                raise ListerError(f"sweep table {path} is not readable Parquet ({exc}); run the sweep again (or --resume it)") from exc
    return out


def sweep_tables(manifest: dict) -> dict[str, pd.DataFrame]:
    """The tables of the sweep a session was opened from (if its folder is still there)."""
    source = manifest.get("source") or {}
    if source.get("kind") != "sweep":
        return {}
    folder = Path(source.get("path", ""))
    return sweep_folder_tables(folder) if folder.is_dir() else {}


def session_export(
    ws: Workspace,
    manifest: dict | None,
    decode: Callable[[list[int]], str] | None = None,
    token_string: Callable[[int], str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every table an export of a session writes, the explorer's **E** and ``lister-tui export`` alike:
    the workspace's tables, and for a session opened from a sweep (``manifest["source"]``) the
    sweep's own tables as ``sweep_*``."""
    tables = export_tables(ws, decode, token_string)
    tables.update(sweep_tables(manifest or {}))
    return tables


def sweep_export(folder: str | Path) -> dict[str, pd.DataFrame]:
    """What ``lister-tui export SWEEP_FOLDER`` writes: the sweep's tables under the names a session
    opened from that sweep exports them (``sweep_*``), without sampling anything again."""
    tables = sweep_folder_tables(folder)
    if not tables:
        raise ListerError(
            f"the sweep in {folder} has no tables yet (no by_condition.parquet or the like); "
            f"go on with it with lister-tui sweep --resume {folder}"
        )
    return tables


# --- writing ----------------------------------------------------------------------------------


# Characters that end a line for str.splitlines (and for many editors) besides "\n": written as
# \r or \uXXXX, so a note holding one reads back as it was.
_LINE_BREAKS = frozenset("\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "|": "\\|"}


def _cell(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    return "".join(_ESCAPES.get(ch) or (f"\\u{ord(ch):04x}" if ch in _LINE_BREAKS else ch) for ch in str(value))


# A column's kind, written as its Markdown alignment so that :func:`read_markdown` reads each cell
# back as what it was: numbers right-aligned (an empty cell is NaN), booleans centred (True/False),
# text left-aligned (an empty cell is the empty string, never NaN).
_ALIGN = {"number": "---:", "bool": ":---:", "text": ":---"}


def _kind(column: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(column.dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(column.dtype):
        return "number"
    present = [v for v in column if not (v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)))]
    if present and all(isinstance(v, (bool, np.bool_)) for v in present):
        return "bool"
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) for v in present):
        return "number"  # an all-missing column too: it reads back as NaN, as it always did
    return "text"


def to_markdown(frame: pd.DataFrame, title: str) -> str:
    lines = [f"# {title}", ""]
    lines.append("| " + " | ".join(frame.columns) + " |")
    lines.append("|" + "|".join(_ALIGN[_kind(frame[c])] for c in frame.columns) + "|")
    for row in frame.astype(object).itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _latex_cell(value) -> str:
    return _cell(value)


def to_latex(frame: pd.DataFrame, title: str) -> str:
    body = frame.astype(object).map(_latex_cell) if len(frame) else frame.astype(str)
    text = body.to_latex(index=False, escape=True, longtable=len(frame) > 40, caption=title.replace("_", " "), label=f"tab:{title}")
    return text


def write_exports(tables: dict[str, pd.DataFrame], out: str | Path, fmt: str) -> list[Path]:
    """Write every table to ``out`` in ``fmt`` (csv, parquet, markdown or latex); returns the files."""
    if fmt not in FORMATS:
        raise ListerError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ListerError(f"cannot create the export folder {out} ({exc.strerror or exc}); give another with --out") from exc
    files = []
    for name, frame in tables.items():
        path = out / f"{name}.{FORMATS[fmt]}"
        try:
            if fmt == "csv":
                frame.to_csv(path, index=False)
            elif fmt == "parquet":
                frame.to_parquet(path, index=False)
            elif fmt == "markdown":
                path.write_text(to_markdown(frame, name), encoding="utf-8")
            else:
                path.write_text(to_latex(frame, name), encoding="utf-8")
        except OSError as exc:
            raise ListerError(f"cannot write {path} ({exc.strerror or exc}); give another folder with --out") from exc
        files.append(path)
    return files


def _unpad(cell: str) -> str:
    """A cell without the one blank on each side that :func:`to_markdown` puts there."""
    return cell[1:-1] if len(cell) >= 2 and cell[0] == " " and cell[-1] == " " else cell.strip()


def read_markdown(path: str | Path) -> pd.DataFrame:
    """A table written by :func:`to_markdown`, back as a DataFrame: each column read as the kind its
    alignment says (numbers, booleans, text; a file without alignments: numbers where every cell is one)."""
    rows = []
    kinds: list[str] = []
    # split on "\n" alone: every other line break inside a cell was written escaped
    for line in Path(path).read_text(encoding="utf-8").split("\n"):
        if line.startswith("|:") or line.startswith("|-"):
            by_align = {v: k for k, v in _ALIGN.items()}
            kinds = [by_align.get(a.strip(), "") for a in line.rstrip("\r ").strip("|").split("|")]
            continue
        if line.startswith("|"):
            cells, cur, i, body = [], "", 0, line.rstrip("\r ")[1:-1]  # a CRLF copy of the file reads too
            while i < len(body):
                ch = body[i]
                if ch == "\\" and i + 1 < len(body):
                    nxt = body[i + 1]
                    code = body[i + 2 : i + 6]
                    if nxt == "u" and len(code) == 4 and all(c in "0123456789abcdef" for c in code):
                        cur += chr(int(code, 16))
                        i += 6
                        continue
                    cur += {"n": "\n", "r": "\r", "|": "|", "\\": "\\"}.get(nxt, "\\" + nxt)
                    i += 2
                    continue
                if ch == "|":
                    cells.append(_unpad(cur))
                    cur = ""
                else:
                    cur += ch
                i += 1
            cells.append(_unpad(cur))
            rows.append(cells)
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows[1:], columns=rows[0])
    for i, column in enumerate(frame.columns):
        kind = kinds[i] if i < len(kinds) else ""
        cells = frame[column]
        if kind == "text":
            continue
        if kind == "bool":
            values = {"True": True, "False": False}
            if set(cells) <= set(values):
                frame[column] = cells.map(values).astype(bool)
            elif set(cells) <= set(values) | {""}:
                frame[column] = cells.map(lambda v: values.get(v, None)).astype(object)
            continue
        try:
            frame[column] = pd.to_numeric(cells.replace("", None))
        except (ValueError, TypeError):
            if kind == "":
                frame[column] = cells.replace("", None)  # a file written before the alignments: as it was read then
    return frame
