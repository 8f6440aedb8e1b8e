"""User registry files: models, SAE sites and prompt templates defined in TOML, no code.

Files read: ``<config>/registry.toml``, every ``<config>/models/*.toml`` (``lister-tui
locate config``), and each ``--registry FILE`` (``$LISTER_TUI_REGISTRY``). Format::

    [models.my-model]
    model = "google/gemma-2-2b-it"       # a Hugging Face repo id (weights: the local HF cache)
    # folder = "/data/my-finetune"        # or a local folder: HF weights (architecture and every
    #                                     # setting from its config.json) or a lister-tiny style folder
    dtype = "bfloat16"
    chat_template = true                  # the tokenizer's; or chat_prefix / chat_suffix
    list_marker = "-"                     # "-", "*" or "1."
    metric_tokens = [" ", "\\n"]          # blank and newline, resolved by string
    stop_tokens = ["<end_of_turn>", "<eos>"]
    [[models.my-model.sites]]
    id = "res_20"
    release = "gemma-scope-2b-pt-res"     # SAELens release + sae_id, or path = "/saes/x"
    sae_id = "layer_20/width_16k/average_l0_139"
    hook = "blocks.20.hook_resid_post"    # optional with kind + layer, or a release's usual layout
    [[models.my-model.transcoders]]       # one transcoder per MLP layer (attribution graphs)
    id = "mine"
    layers = 26                           # layers 0..25 (or a list of layer numbers)
    path = "/data/transcoders"            # one SAELens folder per layer, named folder = "mlp_{layer}";
    # release = "gemma-scope-2b-pt-transcoders"  # or SAELens release + sae_id with {layer} (* allowed)
    # sae_id = "layer_{layer}/width_16k/average_l0_*"

    [templates.numbered]
    text = "Give me a numbered list of {topic}."
    length = "unspecified"                # short, long, unspecified or neutral

A bad file gives one error naming the file, the entry and the field; the other
files and the built-ins are not affected.

Long because it holds the whole file format in one place: parsing with an error per
file, entry and field, templates, ad-hoc ``--sae`` sites, and an entry's record (what
sessions and sweeps keep) and its way back.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

from lister_tui.core.engine.entries import (
    KIND_HOOKS,
    LENGTH_GROUPS,
    STUDY_TEMPLATES,
    ModelEntry,
    SAESite,
    Template,
    TranscoderSet,
    kind_of_hook,
)
from lister_tui.core.engine.fingerprint import folder_fingerprint
from lister_tui.core.errors import ListerError
from lister_tui.core.files.locations import config_dir

REGISTRY_ENV = "LISTER_TUI_REGISTRY"  # extra registry files, os.pathsep-separated (set by --registry)

MODEL_KEYS = {
    "description", "model", "folder", "dtype", "chat_template", "chat_prefix", "chat_suffix", "list_marker",
    "metric_tokens", "stop_tokens", "bos_token", "sites", "feature_url", "needs", "transcoders",
}  # fmt: skip
TRANSCODER_KEYS = {"id", "layers", "path", "folder", "release", "sae_id", "hook_in", "hook_out", "reads_ln_output", "description"}
SITE_KEYS = {"id", "release", "sae_id", "path", "hook", "kind", "layer"}
LIST_MARKERS = ("-", "*", "1.")
DTYPES = ("float32", "bfloat16", "float16")
SITE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")  # a plain name: never "." or "..", never a path


def registry_files() -> list[Path]:
    """Every registry file read, in order (the config folder's, then ``--registry`` ones)."""
    folder = config_dir()
    files = [folder / "registry.toml"] if (folder / "registry.toml").is_file() else []
    files += sorted((folder / "models").glob("*.toml")) if (folder / "models").is_dir() else []
    files += [Path(p) for p in os.environ.get(REGISTRY_ENV, "").split(os.pathsep) if p]
    return list(dict.fromkeys(files))


def user_entries(reserved=()) -> tuple[list[ModelEntry], list[str]]:
    """The entries of every registry file, and one problem line per entry (or file) that is broken.
    A name in ``reserved`` (the built-ins': :func:`lister_tui.core.engine.registry.user_entries`
    passes them) is refused."""
    entries: list[ModelEntry] = []
    problems: list[str] = []
    seen: dict[str, Path] = {}
    for path in registry_files():
        try:
            data = read_toml(path)
            templates = parse_templates(data, path)
        except ListerError as exc:
            problems.append(str(exc))
            continue
        for name, table in (data.get("models") or {}).items():
            try:
                if name in reserved:
                    raise _error(path, name, "name", "is a built-in entry's name; choose another name")
                if name in seen:
                    raise _error(path, name, "name", f"is already defined in {seen[name]}")
                entry = parse_entry(name, table, path, templates)
            except ListerError as exc:
                problems.append(str(exc))
                continue
            seen[name] = path
            entries.append(entry)
    return entries, problems


def read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ListerError(f"registry file {path}: cannot be read ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ListerError(f"registry file {path}: not valid TOML ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise ListerError(f"registry file {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    except RecursionError as exc:
        raise ListerError(f"registry file {path}: nested too deeply to read; a registry file needs two levels of tables") from exc
    unknown = sorted(set(data) - {"models", "templates"})
    if unknown:
        raise ListerError(f"registry file {path}: unknown table {unknown[0]!r}; valid: models, templates")
    if not isinstance(data.get("models", {}), dict):
        raise ListerError(f"registry file {path}: 'models' must be a table of entries ([models.NAME])")
    return data


def _error(path: Path, entry: str, field: str, problem: str) -> ListerError:
    return ListerError(f"registry file {path}, entry {entry!r}, field {field!r}: {problem}")


def _string(table: dict, key: str, path: Path, entry: str, default=None, allow_empty: bool = False):
    value = table.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or (not value and not allow_empty):
        raise _error(path, entry, key, f"must be a non-empty string, got {value!r}")
    return value


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9_.-]{1,96})?$")


def _repo_id(value: str | None, path: Path, entry: str) -> str | None:
    """A Hugging Face repo id as the hub spells them (owner/name: letters, digits, '-', '_', '.')."""
    if value is not None and (not _REPO_ID.match(value) or ".." in value):
        raise _error(path, entry, "model", f"{value[:80]!r} is not a Hugging Face repo id (owner/name of letters, digits, '-', '_', '.')")
    return value


def _folder(value: str, path: Path, entry: str = "?", field: str = "folder") -> Path:
    if "\x00" in value:
        raise _error(path, entry, field, "holds a NUL character, which no path can; give a folder")
    folder = Path(value).expanduser()
    if folder.is_absolute():
        return folder
    try:
        return (path.parent / folder).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python 3.11)
        raise _error(path, entry, field, f"{value!r} cannot be resolved ({exc})") from exc


