"""`lister-tui sweep --interventions FILE`: named intervention sets from TOML or JSON, checked field by field.

The form (JSON takes the same keys)::

    [[sets]]
    name = "no-short"
    [[sets.interventions]]
    site = "res_0"       # an SAE site, or a transcoder's tc_L
    feature = 382
    kind = "zero"        # zero | scale | clamp | steer
    value = 0.0          # k for scale, the value for clamp, c for steer (unused for zero)
    position = "all"     # all | prompt | generated | a token index
    relative = false     # clamp only: true makes value k × the feature's maximum activation (its card)

A relative clamp is checked with the rest before the model loads, then resolved once it has
loaded (:func:`resolve_sets`: k × the maximum over the card's corpus, lister-tiny's held-out
text for a sweep) and recorded resolved: the sweep's settings and interventions.json hold the
absolute value, its manifest's ``runtime.interventions_resolved`` says from which k and maximum.

Everything is checked before any model loads (a feature against the SAE's width read
from its cfg.json when the weights are a local folder); an error names the file, the
set and the field.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from lister_tui.core.engine.interventions import KINDS, Intervention, InterventionSet, check_position, check_value, intervention_sites, site_width
from lister_tui.core.engine.registry import ModelEntry
from lister_tui.core.errors import ListerError
from lister_tui.core.limits import MAX_RELATIVE_CLAMP

MAX_SETS = 100
MAX_PER_SET = 1000
ITEM_KEYS = ("site", "feature", "kind", "value", "position", "relative")


def parse_sets(data: object, entry: ModelEntry, source: str, reserved: set[str] = frozenset()) -> tuple[InterventionSet, ...]:
    """Named intervention sets from parsed TOML/JSON ``data``; ``reserved`` are condition names taken."""
    if not isinstance(data, dict) or set(data) != {"sets"} or not isinstance(data["sets"], list):
        raise ListerError(f"{source}: expected one key 'sets' holding a list of sets ([[sets]] in TOML), got {sorted(data) if isinstance(data, dict) else type(data).__name__}")
    if not data["sets"]:
        raise ListerError(f"{source}: 'sets' is empty; give at least one [[sets]] with a name and interventions")
    if len(data["sets"]) > MAX_SETS:
        raise ListerError(f"{source}: {len(data['sets'])} sets; at most {MAX_SETS}")
    sites = intervention_sites(entry)  # SAE sites and transcoder sites tc_L
    widths: dict[str, int | None] = {}
    out: list[InterventionSet] = []
    names: set[str] = set()
    for n, raw in enumerate(data["sets"], 1):
        where = f"{source}: set {n}"
        if not isinstance(raw, dict):
            raise ListerError(f"{where}: expected a table with name and interventions")
        unknown = sorted(set(raw) - {"name", "interventions"})
        if unknown:
            raise ListerError(f"{where}: unknown field {unknown[0]!r}; valid: name, interventions")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 80 or any(ord(c) < 32 for c in name):
            raise ListerError(f"{where}: field 'name' must be a one-line text of 1 to 80 characters, got {name!r:.60}")
        where = f"{source}: set {n} ({name!r})"
        if name in names:
            raise ListerError(f"{where}: field 'name': two sets are named {name!r}; give each set its own name")
        if name in reserved:
            raise ListerError(f"{where}: field 'name': {name!r} is already a condition of the sweep; choose another name")
        names.add(name)
        items = raw.get("interventions")
        if not isinstance(items, list) or not items:
            raise ListerError(f"{where}: field 'interventions' has no interventions; give at least one [[sets.interventions]]")
        if len(items) > MAX_PER_SET:
            raise ListerError(f"{where}: field 'interventions' has {len(items)}; at most {MAX_PER_SET}")
        parsed = []
        for k, item in enumerate(items, 1):
            at = f"{where}, intervention {k}"
            if not isinstance(item, dict):
                raise ListerError(f"{at}: expected a table with site, feature, kind, value, position")
            bad = sorted(set(item) - set(ITEM_KEYS))
            if bad:
                raise ListerError(f"{at}: unknown field {bad[0]!r}; valid: {', '.join(ITEM_KEYS)}")
            site = item.get("site")
            if site not in sites:
                raise ListerError(f"{at}: field 'site': unknown site {site!r:.60} for {entry.name}; valid: {', '.join(sites)}")
            if site not in widths:
                widths[site] = site_width(entry, site)
            feature = item.get("feature")
            width = widths[site]
            if isinstance(feature, bool) or not isinstance(feature, int) or feature < 0 or (width is not None and feature >= width):
                valid = f"0..{width - 1}" if width is not None else "0 or more"
                raise ListerError(f"{at}: field 'feature': {feature!r:.60} is out of range for {site}; valid: {valid}")
            kind = item.get("kind", "zero")
            if kind not in KINDS:
                raise ListerError(f"{at}: field 'kind': unknown kind {kind!r:.60}; valid: {', '.join(KINDS)}")
            value = check_value(kind, item.get("value", 0.0), f"{at}: field 'value'")
            position = check_position(item.get("position", "all"), f"{at}: field 'position'")
            relative = item.get("relative", False)
            if not isinstance(relative, bool) or (relative and kind != "clamp"):
                raise ListerError(f"{at}: field 'relative' is for a clamp only (true: value × the feature's maximum activation), got {relative!r:.60}")
            if relative and not -MAX_RELATIVE_CLAMP <= value <= MAX_RELATIVE_CLAMP:
                raise ListerError(
                    f"{at}: field 'value': {value:g} is out of range for a relative clamp (k × the feature's maximum activation); "
                    f"valid: -{MAX_RELATIVE_CLAMP:g} to {MAX_RELATIVE_CLAMP:g}"
                )
            parsed.append(Intervention(site, feature, kind, value, position, relative))
        out.append(InterventionSet(tuple(parsed), name))
    return tuple(out)


def read_sets(path: Path, entry: ModelEntry, reserved: set[str] = frozenset()) -> tuple[InterventionSet, ...]:
    """The sets in ``path`` (.toml or .json), checked; ListerError naming the file, set and field."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ListerError(f"cannot read the interventions file {source} ({exc.strerror or exc}); give an existing .toml or .json file") from exc
    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(raw.decode("utf-8"))
        elif suffix == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            raise ListerError(f"{source}: unknown file type {suffix or '(none)'!r}; give a .toml or .json file")
    except UnicodeDecodeError as exc:
        raise ListerError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ListerError(f"{source}: not valid {suffix[1:].upper()} ({exc})") from exc
    return parse_sets(data, entry, source, reserved)


