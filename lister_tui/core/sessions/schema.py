"""The session format's schema: its name and version, every table's columns, the manifest's model
fields, and the checks and migrations of a manifest's version (sessions/README.md describes every
field and column).

Format versions:

- **2** (current): version 1 plus the table ``experiments`` (every batch experiment of an
  intervention set, its settings, units and rows as JSON). :func:`migrate_v1` reads a
  version-1 session as version 2 with no experiments; the next save writes version 2 and
  keeps the old manifest as ``manifest.v1.json``.
- **1**: manifest + Parquet tables ``samples``, ``choices``, ``runs``,
  ``run_choices``, ``attribution_summary``, ``attribution_pairs``,
  ``max_activations``, ``labels`` (added later; a session without it has no labels)
  and ``vocab``.
- **0**: the JSON-only draft of the 0.1 development series: one ``manifest.json`` with
  ``"version": 0``, the model as a plain name and the samples (with their metrics and
  their ablation choices) inline. :func:`migrate_v0` turns it into version 1; the next
  save writes version 1 and keeps the old manifest as ``manifest.v0.json``.

Long because every table's columns live here, each with the sentence that describes it, so
that the writer, the reader, the exports and the fuzzers share one definition; optional
tables added within a version (``circuits``, ``graphs``) read as empty in older sessions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import pyarrow as pa

from lister_tui.core.engine.token_ids import TokenIds
from lister_tui.core.errors import ListerError

FORMAT_NAME = "lister-tui session"


FORMAT_VERSION = 2


MANIFEST = "manifest.json"


_METRIC_FIELDS = [
    pa.field("n_items", pa.int64()),
    pa.field("n_tokens", pa.int64()),
    pa.field("repeated_items", pa.int64()),
    pa.field("diversity", pa.float64()),
    pa.field("filler_count", pa.int64()),
    pa.field("filler_items", pa.list_(pa.int64())),
    pa.field("reached_end", pa.bool_()),
    pa.field("metric_at_attribution", pa.float64()),
    pa.field("empty_items", pa.int64()),  # marker lines with no text; absent in older sessions (read from the tokens)
]


_GEN_FIELDS = [
    pa.field("tokens", pa.list_(pa.int64())),
    pa.field("prompt_len", pa.int64()),
    pa.field("prefix_len", pa.int64()),
    pa.field("stopped", pa.bool_()),
    *_METRIC_FIELDS,
]


def _prefixed(prefix: str, fields: Sequence[pa.Field]) -> list[pa.Field]:
    return [pa.field(prefix + f.name, f.type) for f in fields]


_CHOICE_FIELDS = [
    pa.field("order", pa.int64()),
    pa.field("sae_id", pa.string()),
    pa.field("feature", pa.int64()),
    pa.field("pos", pa.int64()),
    pa.field("mode", pa.string()),
    # how the feature is changed (format 2): zero, scale, clamp or steer, and its value
    pa.field("kind", pa.string()),
    pa.field("value", pa.float64()),
    # a relative clamp: value is k × peak, the feature's maximum activation from its card (null: not known yet)
    pa.field("relative", pa.bool_()),
    pa.field("peak", pa.float64()),
]


SCHEMAS: dict[str, pa.Schema] = {
    # one row per sample, in the workspace's order
    "samples": pa.schema(
        [
            pa.field("key", pa.string()),
            pa.field("template", pa.string()),
            pa.field("topic", pa.string()),
            pa.field("sample", pa.int64()),
            pa.field("seed", pa.int64()),
            pa.field("preset", pa.string()),
            *_GEN_FIELDS,
            pa.field("curve", pa.list_(pa.float64())),
            pa.field("note", pa.string()),
            pa.field("text", pa.string()),
            # True: the user removed this sample; kept so that the removal can be undone
            pa.field("removed", pa.bool_()),
        ]
    ),
    # the ablation being edited per sample (not yet regenerated)
    "choices": pa.schema([pa.field("key", pa.string()), *_CHOICE_FIELDS]),
    # every regeneration tried: base and ablated twins, their curves and the direct effect
    "runs": pa.schema(
        [
            pa.field("key", pa.string()),
            pa.field("run", pa.int64()),
            pa.field("from_attribution_pos", pa.bool_()),
            pa.field("preset", pa.string()),
            pa.field("metric_before", pa.float64()),
            pa.field("metric_under_ablation", pa.float64()),
            pa.field("activations_zeroed", pa.int64()),
            *_prefixed("base_", _GEN_FIELDS),
            pa.field("base_curve", pa.list_(pa.float64())),
            *_prefixed("ablated_", _GEN_FIELDS),
            pa.field("ablated_curve", pa.list_(pa.float64())),
        ]
    ),
    "run_choices": pa.schema([pa.field("key", pa.string()), pa.field("run", pa.int64()), *_CHOICE_FIELDS]),
    # per attribution (scope "sample": a sample's own; "batch": index-th sample of the batch) and SAE
    "attribution_summary": pa.schema(
        [
            pa.field("scope", pa.string()),
            pa.field("key", pa.string()),
            pa.field("index", pa.int64()),
            pa.field("sae_id", pa.string()),
            pa.field("hook_name", pa.string()),
            pa.field("d_sae", pa.int64()),
            pa.field("attribution_pos", pa.int64()),
            pa.field("metric", pa.float32()),
            pa.field("feature_total", pa.float32()),
            pa.field("error_total", pa.float32()),
            pa.field("method", pa.string()),  # "grad" or "ig"; absent in older sessions: "grad"
            pa.field("ig_steps", pa.int64()),
        ]
    ),
    # the top (position, feature) pairs of each attribution, strongest first
    "attribution_pairs": pa.schema(
        [
            pa.field("scope", pa.string()),
            pa.field("key", pa.string()),
            pa.field("index", pa.int64()),
            pa.field("sae_id", pa.string()),
            pa.field("rank", pa.int64()),
            pa.field("pos", pa.int64()),
            pa.field("feature", pa.int64()),
            pa.field("attribution", pa.float64()),
            pa.field("activation", pa.float64()),
        ]
    ),
    # each feature's max activation over positions, non-zero entries only
    "max_activations": pa.schema(
        [
            pa.field("scope", pa.string()),
            pa.field("key", pa.string()),
            pa.field("index", pa.int64()),
            pa.field("sae_id", pa.string()),
            pa.field("feature", pa.int64()),
            pa.field("value", pa.float32()),
        ]
    ),
    # the user's one-line names of features (added to format 1 later: older sessions have none)
    "labels": pa.schema([pa.field("sae_id", pa.string()), pa.field("feature", pa.int64()), pa.field("label", pa.string())]),
    # every circuit found (added after format 1's first release: older sessions have none)
    "circuits": pa.schema(
        [
            pa.field("index", pa.int64()),
            pa.field("samples", pa.list_(pa.string())),
            pa.field("level", pa.string()),
            pa.field("n_nodes", pa.int64()),
            pa.field("n_edges", pa.int64()),
            pa.field("metric", pa.float64()),
            pa.field("recovered", pa.float64()),
            pa.field("completeness", pa.float64()),
            pa.field("n_for_0_8", pa.int64()),
            pa.field("data", pa.string()),  # the whole circuit as JSON (settings, nodes, edges, curve)
        ]
    ),
    # every batch experiment of an intervention set (format 2)
    "experiments": pa.schema(
        [
            pa.field("index", pa.int64()),
            pa.field("name", pa.string()),
            pa.field("units", pa.int64()),
            pa.field("done", pa.bool_()),
            pa.field("data", pa.string()),  # the whole experiment as JSON (settings, conditions, rows)
        ]
    ),
    # every attribution graph saved (added after format 2's first release: older sessions have none)
    "graphs": pa.schema(
        [
            pa.field("index", pa.int64()),
            pa.field("sample", pa.string()),  # the sample's key
            pa.field("targets", pa.list_(pa.int64())),
            pa.field("attention_features", pa.bool_()),
            pa.field("node_threshold", pa.float64()),
            pa.field("edge_threshold", pa.float64()),
            pa.field("replacement_score", pa.float64()),
            pa.field("completeness_score", pa.float64()),
            pa.field("n_nodes", pa.int64()),
            pa.field("n_kept", pa.int64()),
            pa.field("n_edges", pa.int64()),
            pa.field("supernodes", pa.list_(pa.string())),  # the user's groups' names
            pa.field("created", pa.string()),
            pa.field("data", pa.string()),  # the whole record as JSON (the fields above, the groups' members, the pruned graph)
        ]
    ),
    # the text of every token id used, so a session opens without its tokenizer
    "vocab": pa.schema([pa.field("id", pa.int64()), pa.field("string", pa.string())]),
}


TABLE_DESCRIPTIONS: dict[str, str] = {
    "samples": "one row per generated list: prompt spec and seed, sampling preset, token ids, list metrics, metric curve, note, removed (the user removed it; kept for undo)",
    "choices": "per sample, the features currently switched off (the ablation being edited)",
    "runs": "every regeneration tried: the base and ablated lists (token ids, metrics, curves) and the metric's direct change",
    "run_choices": "per run, the features that were switched off",
    "attribution_summary": "per attribution and SAE: attribution position, metric, sum of feature and error attributions",
    "attribution_pairs": "per attribution and SAE: the top (position, feature) pairs, strongest first",
    "max_activations": "per attribution and SAE: each feature's max activation over the list (non-zero only)",
    "labels": "the user's one-line name of each labelled feature",
    "circuits": "every circuit found: its samples, size, faithfulness, and the whole circuit as JSON (settings, nodes, edges, curve)",
    "experiments": "every batch experiment of an intervention set: its name, units, whether it finished, and the whole experiment as JSON (settings, control, per-unit rows)",
    "graphs": "every attribution graph saved: its sample, targets, settings, scores, sizes, the user's supernodes, and the whole record as JSON (with the pruned graph)",
    "vocab": "the string of every token id in the session (to show tokens without the tokenizer)",
}


@dataclass(frozen=True)
class SiteInfo:
    id: str
    kind: str
    layer: int
    hook_name: str


@dataclass(frozen=True)
class ModelInfo:
    """What a session records of its model, enough to read it without the weights."""

    name: str
    source: str
    ids: TokenIds
    sites: tuple[SiteInfo, ...]
    fingerprint: dict | None = None
    hf_model_name: str | None = None
    # The registry entry in full (registry_file.entry_record): sites' releases and sae_ids or folder
    # fingerprints, chat format, list style, metric tokens, templates. None in older sessions.
    entry: dict | None = None
    # the load's parity check against transformers (engine.parity.Parity.record()); None: shipped weights
    parity: dict | None = None

    def to_dict(self) -> dict:
        token_ids = {
            "blank": self.ids.blank,
            "newline": self.ids.newline,
            "item_marker": self.ids.item_marker,
            "stops": list(self.ids.stops),
            "bos": self.ids.bos,
        }
        if self.ids.style != "-":
            token_ids["style"] = self.ids.style
            token_ids["digit_ids"] = sorted(self.ids.digit_ids)
        out = {
            "name": self.name,
            "source": self.source,
            "hf_model_name": self.hf_model_name,
            "fingerprint": self.fingerprint,
            "token_ids": token_ids,
            "saes": [{"id": s.id, "kind": s.kind, "layer": s.layer, "hook_name": s.hook_name} for s in self.sites],
        }
        if self.entry is not None:
            out["entry"] = self.entry
        if self.parity is not None:
            out["parity"] = self.parity
        return out

    @classmethod
    def from_dict(cls, d: dict, where: str = MANIFEST) -> "ModelInfo":
        try:
            t = d["token_ids"]
            ids = TokenIds(
                int(t["blank"]), int(t["newline"]), int(t["item_marker"]), tuple(int(s) for s in t["stops"]),
                None if t.get("bos") is None else int(t["bos"]), str(t.get("style", "-")),
                frozenset(int(i) for i in t.get("digit_ids", [])),
            )  # fmt: skip
            entry = d.get("entry") if isinstance(d.get("entry"), dict) else None
            sites = tuple(SiteInfo(str(s["id"]), str(s["kind"]), int(s["layer"]), str(s["hook_name"])) for s in d.get("saes", []))
            parity = d.get("parity") if isinstance(d.get("parity"), dict) else None
            return cls(str(d["name"]), str(d.get("source", "unknown")), ids, sites, d.get("fingerprint"), d.get("hf_model_name"), entry, parity)
        except (KeyError, TypeError, ValueError) as exc:
            raise ListerError(f"{where}: field model.{_field_of(exc)} is missing or invalid ({exc!r}); the manifest is damaged") from exc

    @classmethod
    def from_loaded(cls, loaded, fingerprint: dict | None = None) -> "ModelInfo":
        entry = loaded.entry
        sites = tuple(SiteInfo(s.id, s.kind, s.layer, s.hook_name) for s in entry.sites)
        from lister_tui.core.engine.registry_file import entry_record

        return cls(entry.name, entry.source, loaded.ids, sites, fingerprint, entry.hf_model_name, entry_record(entry), getattr(loaded, "parity", None))


def _field_of(exc: Exception) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else "?"


def to_arrow(name: str, rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMAS[name])


def manifest_version(manifest: dict, where: str = MANIFEST) -> int:
    if not isinstance(manifest, dict):
        raise ListerError(f"{where} holds {type(manifest).__name__}, not a JSON object; the file is damaged")
    if "format_version" in manifest:
        v = manifest["format_version"]
    elif "version" in manifest:  # the v0 draft's field name
        v = manifest["version"]
    else:
        raise ListerError(f"{where}: field format_version is missing; this is not a lister-tui session manifest (or it is damaged)")
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ListerError(f"{where}: field format_version is {v!r}, not a version number; the manifest is damaged")
    return v


def migrate_v0(manifest: dict) -> tuple[dict, dict[str, list[dict]]]:
    """Version 0 (JSON only, samples inline) to version 1 (manifest + tables)."""
    model = manifest.get("model")
    if not isinstance(model, str):
        raise ListerError(f"{MANIFEST} (format 0): field model must be the model's registry name, got {model!r}")
    if "token_ids" not in manifest:
        raise ListerError(f"{MANIFEST} (format 0): field token_ids is missing; it is needed to read the token ids")
    tables: dict[str, list[dict]] = {name: [] for name in SCHEMAS}
    for i, s in enumerate(manifest.get("samples", [])):
        try:
            key = f"{s['template']}/{s['topic']}/{s['sample']}@{s['seed']}"
            m = s["metrics"]
            tables["samples"].append(
                {
                    "key": key,
                    "template": s["template"],
                    "topic": s["topic"],
                    "sample": s["sample"],
                    "seed": s["seed"],
                    "preset": s.get("preset", "code"),
                    "tokens": s["tokens"],
                    "prompt_len": s["prompt_len"],
                    "prefix_len": None,
                    "stopped": s.get("stopped", False),
                    "n_items": m["n_items"],
                    "n_tokens": m["n_tokens"],
                    "repeated_items": m["repeated_items"],
                    "diversity": m["diversity"],
                    "filler_count": m["filler_count"],
                    "filler_items": m.get("filler_items", []),
                    "reached_end": m["reached_end"],
                    "metric_at_attribution": m.get("metric_at_attribution"),
                    "curve": None,
                    "note": s.get("note", ""),
                    "text": None,
                }
            )
            for order, c in enumerate(s.get("ablation", [])):
                sae_id, feature, pos, mode = c
                tables["choices"].append({"key": key, "order": order, "sae_id": sae_id, "feature": feature, "pos": pos, "mode": mode})
        except (KeyError, TypeError, ValueError) as exc:
            raise ListerError(f"{MANIFEST} (format 0): samples[{i}] field {_field_of(exc)} is missing or invalid") from exc
    new = {
        "format": FORMAT_NAME,
        "format_version": 1,
        "name": manifest.get("name"),
        "created": manifest.get("created"),
        "updated": manifest.get("updated", manifest.get("created")),
        "revision": 0,
        "notes": manifest.get("notes", ""),
        "model": {"name": model, "source": "unknown", "hf_model_name": None, "fingerprint": None, "token_ids": manifest["token_ids"], "saes": []},
        "batch": None,
        "migrated_from": 0,
    }
    return new, tables


def migrate_v1(manifest: dict) -> tuple[dict, None]:
    """Version 1 to version 2: the same tables (read as they are), and no experiments."""
    return {**manifest, "format_version": 2, "migrated_from": manifest.get("migrated_from", 1)}, None


def check_version(version: int, where: str = MANIFEST) -> None:
    if version > FORMAT_VERSION:
        raise ListerError(
            f"{where} is format version {version}, written by a newer lister-tui; this one reads versions up to "
            f"{FORMAT_VERSION}. Upgrade lister-tui (pip install -U lister-tui) to open it."
        )


def required_fields(manifest: dict, where: str = MANIFEST) -> None:
    for name in ("model", "tables"):
        if name not in manifest:
            raise ListerError(f"{where}: field {name} is missing; the manifest is damaged (restore the folder from a backup)")
    if not isinstance(manifest["tables"], dict):
        raise ListerError(f"{where}: field tables must map table names to files; the manifest is damaged")
    if "samples" not in manifest["tables"]:
        raise ListerError(f"{where}: field tables.samples is missing; the manifest is damaged")


def table_rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()
