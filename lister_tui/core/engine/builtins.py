"""The built-in registry entries: lister-tiny, and Gemma 2 / Gemma 3 with Gemma Scope SAEs.

Pretrained entries are read from the local Hugging Face cache only; their SAE ids
are checked against the installed SAELens directory
(``sae_lens.loading.pretrained_saes_directory.get_pretrained_saes_directory()``).

``gemma-2-2b-it-study`` reproduces the study's code exactly: per layer it took the
16k SAE of release ``gemma-scope-2b-pt-res`` whose ``average_l0_<n>`` suffix sorts
first *as a string* (its helper compared the suffixes as text), which
:func:`study_residual_sae_id` derives from the directory the same way. Which
attention SAEs that code used could not be established from what the project
holds, so the entry uses the canonical attention SAEs and says so.
"""

from __future__ import annotations

from collections.abc import Callable

from lister_tui.core.engine.entries import ModelEntry, SAESite, TranscoderSet
from lister_tui.core.errors import ListerError

GEMMA_RES_LAYERS = (0, 5, 10, 15, 20)
GEMMA_ATTN_LAYERS = (2, 7, 14, 18, 22)
GEMMA_2_9B_RES_LAYERS = (9, 20, 31)  # the layers gemma-scope-9b-it-res covers
GEMMA_3_1B_LAYERS = (7, 13, 17, 22)  # the layers gemma-scope-2-1b-it-{res,att} cover
GEMMA_3_4B_LAYERS = (9, 17, 22, 29)  # the layers gemma-scope-2-4b-it-{res,att} cover
STUDY_RES_RELEASE = "gemma-scope-2b-pt-res"
GEMMA_2_2B_N_LAYERS = 26
GEMMA_3_N_LAYERS = {"1b": 26, "4b": 34}
# Gemma Scope's Gemma 2 2B transcoders (16k; one average_l0 per layer), the set circuit-tracer uses.
GEMMA_2_2B_TRANSCODERS = TranscoderSet(
    "gemma-scope-2b-pt-transcoders",
    tuple(range(GEMMA_2_2B_N_LAYERS)),
    "Gemma Scope transcoders of Gemma 2 2B (pt, 16k, every layer; transfer to -it), as circuit-tracer's Gemma 2 set",
    release="gemma-scope-2b-pt-transcoders",
    sae_id="layer_{layer}/width_16k/average_l0_*",
    reads_ln_output=True,
)


def gemma_3_transcoders(size: str) -> TranscoderSet:
    """Gemma Scope 2's IT transcoders of Gemma 3 ``size``: the ``-all`` release (every layer; the plain
    release covers four), 16k, small L0, with the affine skip."""
    release = f"gemma-scope-2-{size}-it-transcoders-all"
    return TranscoderSet(
        release,
        tuple(range(GEMMA_3_N_LAYERS[size])),
        f"Gemma Scope 2 IT transcoders of Gemma 3 {size.upper()} (16k, small L0, affine skip, every layer)",
        release=release,
        sae_id="layer_{layer}_width_16k_l0_small_affine",
        reads_ln_output=True,
    )


def saes_directory() -> dict:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    return get_pretrained_saes_directory()


def release_sae_ids(release: str) -> list[str]:
    """The sae_ids of one release in the installed SAELens directory (read without importing sae_lens)."""
    from lister_tui.core.engine.sae_directory import release as read_release

    found = read_release(release)
    return list(found.saes_map) if found is not None else []


def study_residual_sae_id(layer: int, directory: dict | None = None) -> str:
    """The sae_id the study's code chose at ``layer``: among release gemma-scope-2b-pt-res's
    ``layer_<layer>/width_16k/average_l0_<n>``, the one whose ``<n>`` is smallest *as a string*."""
    ids = release_sae_ids(STUDY_RES_RELEASE) if directory is None else list(directory[STUDY_RES_RELEASE].saes_map)
    prefix = f"layer_{layer}/width_16k/average_l0_"
    suffixes = [sae_id.removeprefix(prefix) for sae_id in ids if sae_id.startswith(prefix)]
    if not suffixes:
        raise ListerError(f"the installed SAELens directory has no {STUDY_RES_RELEASE} SAE at layer {layer}, width 16k")
    return prefix + min(suffixes)  # text order, as the study's code compared them


def neuronpedia_ids(sites: tuple[SAESite, ...], directory: dict) -> dict[str, str | None]:
    """Each site's Neuronpedia id as SAELens' directory records it (None: the SAE has no page),
    so that a link names the SAE that is loaded, not the canonical one of its layer."""
    return {s.id: directory[s.release].neuronpedia_id.get(s.sae_id) for s in sites if s.release in directory}


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
        needs="nothing (ships with lister-tui, 10 MB)",
        transcoders=(TranscoderSet("lister-tiny", tuple(range(N_LAYERS)), "JumpReLU skip transcoders trained by `lister-tui organism build`"),),
    )


