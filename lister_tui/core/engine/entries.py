"""The registry's types: a model entry, its SAE sites and prompt templates (no lookup, no loading).

The bottom of the registry: :mod:`builtins` and :mod:`registry_file` build these, :mod:`registry`
looks them up, :mod:`loading` loads them. This module imports nothing else of the engine.
"""

from __future__ import annotations

import fnmatch
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
NEURONPEDIA = "https://www.neuronpedia.org"


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


TRANSCODER_SITE_PREFIX = "tc"
TRANSCODER_SITE_PATTERN = re.compile(rf"^{TRANSCODER_SITE_PREFIX}_(\d+)$")
TRANSCODER_HOOK_IN = "blocks.{layer}.ln2.hook_normalized"
TRANSCODER_HOOK_OUT = "blocks.{layer}.hook_mlp_out"
TRANSCODER_FOLDER = "mlp_{layer}"


def transcoder_site_id(layer: int) -> str:
    """The feature-site id of layer ``layer``'s transcoder (``tc_2``)."""
    return f"{TRANSCODER_SITE_PREFIX}_{layer}"


def is_transcoder_site(sae_id: str) -> bool:
    return TRANSCODER_SITE_PATTERN.match(sae_id) is not None


def layer_of_transcoder_site(sae_id: str) -> int:
    match = TRANSCODER_SITE_PATTERN.match(sae_id)
    if match is None:
        raise ListerError(f"{sae_id!r} is not a transcoder site; transcoder sites are named {TRANSCODER_SITE_PREFIX}_L (e.g. {TRANSCODER_SITE_PREFIX}_2)")
    return int(match.group(1))


