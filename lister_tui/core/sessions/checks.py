"""Defensive reading: a session's (or a sweep's) manifest and tables checked before anything is built
from them, so a damaged or hostile file gives a ListerError naming the file and the field, never a
traceback, a runaway allocation or a read outside the session's folder.

Sessions are copied between colleagues, so every value is untrusted: the JSON's size and nesting are
bounded before it is parsed; every manifest field has a type and a range; token ids, positions and
feature indexes must lie within the tables and vocabulary they index; an SAE's width is bounded
before a matrix of that width is allocated; sample keys are unique."""

from __future__ import annotations

import re
from collections.abc import Mapping

from lister_tui.core.engine.sampling_settings import SamplingSettings
from lister_tui.core.errors import ListerError
from lister_tui.core.files.json_read import parse_json  # noqa: F401  (re-exported for the readers)

MAX_REVISION = 10**15
MAX_TOKEN_ID = 2**31 - 1
MAX_D_SAE = 1 << 22  # Gemma Scope's widest SAEs have 2^20 features
MAX_LAYER = 1000
MAX_TEXT = 1 << 20  # a name, note or path in a manifest
TABLE_FILE_RE = re.compile(r"^(?P<table>[a-z_]+)\.r(?P<rev>\d+)\.parquet$")


def _fail(where: str, field: str, value: object, want: str) -> ListerError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ListerError(f"{where}: field {field} is {shown}; {want}. The manifest is damaged (restore the folder from a backup)")


