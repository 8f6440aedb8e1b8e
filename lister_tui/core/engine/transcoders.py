"""Transcoder sets: one transcoder per MLP layer, described by a registry entry and loaded for the engine.

A transcoder reads what an MLP reads (``blocks.L.ln2.hook_normalized``, LayerNorm's
output before its weight and bias) and predicts what it writes
(``blocks.L.hook_mlp_out``); replacing every MLP by its transcoder makes the
model linear from features to the logits once attention patterns and normalisation
scales are frozen (attribution graphs). A :class:`TranscoderSet` says where a
set's weights are: the entry's shipped folder (``<weights_dir>/transcoders/mlp_L``,
lister-tiny's own), a SAELens release with one ``sae_id`` per layer (Gemma Scope),
or a local folder of SAELens folders (a user's TOML entry).

Transcoder feature sites are named ``tc_L`` (layer L), like the SAE sites ``res_L``
and ``attn_L``: ``lister-tui feature --sae tc_2 17`` is feature 17 of layer 2's
transcoder. :func:`load_transcoders` returns ``{layer: transcoder}`` in eval mode,
float32, on the model's device.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import TYPE_CHECKING

from lister_tui.core.engine.entries import (  # noqa: F401  (the set's type and site ids live with the entry types)
    TRANSCODER_SITE_PREFIX as SITE_PREFIX,
    ModelEntry,
    SAESite,
    TranscoderSet,
    is_transcoder_site,
    layer_of_transcoder_site as layer_of_site,
    transcoder_site_id as site_id,
)
from lister_tui.core.engine.lazy import torch  # imported on first use: `lister-tui models` lists sets without it
from lister_tui.core.errors import ListerError, ModelNotAvailable

if TYPE_CHECKING:
    from sae_lens.saes.transcoder import Transcoder

    from lister_tui.core.engine.loading import LoadedModel

SHIPPED_SUBDIR = "transcoders"


def transcoder_sets(entry: ModelEntry) -> tuple[TranscoderSet, ...]:
    """The transcoder sets an entry names."""
    return tuple(entry.transcoders)


def transcoder_set(entry: ModelEntry, set_id: str | None = None) -> TranscoderSet:
    """The entry's set ``set_id`` (default: its first), or a clear error naming what it has."""
    sets = transcoder_sets(entry)
    if not sets:
        raise ListerError(
            f"model {entry.name!r} names no transcoder set; attribution graphs need one transcoder per MLP layer "
            "(lister-tiny, gemma-2-2b-it, gemma-3-1b-it and gemma-3-4b-it have them; a TOML entry adds one with [[transcoders]])"
        )
    if set_id is None:
        return sets[0]
    for s in sets:
        if s.id == set_id:
            return s
    raise ListerError(f"model {entry.name!r} has no transcoder set {set_id!r}; valid: {', '.join(s.id for s in sets)}")


def _directory_release(release: str):
    """The release's entry in the installed SAELens directory (read from its YAML, without importing sae_lens)."""
    from lister_tui.core.engine.sae_directory import release as read_release

    found = read_release(release)
    if found is None:
        raise ListerError(f"transcoder release {release!r} is not in the installed SAELens directory; check its name")
    return found


def transcoder_set_of_site(entry: ModelEntry, sae_id: str) -> TranscoderSet:
    """The set a transcoder site ``tc_L`` of ``entry`` comes from (the first set with layer L)."""
    layer = layer_of_site(sae_id)
    for tset in transcoder_sets(entry):
        if layer in tset.layers:
            return tset
    raise ListerError(f"model {entry.name!r} has no transcoder at layer {layer}")


def set_sites(entry: ModelEntry, tset: TranscoderSet) -> tuple[SAESite, ...]:
    """Every layer of ``tset`` as an SAE site (release ids resolved)."""
    ids = list(_directory_release(tset.release).saes_map) if tset.release is not None else None
    return tuple(tset.site(layer, entry.weights_dir, ids) for layer in tset.layers)


def download_lines(entry: ModelEntry, tset: TranscoderSet) -> list[str]:
    """The `hf download` line(s) that fetch ``tset`` (one per set when the layers share a repo folder pattern)."""
    if tset.release is None:
        if tset.path is not None:
            return [f"  (one SAELens folder per layer at {Path(tset.path) / tset.folder})"]
        return ["  (shipped with the model's folder)"]
    release = _directory_release(tset.release)
    sites = set_sites(entry, tset)
    folders = [release.saes_map[s.sae_id] for s in sites]
    # One line with a glob when the glob matches exactly the set's folders in the release.
    globs = {re.sub(r"average_l0_\d+", "average_l0_*", re.sub(r"layer_\d+", "layer_*", f)) for f in folders}
    if len(globs) == 1:
        glob = globs.pop()
        if sorted(f for f in release.saes_map.values() if fnmatch.fnmatchcase(f, glob)) == sorted(folders):
            return [f"  hf download {release.repo_id} --include '{glob}/*'"]
    return [f"  hf download {release.repo_id} " + " ".join(f"--include '{f}/*'" for f in folders)]


def set_present(entry: ModelEntry, tset: TranscoderSet) -> bool:
    """Whether every layer's weights of ``tset`` are here (shipped folder, local folder or HF cache)."""
    from lister_tui.core.engine.pretrained import sae_files_present

    for site in set_sites(entry, tset):
        if site.release is None and not (Path(site.path) / "cfg.json").is_file():
            return False
        if site.release is not None and not sae_files_present(site):
            return False
    return True