@dataclass(frozen=True)
class TranscoderSet:
    """One transcoder per layer in ``layers``, and where their weights are.

    Weights: a SAELens ``release`` with ``sae_id`` (a pattern holding ``{layer}``; a
    ``*`` in it matches the release's ids and must match exactly one per layer), a
    local ``path`` holding one SAELens folder per layer named ``folder`` (with
    ``{layer}``), or (neither) the entry's shipped ``<weights_dir>/transcoders/mlp_L``.
    """

    id: str
    layers: tuple[int, ...]
    description: str = ""
    release: str | None = None
    sae_id: str | None = None
    path: Path | None = None
    folder: str = TRANSCODER_FOLDER
    hook_in: str = TRANSCODER_HOOK_IN  # with {layer}: what the MLP reads
    hook_out: str = TRANSCODER_HOOK_OUT  # with {layer}: what the MLP writes
    # The weights read ln2's output after its gain (Gemma Scope: pre_feedforward_layernorm's
    # output), not hook_in itself: loading with a model folds ln2's gain into the encoder and skip.
    reads_ln_output: bool = False

    @property
    def source_text(self) -> str:
        if self.release is not None:
            return f"{self.release}:{self.sae_id}"
        if self.path is not None:
            return str(Path(self.path) / self.folder)
        return f"shipped (transcoders/{self.folder})"

    def layer_sae_id(self, layer: int, ids: list[str] | None = None) -> str:
        """The release's sae_id for ``layer`` (a ``*`` resolved against ``ids``, the release's ids)."""
        if self.sae_id is None:
            raise ListerError(f"transcoder set {self.id!r} names no SAELens sae_id")
        pattern = self.sae_id.format(layer=layer)
        if "*" not in pattern:
            return pattern
        if ids is None:
            from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

            release = get_pretrained_saes_directory().get(self.release)
            ids = list(release.saes_map) if release is not None else []
        hits = sorted(i for i in (ids or ()) if fnmatch.fnmatchcase(i, pattern))
        if len(hits) != 1:
            raise ListerError(
                f"transcoder set {self.id!r}: {len(hits)} ids of release {self.release!r} match {pattern!r}"
                + (f" ({', '.join(hits[:4])})" if hits else "")
                + "; the pattern must match exactly one per layer"
            )
        return hits[0]

    def site(self, layer: int, weights_dir: Path | None = None, ids: list[str] | None = None) -> SAESite:
        """Layer ``layer``'s transcoder as an SAE site (the form the pretrained loader and download hints take)."""
        if layer not in self.layers:
            raise ListerError(
                f"transcoder set {self.id!r} has no layer {layer}; layers {self.layers[0]} to {self.layers[-1]}"
                if self.layers
                else f"transcoder set {self.id!r} has no layers"
            )
        hook = self.hook_in.format(layer=layer)
        if self.release is not None:
            return SAESite(transcoder_site_id(layer), "mlp", layer, self.release, self.layer_sae_id(layer, ids), hook=hook)
        if self.path is not None:
            return SAESite(transcoder_site_id(layer), "mlp", layer, path=Path(self.path) / self.folder.format(layer=layer), hook=hook)
        if weights_dir is None:
            raise ListerError(f"transcoder set {self.id!r} is shipped with a model folder, and no folder was given")
        return SAESite(transcoder_site_id(layer), "mlp", layer, path=Path(weights_dir) / "transcoders" / self.folder.format(layer=layer), hook=hook)


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
    transcoders: tuple[TranscoderSet, ...] = ()  # one transcoder per MLP layer (attribution graphs)

    @property
    def tl_name(self) -> str | None:
        return self.tl_model_name or self.hf_model_name

    def site(self, sae_id: str) -> SAESite:
        for s in self.sites:
            if s.id == sae_id:
                return s
        match = TRANSCODER_SITE_PATTERN.match(sae_id)
        for tset in self.transcoders if match else ():
            if int(match.group(1)) in tset.layers:  # tc_L: layer L's transcoder (first set that has it)
                return tset.site(int(match.group(1)), self.weights_dir)
        raise ListerError(
            f"unknown SAE {sae_id!r} for model {self.name!r}; valid: {', '.join(s.id for s in self.sites) or 'none'}"
            + (f", transcoders {TRANSCODER_SITE_PREFIX}_L for layers {', '.join(map(str, self.transcoders[0].layers))}" if self.transcoders else "")
            + " "
            "(add one for this run with --sae RELEASE:SAE_ID or --sae FOLDER)"
        )

    def render_prompt(self, user_text: str) -> str:
        """The full prompt text (special tokens as text) for one user turn, ending with the first marker."""
        return f"{self.chat_prefix}{user_text}{self.chat_suffix}{self.item_marker}"

    def feature_link(self, sae_id: str, index: int) -> str | None:
        """The page of feature ``index`` of ``sae_id``; None where that SAE has no page. An entry
        may name each site's Neuronpedia id (``extra["neuronpedia_ids"]``, None: no page), which
        wins over ``feature_url``: a non-canonical SAE must not link to the canonical one's page."""
        pages = self.extra.get("neuronpedia_ids")
        if pages is not None and sae_id in pages:
            self.site(sae_id)
            return None if pages[sae_id] is None else f"{NEURONPEDIA}/{pages[sae_id]}/{index}"
        if self.feature_url is None:
            return None
        s = self.site(sae_id)
        return self.feature_url.format(layer=s.layer, kind="att" if s.kind == "attn" else s.kind, index=index)

    def no_page_reason(self, sae_id: str) -> str:
        """Why ``sae_id``'s features have no page (where :meth:`feature_link` is None)."""
        pages = self.extra.get("neuronpedia_ids")
        if pages is not None and pages.get(sae_id, "") is None:
            return f"{sae_id} ({self.site(sae_id).source_text}) has no Neuronpedia page"
        return f"{self.name} has no feature pages"

    def with_sites(self, extra: tuple[SAESite, ...]) -> ModelEntry:
        """This entry with more sites (a run's ad-hoc ``--sae``); an id already taken is an error."""
        taken = {s.id for s in self.sites}
        for s in extra:
            if s.id in taken:
                raise ListerError(f"SAE id {s.id!r} is already a site of {self.name!r}; give the ad-hoc SAE another id (ID=RELEASE:SAE_ID)")
            taken.add(s.id)
        return replace(self, sites=self.sites + tuple(extra))


# The study's three templates (exact texts: the project's reference notes). A user file may not
# redefine these names; prompts.py re-exports them.
STUDY_TEMPLATES: dict[str, Template] = {
    "short": Template("short", "Provide me with a short list of {topic}. Just provide the names, no need for any other information.", "short"),
    "long": Template("long", "Provide me with a long list of {topic}. Just provide the names, no need for any other information.", "long"),
    "unspecified": Template("unspecified", "Provide me with a list of {topic}. Just provide the names, no need for any other information.", "unspecified"),
}
