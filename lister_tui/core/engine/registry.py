"""The model registry: one description type for "a model and its SAE set".

Everything downstream takes a :class:`ModelEntry` (or its name), never a
hard-coded model. Loading lives in :mod:`lister_tui.core.engine.loading`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lister_tui.core.errors import ListerError

SAEKind = Literal["res", "attn"]


@dataclass(frozen=True)
class SAESite:
    """One SAE of an entry: where it reads from and where its weights come from."""

    id: str
    kind: SAEKind
    layer: int
    # For a shipped SAE: folder name under the entry's weights folder.
    # For a pretrained one: (sae-lens release, sae_id).
    release: str | None = None
    sae_id: str | None = None

    @property
    def hook_name(self) -> str:
        if self.kind == "res":
            return f"blocks.{self.layer}.hook_resid_post"
        return f"blocks.{self.layer}.attn.hook_z"

    @property
    def label(self) -> str:
        return f"{'residual' if self.kind == 'res' else 'attention'} {self.layer}"


@dataclass(frozen=True)
class ModelEntry:
    """A model, its tokenizer's conventions and its SAE set."""

    name: str
    description: str
    # "shipped": weights inside this package; "pretrained": a TransformerLens name
    # plus sae-lens releases, read from the local Hugging Face cache only.
    source: Literal["shipped", "pretrained"]
    sites: tuple[SAESite, ...]
    hf_model_name: str | None = None
    # Token strings, resolved to ids through the tokenizer (never hard-coded ids).
    blank_token: str = " "
    newline_token: str = "\n"
    item_marker: str = "-"
    stop_tokens: tuple[str, ...] = ("<end_of_turn>", "<eos>")
    bos_token: str = "<bos>"
    # The chat frame around the user's text; the prompt ends with the first item marker.
    chat_prefix: str = "<bos><start_of_turn>user\n"
    chat_suffix: str = "<end_of_turn>\n<start_of_turn>model\n-"
    # Render with the tokenizer's own chat template (then append the item marker).
    use_tokenizer_chat_template: bool = False
    # A page about one feature: formatted with layer, kind ("res" | "att") and index.
    feature_url: str | None = None
    weights_dir: Path | None = None
    default_dtype: str = "float32"
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def site(self, sae_id: str) -> SAESite:
        for s in self.sites:
            if s.id == sae_id:
                return s
        raise ListerError(
            f"unknown SAE {sae_id!r} for model {self.name!r}; valid: {', '.join(s.id for s in self.sites)}"
        )

    def render_prompt(self, user_text: str) -> str:
        """The full prompt text (special tokens as text) for one user turn."""
        return f"{self.chat_prefix}{user_text}{self.chat_suffix}"

    def feature_link(self, sae_id: str, index: int) -> str | None:
        if self.feature_url is None:
            return None
        s = self.site(sae_id)
        return self.feature_url.format(layer=s.layer, kind="res" if s.kind == "res" else "att", index=index)


def _lister_tiny() -> ModelEntry:
    from lister_tui.organism.paths import N_LAYERS, weights_dir

    sites = tuple(SAESite(f"res_{l}", "res", l) for l in range(N_LAYERS)) + tuple(
        SAESite(f"attn_{l}", "attn", l) for l in range(N_LAYERS)
    )
    return ModelEntry(
        name="lister-tiny",
        description="The project's own small transformer, trained on synthetic chat-style lists, with SAEs on every layer.",
        source="shipped",
        sites=sites,
        weights_dir=weights_dir(),
    )


GEMMA_RES_LAYERS = (0, 5, 10, 15, 20)
GEMMA_ATTN_LAYERS = (2, 7, 14, 18, 22)


def _gemma_2_2b_it() -> ModelEntry:
    sites = tuple(
        SAESite(f"attn_{l}", "attn", l, "gemma-scope-2b-pt-att-canonical", f"layer_{l}/width_16k/canonical")
        for l in GEMMA_ATTN_LAYERS
    ) + tuple(
        SAESite(f"res_{l}", "res", l, "gemma-scope-2b-pt-res-canonical", f"layer_{l}/width_16k/canonical")
        for l in GEMMA_RES_LAYERS
    )
    return ModelEntry(
        name="gemma-2-2b-it",
        description="Gemma 2 2B instruction-tuned with the study's Gemma Scope 16k SAEs (pt SAEs transfer to -it).",
        source="pretrained",
        hf_model_name="google/gemma-2-2b-it",
        sites=sites,
        use_tokenizer_chat_template=True,
        feature_url="https://www.neuronpedia.org/gemma-2-2b/{layer}-gemmascope-{kind}-16k/{index}",
        default_dtype="bfloat16",
    )


_FACTORIES = {"lister-tiny": _lister_tiny, "gemma-2-2b-it": _gemma_2_2b_it}


def registry_names() -> tuple[str, ...]:
    return tuple(_FACTORIES)


def get_entry(name: str) -> ModelEntry:
    """The registry entry called ``name``."""
    if name not in _FACTORIES:
        raise ListerError(f"unknown model {name!r}; registry entries: {', '.join(_FACTORIES)}")
    return _FACTORIES[name]()