_GEMMA_2_2B_URL = "https://www.neuronpedia.org/gemma-2-2b/{layer}-gemmascope-{kind}-16k/{index}"
_LICENCE = "accept the Gemma licence on huggingface.co first"


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
        feature_url=_GEMMA_2_2B_URL,
        default_dtype="bfloat16",
        needs=f"5 GB of weights + 3 GB of SAEs; ~8 GB of GPU memory in bf16; {_LICENCE}",
        transcoders=(GEMMA_2_2B_TRANSCODERS,),
    )


def _gemma_2_2b_it_study() -> ModelEntry:
    base = _gemma_2_2b_it()
    from lister_tui.core.engine.sae_directory import release as read_release

    attn = tuple(s for s in base.sites if s.kind == "attn")
    # the releases' entries read without importing sae_lens (one read of the file for the five layers)
    directory = {r: found for r in {STUDY_RES_RELEASE, *(s.release for s in attn)} if (found := read_release(r)) is not None}
    if STUDY_RES_RELEASE not in directory:
        raise ListerError(f"the installed SAELens directory has no release {STUDY_RES_RELEASE}; reinstall sae-lens 6.x")
    res = tuple(SAESite(f"res_{l}", "res", l, STUDY_RES_RELEASE, study_residual_sae_id(l, directory)) for l in GEMMA_RES_LAYERS)
    from dataclasses import replace

    sites = attn + res
    pages = neuronpedia_ids(sites, directory)
    no_page = [site for site, page in pages.items() if page is None]
    return replace(
        base,
        extra={**base.extra, "neuronpedia_ids": pages},
        name="gemma-2-2b-it-study",
        description="Gemma 2 2B it with the study code's exact residual SAEs (per layer the 16k average_l0 SAE "
        "first in text order); attention SAEs canonical (the study's choice is not established). "
        "Feature links go to each loaded SAE's own Neuronpedia page"
        + (f" ({', '.join(no_page)}: none)." if no_page else "."),
        sites=sites,
    )


def _gemma_2_9b_it() -> ModelEntry:
    sites = tuple(
        SAESite(f"res_{l}", "res", l, "gemma-scope-9b-it-res-canonical", f"layer_{l}/width_16k/canonical")
        for l in GEMMA_2_9B_RES_LAYERS
    )
    return ModelEntry(
        name="gemma-2-9b-it",
        description="Gemma 2 9B instruction-tuned with its own IT Gemma Scope residual SAEs (16k, canonical).",
        source="pretrained",
        hf_model_name="google/gemma-2-9b-it",
        sites=sites,
        use_tokenizer_chat_template=True,
        feature_url="https://www.neuronpedia.org/gemma-2-9b-it/{layer}-gemmascope-{kind}-16k/{index}",
        default_dtype="bfloat16",
        needs=f"18 GB of weights + 1.4 GB of SAEs; ~24 GB of GPU memory in bf16; {_LICENCE}",
    )


def _gemma_3(size: str, layers: tuple[int, ...], needs: str) -> Callable[[], ModelEntry]:
    def make() -> ModelEntry:
        sites = tuple(
            SAESite(f"res_{l}", "res", l, f"gemma-scope-2-{size}-it-res", f"layer_{l}_width_16k_l0_medium") for l in layers
        ) + tuple(
            SAESite(f"attn_{l}", "attn", l, f"gemma-scope-2-{size}-it-att", f"layer_{l}_width_16k_l0_medium") for l in layers
        )
        return ModelEntry(
            name=f"gemma-3-{size}-it",
            description=f"Gemma 3 {size.upper()} instruction-tuned with Gemma Scope 2 IT SAEs (16k, medium L0), "
            f"residual and attention at layers {', '.join(map(str, layers))}.",
            source="pretrained",
            hf_model_name=f"google/gemma-3-{size}-it",
            sites=sites,
            use_tokenizer_chat_template=True,
            feature_url=f"https://www.neuronpedia.org/gemma-3-{size}-it/{{layer}}-gemmascope-2-{{kind}}-16k/{{index}}",
            default_dtype="bfloat16",
            needs=f"{needs}; {_LICENCE}",
            transcoders=(gemma_3_transcoders(size),),
        )

    return make


BUILTINS: dict[str, Callable[[], ModelEntry]] = {
    "lister-tiny": _lister_tiny,
    "gemma-2-2b-it": _gemma_2_2b_it,
    "gemma-2-2b-it-study": _gemma_2_2b_it_study,
    "gemma-2-9b-it": _gemma_2_9b_it,
    "gemma-3-1b-it": _gemma_3("1b", GEMMA_3_1B_LAYERS, "2 GB of weights + 1.1 GB of SAEs; ~4 GB of GPU memory in bf16"),
    "gemma-3-4b-it": _gemma_3("4b", GEMMA_3_4B_LAYERS, "9 GB of weights + 2.4 GB of SAEs; ~12 GB of GPU memory in bf16"),
}
