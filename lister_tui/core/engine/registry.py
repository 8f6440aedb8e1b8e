"""The model registry: one description type for "a model, its conventions and its SAE set".

Everything downstream takes a :class:`ModelEntry` (or its name), never a
hard-coded model. Entries come from three places, looked up in this order:
entries registered in this process (a run's ad-hoc ``--sae`` sites), the built-in
entries (:mod:`lister_tui.core.engine.builtins`), and the user's TOML files
(:mod:`lister_tui.core.engine.registry_file`: ``<config>/registry.toml``,
``<config>/models/*.toml`` and ``--registry FILE``). A broken user file never
hides a built-in. Loading lives in :mod:`lister_tui.core.engine.loading`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from lister_tui.core.errors import ListerError

SAEKind = Literal["res", "attn", "mlp"]
KIND_LABELS = {"res": "residual", "attn": "attention", "mlp": "MLP"}
# The hook point each kind reads by default (SAELens' names).
KIND_HOOKS = {"res": "hook_resid_post", "attn": "attn.hook_z", "mlp": "hook_mlp_out"}
HOOK_PATTERN = re.compile(r"^blocks\.(\d+)\.(hook_resid_pre|hook_resid_mid|hook_resid_post|hook_mlp_out|attn\.hook_z|hook_attn_out)$")
LENGTH_GROUPS = ("short", "long", "unspecified", "neutral")


def kind_of_hook(hook_name: str) -> tuple[SAEKind, int]:
    """The site kind and layer of a TransformerLens hook point, e.g. blocks.3.attn.hook_z -> ("attn", 3)."""
    match = HOOK_PATTERN.match(hook_name)
    if match is None:
        raise ListerError(
            f"hook point {hook_name!r} is not one lister-tui can attribute through; valid: blocks.L.hook_resid_pre, "
            "blocks.L.hook_resid_mid, blocks.L.hook_resid_post, blocks.L.hook_mlp_out, blocks.L.hook_attn_out, blocks.L.attn.hook_z"
        )
    point = match.group(2)
    kind: SAEKind = "attn" if point in ("attn.hook_z", "hook_attn_out") else "mlp" if point == "hook_mlp_out" else "res"
    return kind, int(match.group(1))


@dataclass(frozen=True)
class SAESite:
    """One SAE of an entry: where it reads from and where its weights come from.

    Weights: a SAELens ``release`` + ``sae_id`` (read from the local Hugging Face
    cache), a local SAELens folder ``path``, or (neither) the shipped folder
    ``<weights_dir>/saes/<id>``.
    """

    id: str
    kind: SAEKind
    layer: int
    release: str | None = None
    sae_id: str | None = None
    path: Path | None = None
    hook: str | None = None  # an explicit hook point; default: the kind's (KIND_HOOKS)

    @property
    def hook_name(self) -> str:
        return self.hook or f"blocks.{self.layer}.{KIND_HOOKS[self.kind]}"

    @property
    def label(self) -> str:
        return f"{KIND_LABELS.get(self.kind, self.kind)} {self.layer}"

    @property
    def source_text(self) -> str:
        """Where the weights come from, in one short line."""
        if self.release is not None:
            return f"{self.release}:{self.sae_id}"
        if self.path is not None:
            return str(self.path)
        return "shipped"


@dataclass(frozen=True)
class Template:
    """A prompt template: ``text`` holds ``{topic}``; ``length`` groups it in the tables."""

    name: str
    text: str
    length: str = "unspecified"  # one of LENGTH_GROUPS


@dataclass(frozen=True)
class ModelEntry:
    """A model, its tokenizer's conventions and its SAE set."""

    name: str
    description: str
    # "shipped": a lister-tiny style folder (TransformerLens config + safetensors + tokenizer);
    # "pretrained": a TransformerLens model name and Hugging Face weights, from the local
    # Hugging Face cache (hf_model_name) or a local folder of HF weights (hf_folder).
    source: Literal["shipped", "pretrained"]
    sites: tuple[SAESite, ...]
    hf_model_name: str | None = None
    # The TransformerLens name whose architecture the weights have (default: hf_model_name).
    tl_model_name: str | None = None
    hf_folder: Path | None = None
    # Token strings, resolved to ids through the tokenizer (never hard-coded ids).
    blank_token: str = " "
    newline_token: str = "\n"
    item_marker: str = "-"  # the list style: "-", "*" or a numbered "1."
    stop_tokens: tuple[str, ...] = ("<end_of_turn>", "<eos>")
    bos_token: str | None = "<bos>"
    # The chat frame around the user's text; the prompt then ends with the first item marker.
    chat_prefix: str = "<bos><start_of_turn>user\n"
    chat_suffix: str = "<end_of_turn>\n<start_of_turn>model\n"
    # Render with the tokenizer's own chat template (then append the item marker).
    use_tokenizer_chat_template: bool = False
    # A page about one feature: formatted with layer, kind ("res" | "att" | "mlp") and index.
    feature_url: str | None = None
    weights_dir: Path | None = None
    default_dtype: str = "float32"
    templates: tuple[Template, ...] = ()  # templates this entry's file defines (besides the study's)
    needs: str = ""  # what a user must have for it (memory, licence)
    origin: str = "built-in"  # "built-in", a registry file's path, or "ad hoc"
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def tl_name(self) -> str | None:
        return self.tl_model_name or self.hf_model_name

    def site(self, sae_id: str) -> SAESite:
        for s in self.sites:
            if s.id == sae_id:
                return s
        raise ListerError(
            f"unknown SAE {sae_id!r} for model {self.name!r}; valid: {', '.join(s.id for s in self.sites) or 'none'} "
            "(add one for this run with --sae RELEASE:SAE_ID or --sae FOLDER)"
        )

    def render_prompt(self, user_text: str) -> str:
        """The full prompt text (special tokens as text) for one user turn, ending with the first marker."""
        return f"{self.chat_prefix}{user_text}{self.chat_suffix}{self.item_marker}"

    def feature_link(self, sae_id: str, index: int) -> str | None:
        if self.feature_url is None:
            return None
        s = self.site(sae_id)
        return self.feature_url.format(layer=s.layer, kind="att" if s.kind == "attn" else s.kind, index=index)

    def with_sites(self, extra: tuple[SAESite, ...]) -> ModelEntry:
        """This entry with more sites (a run's ad-hoc ``--sae``); an id already taken is an error."""
        taken = {s.id for s in self.sites}
        for s in extra:
            if s.id in taken:
                raise ListerError(f"SAE id {s.id!r} is already a site of {self.name!r}; give the ad-hoc SAE another id (ID=RELEASE:SAE_ID)")
            taken.add(s.id)
        return replace(self, sites=self.sites + tuple(extra))


