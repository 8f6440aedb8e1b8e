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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lister_tui.core.engine.registry import ModelEntry, SAESite
from lister_tui.core.errors import ListerError, ModelNotAvailable

if TYPE_CHECKING:
    from sae_lens.saes.transcoder import Transcoder

    from lister_tui.core.engine.loading import LoadedModel

SITE_PREFIX = "tc"
SITE_PATTERN = re.compile(rf"^{SITE_PREFIX}_(\d+)$")
HOOK_IN = "blocks.{layer}.ln2.hook_normalized"
HOOK_OUT = "blocks.{layer}.hook_mlp_out"
SHIPPED_SUBDIR = "transcoders"
LAYER_FOLDER = "mlp_{layer}"


def site_id(layer: int) -> str:
    """The feature-site id of layer ``layer``'s transcoder (``tc_2``)."""
    return f"{SITE_PREFIX}_{layer}"


def is_transcoder_site(sae_id: str) -> bool:
    return SITE_PATTERN.match(sae_id) is not None


def layer_of_site(sae_id: str) -> int:
    match = SITE_PATTERN.match(sae_id)
    if match is None:
        raise ListerError(f"{sae_id!r} is not a transcoder site; transcoder sites are named {SITE_PREFIX}_L (e.g. {SITE_PREFIX}_2)")
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
    folder: str = LAYER_FOLDER
    hook_in: str = HOOK_IN  # with {layer}: what the MLP reads
    hook_out: str = HOOK_OUT  # with {layer}: what the MLP writes

    @property
    def source_text(self) -> str:
        if self.release is not None:
            return f"{self.release}:{self.sae_id}"
        if self.path is not None:
            return str(Path(self.path) / self.folder)
        return f"shipped ({SHIPPED_SUBDIR}/{self.folder})"

    def layer_sae_id(self, layer: int, ids: list[str] | None = None) -> str:
        """The release's sae_id for ``layer`` (a ``*`` resolved against ``ids``, the release's ids)."""
        if self.sae_id is None:
            raise ListerError(f"transcoder set {self.id!r} names no SAELens sae_id")
        pattern = self.sae_id.format(layer=layer)
        if "*" not in pattern:
            return pattern
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
            return SAESite(site_id(layer), "mlp", layer, self.release, self.layer_sae_id(layer, ids), hook=hook)
        if self.path is not None:
            return SAESite(site_id(layer), "mlp", layer, path=Path(self.path) / self.folder.format(layer=layer), hook=hook)
        if weights_dir is None:
            raise ListerError(f"transcoder set {self.id!r} is shipped with a model folder, and no folder was given")
        return SAESite(site_id(layer), "mlp", layer, path=Path(weights_dir) / SHIPPED_SUBDIR / self.folder.format(layer=layer), hook=hook)


def shipped_set(n_layers: int, description: str = "") -> TranscoderSet:
    """The set a shipped (lister-tiny style) folder holds: ``transcoders/mlp_L`` for every layer."""
    return TranscoderSet("shipped", tuple(range(n_layers)), description or "trained by `lister-tui organism build`")


def transcoder_sets(entry: ModelEntry) -> tuple[TranscoderSet, ...]:
    """The transcoder sets an entry names; a shipped folder holding ``transcoders/`` carries its own set."""
    named = tuple(getattr(entry, "transcoders", ()) or ())
    if named or entry.source != "shipped" or entry.weights_dir is None:
        return named
    folder = Path(entry.weights_dir)
    if not (folder / SHIPPED_SUBDIR).is_dir():
        return ()
    import json

    try:
        n_layers = int(json.loads((folder / "model_config.json").read_text())["n_layers"])
    except (OSError, ValueError, KeyError) as exc:
        raise ModelNotAvailable(f"model config in {folder} is unreadable ({exc})") from exc
    return (shipped_set(n_layers),)


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
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if release not in directory:
        raise ListerError(f"transcoder release {release!r} is not in the installed SAELens directory; check its name")
    return directory[release]


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
    # One line with a glob over the layers when the folders differ only in the layer number.
    patterns = {re.sub(r"layer_\d+", "layer_*", f) for f in folders}
    if len(patterns) == 1 and "average_l0" not in folders[0]:
        return [f"  hf download {release.repo_id} --include '{patterns.pop()}/*'"]
    return [f"  hf download {release.repo_id} " + " ".join(f"--include '{f}/*'" for f in folders)]


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


def load_transcoder(entry: ModelEntry, tset: TranscoderSet, layer: int, device: str = "cpu") -> "Transcoder":
    """Layer ``layer``'s transcoder of ``tset``: eval mode, float32, on ``device``, frozen."""
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

    ``entry_or_handle``: a loaded model (its entry and device), a registry entry or an
    entry's name (device ``cpu`` unless given).
    """
    from lister_tui.core.engine.loading import LoadedModel
    from lister_tui.core.engine.registry import get_entry

    if isinstance(entry_or_handle, LoadedModel):
        entry, device = entry_or_handle.entry, device or entry_or_handle.device
    elif isinstance(entry_or_handle, str):
        entry = get_entry(entry_or_handle)
    else:
        entry = entry_or_handle
    tset = transcoder_set(entry, set_id)
    wanted = tset.layers if layers is None else tuple(layers)
    for layer in wanted:
        if layer not in tset.layers:
            raise ListerError(f"transcoder set {tset.id!r} of {entry.name} has no layer {layer}; layers: {', '.join(map(str, tset.layers))}")
    return {layer: load_transcoder(entry, tset, layer, device or "cpu") for layer in wanted}
