"""One list's attribution graph, step by step, as `lister-tui graph` and the explorer's graph screen run it.

The steps, each a function so that a caller can report between them: :func:`graph_saes`
(the transcoders, one per MLP layer, and the attention SAEs of the entry's ``attn`` sites
when attention features are on), :func:`graph_targets` (the attribution position, a given
position inside the list, or every item's end), :func:`compute_graph` (the graph itself,
with the metric's token ids), :func:`kept_cross_edges` (the kept edges between positions,
the ones attention carries, whose head shares :func:`graph_head_shares` computes) and
:func:`top_features` (the kept feature nodes by influence, the ones checks zero first).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from lister_tui.core.errors import ListerError
from lister_tui.core.study.graphs.attribute import ATTN, TC, AttributionGraph, attribute_graph
from lister_tui.core.study.graphs.prune import Pruned

if TYPE_CHECKING:
    from sae_lens import SAE

    from lister_tui.core.engine.generation import ListSample
    from lister_tui.core.engine.loading import LoadedModel

# targets per backward pass in the explorer: one pass on lister-tiny stays well under a second
# on a CPU, so a cancel (checked after each pass) is felt at once
SCREEN_BATCH = 16


def graph_saes(loaded: LoadedModel, attention_features: bool, folder: Path | None = None) -> tuple[dict[int, SAE], dict[int, SAE]]:
    """({layer: transcoder}, {layer: attention SAE}) in the model's dtype; ``folder``: SAELens
    transcoders ``mlp_0``, ``mlp_1``, … instead of the entry's set. Refuses an entry without
    transcoders, or without attention sites when attention features are asked for."""
    from lister_tui.core.engine.transcoders import (
        TranscoderSet,
        load_transcoder,
        load_transcoders,
        transcoder_set,
    )

    entry = loaded.entry
    if folder is None:
        transcoder_set(entry)  # a clear error for an entry without transcoders
        tcs = load_transcoders(loaded)
    else:
        n = loaded.model.cfg.n_layers
        tset = TranscoderSet("cli", tuple(range(n)), path=folder)
        tcs = {layer: load_transcoder(entry, tset, layer, loaded.device) for layer in range(n)}
    tcs = {layer: tc.to(dtype=loaded.dtype) for layer, tc in tcs.items()}
    attn: dict[int, SAE] = {}
    if attention_features:
        attn = {s.layer: loaded.load_sae(s.id, cache=True) for s in entry.sites if s.kind == "attn"}
        if not attn:
            raise ListerError(f"{entry.name} has no attention (hook_z) SAE sites; turn attention features off")
    return tcs, attn


def graph_targets(sample: ListSample, pos: int | None = None, each_item: bool = False) -> list[int]:
    """The target positions: ``pos`` (inside the list), every complete item's last token, or the attribution position."""
    structure = sample.structure
    if each_item:
        targets = [item.last_token_pos for item in structure.items if item.newline_pos is not None]
        if not targets:
            raise ListerError("the sampled list has no complete item; try another sample")
        return targets
    if pos is not None:
        if not sample.prompt_len - 1 <= pos < len(sample.tokens):
            raise ListerError(f"position {pos} is outside the list: valid {sample.prompt_len - 1}..{len(sample.tokens) - 1} "
                              f"(the attribution position is {structure.attribution_pos})")
        return [pos]
    if structure.attribution_pos is None:
        raise ListerError("the sampled list has no complete item, so no attribution position; give a position or pick another sample")
    return [structure.attribution_pos]


def compute_graph(
    loaded: LoadedModel,
    tokens: Sequence[int],
    transcoders: Mapping[int, SAE],
    attn_saes: Mapping[int, SAE],
    targets: Sequence[int],
    *,
    batch: int = 64,
    max_memory: int | None = None,
    on_progress: Callable[[int, int], bool | None] | None = None,
    on_estimate: Callable[[int, int, int], None] | None = None,
) -> AttributionGraph:
    """:func:`attribute_graph` of the metric logit(blank) − logit(newline) with the entry's token ids."""
    return attribute_graph(
        loaded.model, tokens, transcoders, attn_saes, targets, blank_id=loaded.ids.blank, newline_id=loaded.ids.newline,
        batch=batch, max_memory=max_memory, on_progress=on_progress, on_estimate=on_estimate,
    )


def kept_cross_edges(graph: AttributionGraph, pruned: Pruned) -> list[tuple[int, int]]:
    """Kept edges (target, source) between two positions: attention carries them."""
    pos = graph.nodes.pos
    return [(int(t), int(s)) for t, s in torch.nonzero(pruned.edge_mask).tolist() if pos[t] != pos[s]]


def graph_head_shares(
    loaded: LoadedModel, graph: AttributionGraph, transcoders: Mapping[int, SAE], attn_saes: Mapping[int, SAE], edges: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], np.ndarray]:
    """{(target, source): the part of the edge each head carries} (:func:`heads.head_shares`)."""
    from lister_tui.core.study.graphs.heads import head_shares

    return head_shares(loaded.model, graph, transcoders, attn_saes, edges, blank_id=loaded.ids.blank, newline_id=loaded.ids.newline)


def top_features(graph: AttributionGraph, pruned: Pruned, n: int | None = None) -> list[int]:
    """The kept feature nodes (transcoder and attention), most influential first (``n`` of them)."""
    features = [int(i) for i in np.flatnonzero(pruned.node_mask & np.isin(graph.nodes.kind, (TC, ATTN)))]
    features.sort(key=lambda i: -pruned.node_influence[i])
    return features if n is None else features[:n]


def graph_checks(
    loaded: LoadedModel, graph: AttributionGraph, transcoders: Mapping[int, SAE], attn_saes: Mapping[int, SAE], nodes: Sequence[int]
) -> list[dict]:
    """Per node zeroed: the graph's Δ of the metric beside the replacement model's and the real model's (:func:`checks.check_nodes`)."""
    from lister_tui.core.study.graphs.checks import check_nodes

    return check_nodes(loaded.model, graph, transcoders, attn_saes, list(nodes), blank_id=loaded.ids.blank, newline_id=loaded.ids.newline)


def entries_with_transcoders() -> list[str]:
    """The registry's entries (built-in and the user's) that name a transcoder set."""
    from lister_tui.core.engine.registry import get_entry, registry_names

    out = []
    for name in registry_names():
        try:
            if get_entry(name).transcoders:
                out.append(name)
        except ListerError:
            continue
    return out


def check_has_transcoders(entry) -> None:
    """Refuse an entry without transcoders, naming the entries that have them (before anything loads)."""
    if not entry.transcoders:
        names = ", ".join(entries_with_transcoders()) or "none"
        raise ListerError(f"model {entry.name} has no transcoders, so no attribution graph; entries with them: {names} "
                          "(a TOML entry adds a set with [[transcoders]])")