def parse_templates(data: dict, path: Path) -> tuple[Template, ...]:
    """The ``[templates.NAME]`` tables of a registry or templates file."""
    out = []
    tables = data.get("templates") or {}
    if not isinstance(tables, dict):
        raise ListerError(f"registry file {path}: 'templates' must be a table ([templates.NAME])")
    for name, table in tables.items():
        where = f"registry file {path}, template {name!r}"
        if name in STUDY_TEMPLATES:
            raise ListerError(f"{where}: is one of the study's template names ({', '.join(STUDY_TEMPLATES)}); choose another")
        if isinstance(table, str):
            table = {"text": table}
        if not isinstance(table, dict):
            raise ListerError(f"{where}: must be a text or a table with text and length")
        unknown = sorted(set(table) - {"text", "length"})
        if unknown:
            raise ListerError(f"{where}, field {unknown[0]!r}: unknown; valid: text, length")
        text, length = table.get("text"), table.get("length", "unspecified")
        if not isinstance(text, str) or "{topic}" not in text:
            raise ListerError(f"{where}, field 'text': must be a string holding {{topic}}, got {text!r}")
        try:
            text.format(topic="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ListerError(f"{where}, field 'text': only {{topic}} may be in braces (write {{{{ }}}} for a brace); {exc!r}") from exc
        if length not in LENGTH_GROUPS:
            raise ListerError(f"{where}, field 'length': {length!r} is not one of {', '.join(LENGTH_GROUPS)}")
        out.append(Template(str(name), text, length))
    return tuple(out)


def parse_site(table, path: Path, entry: str, index: int) -> SAESite:
    field = f"sites[{index}]"
    if not isinstance(table, dict):
        raise _error(path, entry, field, "must be a table ([[models.NAME.sites]])")
    unknown = sorted(set(table) - SITE_KEYS)
    if unknown:
        raise _error(path, entry, f"{field}.{unknown[0]}", f"unknown; valid: {', '.join(sorted(SITE_KEYS))}")
    site_id = table.get("id")
    if not isinstance(site_id, str) or not SITE_ID.match(site_id):
        raise _error(path, entry, f"{field}.id", f"must be a short id such as res_20 (a letter or digit, then letters, digits, _ . -), got {site_id!r}")
    release, sae_id, folder = table.get("release"), table.get("sae_id"), table.get("path")
    if (release is None) != (sae_id is None):
        raise _error(path, entry, f"{field}.{'sae_id' if release else 'release'}", "release and sae_id go together")
    if (release is None) == (folder is None):
        raise _error(path, entry, f"{field}.release", "give either release + sae_id (SAELens) or path (a local SAELens folder)")
    hook = table.get("hook")
    try:
        if hook is not None:
            kind, layer = kind_of_hook(str(hook))
        elif "kind" in table or "layer" in table:
            kind, layer = table.get("kind"), table.get("layer")
            if kind not in KIND_HOOKS:
                raise _error(path, entry, f"{field}.kind", f"{kind!r} is not one of {', '.join(KIND_HOOKS)}")
            if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
                raise _error(path, entry, f"{field}.layer", f"must be a layer number >= 0, got {layer!r}")
        else:
            kind, layer = hook_from_sae_id(str(release or ""), str(sae_id or ""), site_id)
    except ListerError as exc:
        if str(exc).startswith("registry file"):
            raise
        raise _error(path, entry, f"{field}.hook", str(exc)) from exc
    return SAESite(
        site_id, kind, layer, release=release, sae_id=sae_id,
        path=_folder(folder, path, entry, f"{field}.path") if folder is not None else None, hook=hook,
    )  # fmt: skip


def parse_transcoder_set(table, path: Path, entry: str, index: int) -> TranscoderSet:
    """One ``[[models.NAME.transcoders]]`` table: a local folder of per-layer SAELens folders, or a release."""
    field = f"transcoders[{index}]"
    if not isinstance(table, dict):
        raise _error(path, entry, field, "must be a table ([[models.NAME.transcoders]])")
    unknown = sorted(set(table) - TRANSCODER_KEYS)
    if unknown:
        raise _error(path, entry, f"{field}.{unknown[0]}", f"unknown; valid: {', '.join(sorted(TRANSCODER_KEYS))}")
    set_id = table.get("id")
    if not isinstance(set_id, str) or not SITE_ID.match(set_id):
        raise _error(path, entry, f"{field}.id", f"must be a short id (letters, digits, _ . -), got {set_id!r}")
    layers = table.get("layers")
    if isinstance(layers, int) and not isinstance(layers, bool) and layers > 0:
        layers = list(range(layers))
    if not (isinstance(layers, list) and layers and all(isinstance(l, int) and not isinstance(l, bool) and l >= 0 for l in layers)):
        raise _error(path, entry, f"{field}.layers", f"must be the number of layers (> 0) or a list of layer numbers >= 0, got {layers!r}")
    release, sae_id, folder = table.get("release"), table.get("sae_id"), table.get("path")
    if (release is None) != (sae_id is None):
        raise _error(path, entry, f"{field}.{'sae_id' if release else 'release'}", "release and sae_id go together")
    if (release is None) == (folder is None):
        raise _error(path, entry, f"{field}.path", "give either path (a folder of per-layer SAELens folders) or release + sae_id")
    texts = {}
    for key, default in (("folder", "mlp_{layer}"), ("hook_in", "blocks.{layer}.ln2.hook_normalized"), ("hook_out", "blocks.{layer}.hook_mlp_out")):
        value = table.get(key, default)
        if not isinstance(value, str) or "{layer}" not in value:
            raise _error(path, entry, f"{field}.{key}", f"must be text holding {{layer}}, such as {default!r}; got {value!r}")
        texts[key] = value
    if sae_id is not None and (not isinstance(sae_id, str) or "{layer}" not in sae_id):
        raise _error(path, entry, f"{field}.sae_id", f"must be text holding {{layer}}, got {sae_id!r}")
    reads_ln_output = table.get("reads_ln_output", False)
    if not isinstance(reads_ln_output, bool):
        raise _error(path, entry, f"{field}.reads_ln_output", f"must be true or false, got {reads_ln_output!r}")
    return TranscoderSet(
        set_id, tuple(sorted(set(layers))), str(table.get("description", "")), release=release, sae_id=sae_id,
        path=_folder(folder, path) if folder is not None else None, reads_ln_output=reads_ln_output, **texts,
    )  # fmt: skip


def hook_from_sae_id(release: str, sae_id: str, site_id: str) -> tuple[str, int]:
    """Kind and layer from a release's naming (``…-res``, ``…-att``, ``…-mlp`` and ``layer_N``)."""
    match = re.search(r"layer_(\d+)", sae_id)
    kind = next((k for marker, k in (("-res", "res"), ("-att", "attn"), ("-mlp", "mlp")) if marker in release), None)
    if match is None or kind is None:
        raise ListerError(f"cannot tell the hook point of {site_id!r} from its release and sae_id; give hook = \"blocks.L.hook_…\"")
    return kind, int(match.group(1))


ENTRY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_entry(name: str, table, path: Path, templates: tuple[Template, ...] = ()) -> ModelEntry:
    if not ENTRY_NAME.match(name):
        raise _error(path, name, "name", "must be 1-64 letters, digits, '_', '.' or '-' (it is typed as --model NAME)")
    if not isinstance(table, dict):
        raise _error(path, name, "models", "must be a table ([models.NAME])")
    unknown = sorted(set(table) - MODEL_KEYS)
    if unknown:
        raise _error(path, name, unknown[0], f"unknown; valid: {', '.join(sorted(MODEL_KEYS))}")
    model = _repo_id(_string(table, "model", path, name), path, name)
    folder = _string(table, "folder", path, name)
    if model is None and folder is None:
        raise _error(path, name, "model", "give model (a Hugging Face repo id, read from the local cache) or folder (local weights)")
    folder_path = _folder(folder, path, name) if folder is not None else None
    shipped = folder_path is not None and (folder_path / "model_config.json").is_file()
    dtype = _string(table, "dtype", path, name, "float32" if shipped else "bfloat16")
    if dtype not in DTYPES:
        raise _error(path, name, "dtype", f"{dtype!r} is not one of {', '.join(DTYPES)}")
    chat_template = table.get("chat_template", not shipped and "chat_prefix" not in table)
    if not isinstance(chat_template, bool):
        raise _error(path, name, "chat_template", f"must be true (the tokenizer's) or false (chat_prefix / chat_suffix), got {chat_template!r}")
    marker = _string(table, "list_marker", path, name, "-")
    if marker not in LIST_MARKERS:
        raise _error(path, name, "list_marker", f"{marker!r} is not one of {', '.join(map(repr, LIST_MARKERS))}")
    metric = table.get("metric_tokens", [" ", "\n"])
    if not (isinstance(metric, list) and len(metric) == 2 and all(isinstance(t, str) and t for t in metric)):
        raise _error(path, name, "metric_tokens", f"must be two token strings [blank, newline], got {metric!r}")
    stops = table.get("stop_tokens", ["<end_of_turn>", "<eos>"])
    if not (isinstance(stops, list) and stops and all(isinstance(t, str) and t for t in stops)):
        raise _error(path, name, "stop_tokens", f"must be a list of token strings, got {stops!r}")
    sites_table = table.get("sites", [])
    if not isinstance(sites_table, list):
        raise _error(path, name, "sites", "must be an array of tables ([[models.NAME.sites]])")
    sites = tuple(parse_site(t, path, name, i) for i, t in enumerate(sites_table))
    if len({s.id for s in sites}) != len(sites):
        raise _error(path, name, "sites", "two sites have the same id")
    if shipped and not sites:
        sites = shipped_sites(folder_path)
    tc_table = table.get("transcoders", [])
    if not isinstance(tc_table, list):
        raise _error(path, name, "transcoders", "must be an array of tables ([[models.NAME.transcoders]])")
    transcoders = tuple(parse_transcoder_set(t, path, name, i) for i, t in enumerate(tc_table))
    if len({t.id for t in transcoders}) != len(transcoders):
        raise _error(path, name, "transcoders", "two transcoder sets have the same id")
    if shipped and not transcoders and (folder_path / "transcoders").is_dir():
        transcoders = (shipped_transcoders(folder_path),)
    values = {
        "chat_prefix": _string(table, "chat_prefix", path, name, None, allow_empty=True),
        "chat_suffix": _string(table, "chat_suffix", path, name, None, allow_empty=True),
        "bos_token": _string(table, "bos_token", path, name, None),
    }
    return ModelEntry(
        name=name,
        description=_string(table, "description", path, name, f"defined in {path}"),
        source="shipped" if shipped else "pretrained",
        sites=sites,
        hf_model_name=None if shipped else model,
        tl_model_name=None if shipped else model,
        hf_folder=None if shipped else folder_path,
        weights_dir=folder_path if shipped else None,
        blank_token=metric[0],
        newline_token=metric[1],
        item_marker=marker,
        stop_tokens=tuple(stops),
        use_tokenizer_chat_template=chat_template,
        feature_url=_string(table, "feature_url", path, name),
        default_dtype=dtype,
        templates=templates,
        needs=_string(table, "needs", path, name) or "",
        origin=str(path),
        transcoders=transcoders,
        **{k: v for k, v in values.items() if v is not None},
    )


def shipped_sites(folder: Path) -> tuple[SAESite, ...]:
    """The SAEs of a lister-tiny style folder: one site per ``saes/<id>`` (res_N, attn_N, mlp_N)."""
    sites = []
    for sub in sorted((folder / "saes").iterdir()) if (folder / "saes").is_dir() else ():
        match = re.match(r"^(res|attn|mlp)_(\d+)$", sub.name)
        if sub.is_dir() and match:
            sites.append(SAESite(sub.name, match.group(1), int(match.group(2))))  # type: ignore[arg-type]
    return tuple(sorted(sites, key=lambda s: (s.kind != "res", s.layer)))


def shipped_transcoders(folder: Path) -> TranscoderSet:
    """The transcoders of a lister-tiny style folder: one per ``transcoders/mlp_L`` folder there.

    Read from the folder names alone: the entry is listed without parsing any file, and a damaged
    ``model_config.json`` is reported, by file and field, when the model loads."""
    layers = sorted(
        int(m.group(1)) for sub in (folder / "transcoders").iterdir() if sub.is_dir() and (m := re.fullmatch(r"mlp_(\d{1,4})", sub.name))
    )
    return TranscoderSet("shipped", tuple(layers), f"the folder's own transcoders ({folder / 'transcoders'})")


def read_templates_file(path: Path) -> tuple[Template, ...]:
    """``--templates FILE``: a TOML file of ``[templates.NAME]`` tables (or ``NAME = "text"``)."""
    data = read_toml(Path(path)) if Path(path).is_file() else None
    if data is None:
        raise ListerError(f"templates file {path} does not exist; give a TOML file with [templates.NAME] tables")
    templates = parse_templates(data, Path(path))
    if not templates:
        raise ListerError(f"templates file {path} defines no templates; add [templates.NAME] with text = \"… {{topic}} …\"")
    return templates


def adhoc_site(value: str, taken: set[str]) -> SAESite:
    """A site for one run from ``--sae``: ``RELEASE:SAE_ID`` or a SAELens folder, optionally ``ID=…``."""
    site_id, _, spec = value.partition("=") if "=" in value.split(":")[0] else ("", "", value)
    folder = Path(spec).expanduser()
    if folder.is_dir():
        cfg_path = folder / "cfg.json"
        try:
            import json

            cfg = json.loads(cfg_path.read_text())
            hook = (cfg.get("metadata") or {}).get("hook_name") or cfg.get("hook_name")
            kind, layer = kind_of_hook(str(hook))
        except (OSError, ValueError) as exc:
            raise ListerError(f"--sae {value!r}: {cfg_path} is not a readable SAELens config ({exc})") from exc
        site = SAESite(site_id or f"{kind}_{layer}", kind, layer, path=folder.resolve(), hook=str(hook))
    elif ":" in spec:
        release, sae_id = spec.split(":", 1)
        if not release or not sae_id:
            raise ListerError(f"--sae {value!r}: give RELEASE:SAE_ID, e.g. gemma-scope-2b-pt-res:layer_3/width_16k/average_l0_142")
        kind, layer = hook_from_sae_id(release, sae_id, value)
        site = SAESite(site_id or f"{kind}_{layer}", kind, layer, release=release, sae_id=sae_id)  # type: ignore[arg-type]
    else:
        raise ListerError(
            f"--sae {value!r} is not one of the model's SAE ids, a RELEASE:SAE_ID, or a SAELens folder "
            f"(model's ids: {', '.join(sorted(taken)) or 'none'})"
        )
    if not SITE_ID.match(site.id):
        raise ListerError(f"--sae {value!r}: id {site.id!r} is not a short id (letters, digits, _ . -)")
    if site.id in taken:
        raise ListerError(f"--sae {value!r}: id {site.id!r} is taken; name it: --sae NEW_ID={spec}")
    return site


def entry_record(entry: ModelEntry) -> dict:
    """The entry in full, as sessions and sweep manifests record it (JSON-ready)."""
    def site(s: SAESite) -> dict:
        out = {"id": s.id, "kind": s.kind, "layer": s.layer, "hook_name": s.hook_name, "release": s.release, "sae_id": s.sae_id}
        if s.path is not None:
            out["path"] = str(s.path)
            out["fingerprint"] = folder_fingerprint(Path(s.path))
        return out

    return {
        "name": entry.name,
        "origin": entry.origin,
        "source": entry.source,
        "model": entry.tl_name,
        "hf_model_name": entry.hf_model_name,
        "folder": str(entry.hf_folder or entry.weights_dir or "") or None,
        "dtype": entry.default_dtype,
        "chat_template": entry.use_tokenizer_chat_template,
        "chat_prefix": entry.chat_prefix,
        "chat_suffix": entry.chat_suffix,
        "list_marker": entry.item_marker,
        "metric_tokens": [entry.blank_token, entry.newline_token],
        "stop_tokens": list(entry.stop_tokens),
        "bos_token": entry.bos_token,
        "sites": [site(s) for s in entry.sites],
        "templates": [{"name": t.name, "text": t.text, "length": t.length} for t in entry.templates],
    }


def entry_from_record(record: dict) -> ModelEntry:
    """An entry back from :func:`entry_record` (a session opened where its registry file is absent)."""
    try:
        folder = Path(record["folder"]) if record.get("folder") else None
        shipped = record.get("source") == "shipped"
        sites = tuple(
            SAESite(str(s["id"]), s["kind"], int(s["layer"]), s.get("release"), s.get("sae_id"),
                    Path(s["path"]) if s.get("path") else None, s.get("hook_name"))  # fmt: skip
            for s in record.get("sites", [])
        )
        return ModelEntry(
            name=str(record["name"]),
            description=f"as recorded by a session ({record.get('origin', 'unknown origin')})",
            source="shipped" if shipped else "pretrained",
            sites=sites,
            hf_model_name=record.get("hf_model_name"),
            tl_model_name=record.get("model"),
            hf_folder=None if shipped else folder,
            weights_dir=folder if shipped else None,
            blank_token=record["metric_tokens"][0],
            newline_token=record["metric_tokens"][1],
            item_marker=record.get("list_marker", "-"),
            stop_tokens=tuple(record["stop_tokens"]),
            bos_token=record.get("bos_token"),
            chat_prefix=record.get("chat_prefix", ""),
            chat_suffix=record.get("chat_suffix", ""),
            use_tokenizer_chat_template=bool(record.get("chat_template")),
            default_dtype=record.get("dtype", "float32"),
            templates=tuple(Template(t["name"], t["text"], t.get("length", "unspecified")) for t in record.get("templates", [])),
            origin=f"recorded ({record.get('origin', '?')})",
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ListerError(f"the recorded model entry is damaged ({exc!r})") from exc


def __getattr__(name: str):
    """``entry_for`` lives in :mod:`registry` (it looks entries up); its old import path still works."""
    if name == "entry_for":
        from lister_tui.core.engine import registry  # a lookup function, not a type: imported when asked

        return registry.entry_for
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