def has_relative(records) -> bool:
    """Whether any intervention of the sets (records) is a relative clamp still to resolve."""
    return any(bool(i.get("relative")) for r in records or () for i in r["interventions"])


def resolve_sets(loaded, records, *, cache=True, on_progress=None) -> tuple[tuple[dict, ...], list[dict]]:
    """The sets (records) with every relative clamp made absolute from its card's maximum activation
    over the model's reference corpus, and one provenance row per resolved clamp
    (set, site, feature, k, max_activation, value, corpus)."""
    from lister_tui.core.engine.interventions import resolve_relative
    from lister_tui.core.study.cards import max_activations
    from lister_tui.core.study.corpus import default_corpus

    sets = sets_from_records(records)
    wanted = sorted({i.sae_id for s in sets for i in s.interventions if i.relative})
    if not wanted:
        return tuple(records), []
    corpus = default_corpus(loaded)
    peaks = {site: max_activations(loaded, site, corpus, cache=cache, on_progress=on_progress) for site in wanted}
    provenance = []
    out = []
    for s in sets:
        resolved = resolve_relative(s, lambda site, f: float(peaks[site][f]))
        for before, after in zip(s.interventions, resolved.interventions):
            if before.relative:
                provenance.append({
                    "set": s.name, "site": before.sae_id, "feature": before.feature, "k": before.value,
                    "max_activation": float(peaks[before.sae_id][before.feature]), "value": after.value, "corpus": corpus.description,
                })  # fmt: skip
        out.append(resolved)
    return sets_to_records(tuple(out)), provenance


def sets_to_records(sets: tuple[InterventionSet, ...]) -> tuple[dict, ...]:
    return tuple(s.to_dict() for s in sets)


def sets_from_records(records) -> tuple[InterventionSet, ...]:
    """Sets back from :func:`sets_to_records` (a manifest's settings)."""
    out = []
    for r in records or ():
        items = tuple(
            Intervention(
                str(i["site"]), int(i["feature"]), str(i["kind"]), float(i["value"]),
                i["position"] if isinstance(i["position"], str) else int(i["position"]), bool(i.get("relative", False)),
            )
            for i in r["interventions"]
        )
        out.append(InterventionSet(items, str(r["name"])))
    return tuple(out)