def check_int(where: str, field: str, value: object, lo: int, hi: int, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _fail(where, field, value, f"expected an integer in [{lo}, {hi}]")
    return value


def check_text(where: str, field: str, value: object, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise _fail(where, field, value, f"expected a string of at most {MAX_TEXT} characters")
    return value


def check_mapping(where: str, field: str, value: object, *, optional: bool = True) -> Mapping | None:
    if value is None and optional:
        return None
    if not isinstance(value, Mapping):
        raise _fail(where, field, value, "expected an object")
    return value


def check_sampling(where: str, field: str, values: object) -> SamplingSettings:
    """A manifest's sampling values as SamplingSettings (types and ranges checked there)."""
    values = check_mapping(where, field, values, optional=False)
    known = {"temperature", "top_p", "top_k", "max_new_tokens"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise _fail(where, f"{field}.{unknown[0]}", values[unknown[0]], f"not a sampling value (valid: {', '.join(sorted(known))})")
    try:
        return SamplingSettings(**values)
    except ListerError as exc:
        raise ListerError(f"{where}: field {field}: {exc}; the manifest is damaged") from None


def check_model(where: str, model: object) -> None:
    model = check_mapping(where, "model", model, optional=False)
    check_text(where, "model.name", model.get("name"), optional=False)
    for name in ("source", "hf_model_name"):
        check_text(where, f"model.{name}", model.get(name))
    check_mapping(where, "model.fingerprint", model.get("fingerprint"))
    ids = check_mapping(where, "model.token_ids", model.get("token_ids"), optional=False)
    for name in ("blank", "newline", "item_marker"):
        check_int(where, f"model.token_ids.{name}", ids.get(name), 0, MAX_TOKEN_ID)
    check_int(where, "model.token_ids.bos", ids.get("bos"), 0, MAX_TOKEN_ID, optional=True)
    stops = ids.get("stops")
    if not isinstance(stops, list) or not stops or len(stops) > 64:
        raise _fail(where, "model.token_ids.stops", stops, "expected a list of 1 to 64 token ids")
    for i, s in enumerate(stops):
        check_int(where, f"model.token_ids.stops[{i}]", s, 0, MAX_TOKEN_ID)
    saes = model.get("saes", [])
    if not isinstance(saes, list) or len(saes) > 10_000:
        raise _fail(where, "model.saes", saes, "expected a list of SAE sites")
    for i, s in enumerate(saes):
        s = check_mapping(where, f"model.saes[{i}]", s, optional=False)
        for name in ("id", "kind", "hook_name"):
            check_text(where, f"model.saes[{i}].{name}", s.get(name), optional=False)
        check_int(where, f"model.saes[{i}].layer", s.get("layer"), 0, MAX_LAYER)


def check_session_manifest(manifest: Mapping, where: str, *, with_tables: bool = True) -> None:
    """Every field of a version-1 session manifest that is read: types, ranges, file names
    (``with_tables=False``: a manifest migrated in memory, whose tables are not files yet)."""
    check_int(where, "revision", manifest.get("revision", 0), 0, MAX_REVISION)
    for name in ("format", "name", "created", "updated", "notes", "lister_tui_version"):
        check_text(where, name, manifest.get(name))
    check_model(where, manifest.get("model"))
    source = check_mapping(where, "source", manifest.get("source"))
    if source is not None:
        for name in ("kind", "path", "started", "repeat_command"):
            check_text(where, f"source.{name}", source.get(name))
    for name in ("writer", "counts", "seeds"):
        check_mapping(where, name, manifest.get(name))
    for name, values in (check_mapping(where, "sampling", manifest.get("sampling")) or {}).items():
        check_sampling(where, f"sampling.{name}", values)
    batch = check_mapping(where, "batch", manifest.get("batch"))
    if batch is not None:
        keys = batch.get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise _fail(where, "batch.keys", keys, "expected a list of sample keys")
    tables = check_mapping(where, "tables", manifest.get("tables"), optional=not with_tables) or {}
    for name, info in tables.items():
        info = check_mapping(where, f"tables.{name}", info, optional=False)
        file = info.get("file")
        m = TABLE_FILE_RE.match(file) if isinstance(file, str) else None
        if m is None or m["table"] != name:  # never a path: a table is a file of the session's own folder
            raise _fail(where, f"tables.{name}.file", file, f"expected a file name like {name}.r000001.parquet")
        digest = info.get("sha256")
        if digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
            raise _fail(where, f"tables.{name}.sha256", digest, "expected 64 hexadecimal digits")


def _tokens(where: str, row: Mapping, prefix: str, vocab: set[int] | None) -> int:
    """Check a row's token ids and lengths; returns the number of tokens."""
    tokens = row.get(prefix + "tokens")
    if not isinstance(tokens, list) or not tokens:
        raise ListerError(f"{where}: column {prefix}tokens is {tokens!r:.60}; expected a list of token ids")
    for t in tokens:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= MAX_TOKEN_ID or (vocab is not None and t not in vocab):
            raise ListerError(
                f"{where}: column {prefix}tokens holds token id {t!r}, "
                + ("which is not in the session's vocab table" if vocab is not None else f"outside [0, {MAX_TOKEN_ID}]")
                + "; the table is damaged"
            )
    n = len(tokens)
    prompt_len = row.get(prefix + "prompt_len")
    if isinstance(prompt_len, bool) or not isinstance(prompt_len, int) or not 1 <= prompt_len <= n:
        raise ListerError(f"{where}: column {prefix}prompt_len is {prompt_len!r}; expected an integer in [1, {n}] (the number of tokens)")
    prefix_len = row.get(prefix + "prefix_len")
    if prefix_len is not None and (isinstance(prefix_len, bool) or not isinstance(prefix_len, int) or not 0 <= prefix_len <= n):
        raise ListerError(f"{where}: column {prefix}prefix_len is {prefix_len!r}; expected an integer in [0, {n}]")
    return n


def check_rows(tables: Mapping[str, list[dict]], where: str) -> None:
    """Table contents: token ids within the vocabulary, indexes within their tables, unique keys,
    SAE widths bounded (before a width x samples matrix is allocated) and features within them."""
    vocab_rows = tables.get("vocab") or []
    vocab = {r.get("id") for r in vocab_rows} if vocab_rows else None
    for i, r in enumerate(vocab_rows):
        if isinstance(r.get("id"), bool) or not isinstance(r.get("id"), int) or not 0 <= r["id"] <= MAX_TOKEN_ID:
            raise ListerError(f"{where}: vocab table, row {i}: id {r.get('id')!r} is not a token id in [0, {MAX_TOKEN_ID}]")
    lengths: dict[str, int] = {}
    for i, row in enumerate(tables.get("samples") or []):
        key = row.get("key")
        rwhere = f"{where}: samples table, row {i} ({key!r:.60})"
        if not isinstance(key, str):
            raise ListerError(f"{rwhere}: column key is not a string")
        if key in lengths:
            raise ListerError(f"{rwhere}: sample key {key!r} appears twice in the samples table; the session is damaged")
        for name in ("sample", "seed"):
            if isinstance(row.get(name), bool) or not isinstance(row.get(name), int):
                raise ListerError(f"{rwhere}: column {name} is {row.get(name)!r}; expected an integer")
        lengths[key] = _tokens(rwhere, row, "", vocab)
    for i, row in enumerate(tables.get("runs") or []):
        rwhere = f"{where}: runs table, row {i}"
        if row.get("key") not in lengths:
            raise ListerError(f"{rwhere}: sample {row.get('key')!r:.60} is not in the samples table; the session is damaged")
        for prefix in ("base_", "ablated_"):
            _tokens(rwhere, row, prefix, vocab)
    for table in ("choices", "run_choices"):
        for i, row in enumerate(tables.get(table) or []):
            rwhere = f"{where}: {table} table, row {i}"
            n = lengths.get(row.get("key"))
            if n is None:
                raise ListerError(f"{rwhere}: sample {row.get('key')!r:.60} is not in the samples table; the session is damaged")
            _index(rwhere, "feature", row.get("feature"), MAX_D_SAE)
            _index(rwhere, "pos", row.get("pos"), MAX_TOKEN_ID, lo=-1)  # -1: no position (a dataset-ranked feature)
    # an attribution: a sample's own (scope "sample", per key and SAE) or the batch's (per SAE); its
    # rows are indexed 0..n-1 and its max-activation matrix is n x d_sae
    groups: dict[tuple, list[int]] = {}  # group -> [n, d_sae]
    for i, row in enumerate(tables.get("attribution_summary") or []):
        rwhere = f"{where}: attribution_summary table, row {i}"
        group = _group_of(rwhere, row)
        d_sae = row.get("d_sae")
        if isinstance(d_sae, bool) or not isinstance(d_sae, int) or not 1 <= d_sae <= MAX_D_SAE:
            raise ListerError(f"{rwhere}: column d_sae is {d_sae!r}; expected an SAE width in [1, {MAX_D_SAE}]")
        if group[0] == "sample" and group[1] not in lengths:
            raise ListerError(f"{rwhere}: sample {group[1]!r:.60} is not in the samples table; the session is damaged")
        n_width = groups.setdefault(group, [0, d_sae])
        if n_width[1] != d_sae:
            raise ListerError(f"{rwhere}: column d_sae is {d_sae}, but other rows of this attribution say {n_width[1]}")
        n_width[0] += 1
    for i, row in enumerate(tables.get("attribution_summary") or []):
        _index(f"{where}: attribution_summary table, row {i}", "index", row.get("index"), groups[_group_of(where, row)][0])
    for table in ("attribution_pairs", "max_activations"):
        for i, row in enumerate(tables.get(table) or []):
            rwhere = f"{where}: {table} table, row {i}"
            n_width = groups.get(_group_of(rwhere, row))
            if n_width is None:
                raise ListerError(f"{rwhere}: no attribution_summary row for {row.get('scope')!r} {row.get('key')!r:.60} {row.get('sae_id')!r:.40}")
            _index(rwhere, "index", row.get("index"), n_width[0])
            _index(rwhere, "feature", row.get("feature"), n_width[1])
            if table == "attribution_pairs":
                _index(rwhere, "pos", row.get("pos"), MAX_TOKEN_ID)


def _group_of(where: str, row: Mapping) -> tuple:
    scope = row.get("scope")
    if scope == "batch":
        return ("batch", row.get("sae_id"))
    if scope == "sample":
        return ("sample", row.get("key"), row.get("sae_id"))
    raise ListerError(f"{where}: column scope is {scope!r:.40}; expected 'sample' or 'batch'")


def _index(where: str, column: str, value: object, size: int, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value < size:
        raise ListerError(f"{where}: column {column} is {value!r}; expected an index in [{lo}, {size - 1}]; the table is damaged")
    return value