# --- lookup -------------------------------------------------------------------------

REGISTRY_ENV = "LISTER_TUI_REGISTRY"  # extra registry files, os.pathsep-separated (set by --registry)
_registered: dict[str, ModelEntry] = {}


def use_registry_files(paths) -> None:
    """Add registry files for this process and the workers it starts (``--registry FILE``)."""
    current = [p for p in os.environ.get(REGISTRY_ENV, "").split(os.pathsep) if p]
    for p in paths or ():
        path = str(Path(p).expanduser().resolve())
        if not Path(path).is_file():
            raise ListerError(f"registry file {p} does not exist; give a TOML file (see docs/models.md, 'Your own models, SAEs and templates')")
        if path not in current:
            current.append(path)
    os.environ[REGISTRY_ENV] = os.pathsep.join(current)


def register_entry(entry: ModelEntry) -> None:
    """Make ``entry`` what ``get_entry(entry.name)`` returns in this process (a run's ad-hoc sites)."""
    _registered[entry.name] = entry


def registry_names() -> tuple[str, ...]:
    from lister_tui.core.engine.builtins import BUILTINS
    from lister_tui.core.engine.registry_file import user_entries

    entries, _problems = user_entries()
    return tuple(dict.fromkeys([*BUILTINS, *(e.name for e in entries), *_registered]))


def get_entry(name: str) -> ModelEntry:
    """The registry entry called ``name``."""
    from lister_tui.core.engine.builtins import BUILTINS
    from lister_tui.core.engine.registry_file import user_entries

    if name in _registered:
        return _registered[name]
    if name in BUILTINS:
        return BUILTINS[name]()
    entries, problems = user_entries()
    for entry in entries:
        if entry.name == name:
            return entry
    hint = "".join(f"\n  ({p})" for p in problems)
    raise ListerError(
        f"unknown model {name!r}; registry entries: {', '.join([*BUILTINS, *(e.name for e in entries)])} "
        f"(`lister-tui models` lists them; add your own in a TOML file){hint}"
    )