def _check(tc, entry: ModelEntry, tset: TranscoderSet, layer: int, source: str) -> "Transcoder":
    from sae_lens.saes.transcoder import Transcoder

    if not isinstance(tc, Transcoder):
        raise ListerError(
            f"transcoder set {tset.id!r} of {entry.name}, layer {layer} ({source}) is a {type(tc).__name__}, not a "
            "SAELens transcoder; its cfg.json's architecture must be a transcoder's (e.g. jumprelu_skip_transcoder)"
        )
    hook_in, hook_out = tset.hook_in.format(layer=layer), tset.hook_out.format(layer=layer)
    meta = tc.cfg.metadata
    out = meta.hook_name_out
    if out is not None and out != hook_out:
        raise ListerError(
            f"transcoder set {tset.id!r} of {entry.name}, layer {layer} ({source}) writes {out!r}, but the set says {hook_out!r}"
        )
    # Gemma Scope 2's SAELens loader records hook_mlp_in (the residual before ln2) though its
    # transcoders read pre_feedforward_layernorm's output, which is ln2's: the set's hook is the one used.
    meta.hook_name = hook_in
    meta.hook_name_out = hook_out
    return tc


def fold_ln_gain(tc: "Transcoder", gain: "torch.Tensor", bias: "torch.Tensor | None" = None) -> "Transcoder":
    """Make ``tc``, which reads ``x * gain + bias``, read ``x`` (ln2's normalised output) instead.

    Encoder: (x g + b) W_enc + b_enc = x (g W_enc) + (b W_enc + b_enc); the skip likewise.
    """
    with torch.no_grad():
        return _fold_ln_gain(tc, gain, bias)


def _fold_ln_gain(tc: "Transcoder", gain: "torch.Tensor", bias: "torch.Tensor | None") -> "Transcoder":
    g = gain.to(tc.W_enc.device, torch.float32)
    if bias is not None:
        b = bias.to(tc.W_enc.device, torch.float32)
        tc.b_enc.add_(b @ tc.W_enc)
        if hasattr(tc, "W_skip"):
            tc.b_dec.add_(b @ tc.W_skip.T)
    tc.W_enc.mul_(g[:, None])
    if hasattr(tc, "W_skip"):
        tc.W_skip.mul_(g[None, :])
    return tc


def load_transcoder(
    entry: ModelEntry, tset: TranscoderSet, layer: int, device: str = "cpu", model=None
) -> "Transcoder":
    """Layer ``layer``'s transcoder of ``tset``: eval mode, float32, on ``device``, frozen.

    A set whose weights read ln2's output after its gain (``reads_ln_output``) is
    folded to read ``hook_in`` when ``model`` (the HookedTransformer) is given.
    """
    from sae_lens import SAE

    ids = list(_directory_release(tset.release).saes_map) if tset.release is not None else None
    site = tset.site(layer, entry.weights_dir, ids)
    if site.release is not None or tset.path is not None:
        from lister_tui.core.engine.pretrained import load_pretrained_sae

        tc = load_pretrained_sae(entry, site, device)
    else:
        path = Path(site.path)
        if not (path / "cfg.json").is_file():
            raise ModelNotAvailable(
                f"transcoder {site.id} of {entry.name} is missing at {path}; run `lister-tui organism transcoders` "
                "(or a full `lister-tui organism build`)"
            )
        try:
            tc = SAE.load_from_disk(str(path), device=device)
        except Exception as exc:
            raise ModelNotAvailable(f"transcoder {site.id} at {path} is unreadable ({type(exc).__name__}: {exc})") from exc
    tc = _check(tc, entry, tset, layer, site.source_text)
    tc = tc.to(device, dtype=torch.float32)
    if tset.reads_ln_output and model is not None:
        ln2 = model.blocks[layer].ln2
        fold_ln_gain(tc, ln2.w, getattr(ln2, "b", None))
    tc.eval()
    for p in tc.parameters():
        p.requires_grad_(False)
    return tc


def load_transcoders(
    entry_or_handle: "ModelEntry | LoadedModel | str",
    set_id: str | None = None,
    *,
    layers: tuple[int, ...] | None = None,
    device: str | None = None,
) -> dict[int, "Transcoder"]:
    """``{layer: transcoder}`` of the entry's transcoder set (default: its first), float32, eval mode.

    ``entry_or_handle``: a loaded model (its entry, device, and its ln2 gains for a set
    that reads ln2's output after the gain, as Gemma Scope's), a registry entry or an
    entry's name (device ``cpu`` unless given; such a set then reads ln2's output).
    """
    from lister_tui.core.engine.loading import LoadedModel
    from lister_tui.core.engine.registry import get_entry

    model = None
    if isinstance(entry_or_handle, LoadedModel):
        entry, device, model = entry_or_handle.entry, device or entry_or_handle.device, entry_or_handle.model
    elif isinstance(entry_or_handle, str):
        entry = get_entry(entry_or_handle)
    else:
        entry = entry_or_handle
    tset = transcoder_set(entry, set_id)
    wanted = tset.layers if layers is None else tuple(layers)
    for layer in wanted:
        if layer not in tset.layers:
            raise ListerError(f"transcoder set {tset.id!r} of {entry.name} has no layer {layer}; layers: {', '.join(map(str, tset.layers))}")
    return {layer: load_transcoder(entry, tset, layer, device or "cpu", model) for layer in wanted}
