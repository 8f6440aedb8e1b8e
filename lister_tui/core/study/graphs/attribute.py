"""The attribution graph of one prompt: nodes, and every edge as an exact linear contribution.

Phases, in circuit-tracer's order (``attribution/attribute.py`` there): (1) the real pass
(:func:`replacement.prompt_state`): features, errors, frozen patterns and LayerNorm scales;
(2) one forward pass of the local replacement model on ``batch`` copies of the prompt with
every feature, error and embedding a leaf tensor; (3) for batches of targets, one backward
pass each, row ``b`` of the batch carrying target ``b``'s injection (the metric direction at
its position, or a feature's encoder direction at its input), so each batch row's gradients
are that target's. An edge is then ``source activation × d(target pre-activation)/d(source)``:

    feature → target   a_s · ∂t/∂a_s          error → target   ε · ∂t/∂ε          token → target   e · ∂t/∂e

Attention patterns and LayerNorm scales are constants, so these are exact linear
contributions (tests check each against a finite difference). Rows are targets, columns
sources: ``adjacency[t, s]`` is the edge s → t, as in circuit-tracer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from lister_tui.core.errors import ListerError
from lister_tui.core.study.graphs import replacement as rep

if TYPE_CHECKING:
    from sae_lens import SAE
    from transformer_lens import HookedTransformer

# node kinds, in the order nodes are laid out
TC, ATTN, MLP_ERROR, ATTN_ERROR, TOKEN, TARGET = range(6)
KIND_NAMES = ("transcoder", "attention", "mlp error", "attention error", "token", "target")


@dataclass
class Nodes:
    """The graph's nodes as parallel arrays (features, then errors, then tokens, then targets)."""

    kind: np.ndarray  # [N] int8, one of TC..TARGET
    layer: np.ndarray  # [N] int32 (-1 for tokens and targets)
    pos: np.ndarray  # [N] int32
    feature: np.ndarray  # [N] int64 (-1 for errors, tokens, targets)
    activation: np.ndarray  # [N] float64: feature activation; error norm; metric value for targets

    def __len__(self) -> int:
        return len(self.kind)

    def where(self, kind: int) -> np.ndarray:
        return np.flatnonzero(self.kind == kind)

    def index(self) -> dict[tuple[int, int, int, int], int]:
        """(kind, layer, pos, feature) -> node index."""
        return {(int(k), int(layer), int(p), int(f)): i for i, (k, layer, p, f) in enumerate(zip(self.kind, self.layer, self.pos, self.feature))}

    def is_error(self) -> np.ndarray:
        return (self.kind == MLP_ERROR) | (self.kind == ATTN_ERROR)

    def is_feature(self) -> np.ndarray:
        return (self.kind == TC) | (self.kind == ATTN)


@dataclass
class AttributionGraph:
    """Nodes, the dense adjacency (rows targets, columns sources) and what produced them."""

    tokens: list[int]
    nodes: Nodes
    adjacency: Tensor  # [N, N] float32 on CPU
    target_weights: np.ndarray  # [N]: the weight of each target node in the influence (sums to 1)
    n_layers: int
    n_heads: int
    attention_features: bool
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def targets(self) -> np.ndarray:
        return self.nodes.where(TARGET)


def build_nodes(state: rep.PromptState, attention_features: bool, target_positions: Sequence[int]) -> Nodes:
    """Every active feature, one error per (site, position), one token per position, the targets."""
    n = state.tokens.shape[0]
    kind, layer, pos, feature, activation = [], [], [], [], []

    def cpu(t: Tensor) -> np.ndarray:  # the state lives on the model's device; nodes are numpy
        return t.detach().double().cpu().numpy()

    def add(k, layer_, p, f, a):
        kind.append(np.full(len(p), k, np.int8))
        layer.append(np.full(len(p), layer_, np.int32) if np.isscalar(layer_) else np.asarray(layer_, np.int32))
        pos.append(np.asarray(p, np.int32))
        feature.append(np.asarray(f, np.int64))
        activation.append(np.asarray(a, np.float64))

    for L, acts in enumerate(state.tc_acts):
        p, f = torch.nonzero(acts, as_tuple=True)
        add(TC, L, p.cpu().numpy(), f.cpu().numpy(), cpu(acts[p, f]))
    if attention_features:
        for L, acts in sorted(state.attn_acts.items()):
            p, f = torch.nonzero(acts, as_tuple=True)
            add(ATTN, L, p.cpu().numpy(), f.cpu().numpy(), cpu(acts[p, f]))
    for L, err in enumerate(state.tc_error):
        add(MLP_ERROR, L, np.arange(n), np.full(n, -1), cpu(err.norm(dim=-1)))
    if attention_features:
        for L, err in sorted(state.attn_error.items()):
            add(ATTN_ERROR, L, np.arange(n), np.full(n, -1), cpu(err.flatten(-2).norm(dim=-1)))
    add(TOKEN, -1, np.arange(n), np.full(n, -1), cpu(state.embed.norm(dim=-1)))
    values = cpu(state.logits_diff) if state.logits_diff is not None else np.zeros(n)
    add(TARGET, -1, np.asarray(target_positions), np.full(len(target_positions), -1), values[list(target_positions)])
    return Nodes(*(np.concatenate(x) for x in (kind, layer, pos, feature, activation)))


def memory_estimate(n_nodes: int, n_positions: int, model: HookedTransformer, widths: Sequence[int], batch: int) -> int:
    """Bytes: the float32 adjacency, plus the leaves and their gradients for one batch (4 bytes each)."""
    per_row = n_positions * (model.cfg.d_model * (1 + 2 * model.cfg.n_layers) + sum(widths))
    activations = batch * n_positions * model.cfg.d_model * model.cfg.n_layers * 16  # TransformerLens's saved tensors, roughly
    elem = torch.finfo(next(model.parameters()).dtype).bits // 8
    return 4 * n_nodes * n_nodes + elem * (3 * batch * per_row + activations)


@dataclass
class _Leaves:
    embed: Tensor
    tc_acts: dict[int, Tensor]
    tc_error: dict[int, Tensor]
    attn_acts: dict[int, Tensor]
    attn_error: dict[int, Tensor]

    def all(self) -> list[Tensor]:
        return [self.embed, *self.tc_acts.values(), *self.tc_error.values(), *self.attn_acts.values(), *self.attn_error.values()]


def _leaves(state: rep.PromptState, batch: int, attn_saes: Mapping[int, SAE]) -> _Leaves:
    def leaf(t: Tensor) -> Tensor:
        return t.unsqueeze(0).expand(batch, *t.shape).clone().requires_grad_(True)

    return _Leaves(
        embed=leaf(state.embed),
        tc_acts={L: leaf(a) for L, a in enumerate(state.tc_acts)},
        tc_error={L: leaf(e) for L, e in enumerate(state.tc_error)},
        attn_acts={L: leaf(state.attn_acts[L]) for L in attn_saes},
        attn_error={L: leaf(state.attn_error[L]) for L in attn_saes},
    )


class Replacement:
    """The frozen replacement model's forward on ``batch`` copies, kept for repeated backward passes."""

    def __init__(self, model, state, transcoders, attn_saes, batch: int, head_mask: Tensor | None = None):
        self.model, self.state, self.transcoders, self.attn_saes = model, state, transcoders, attn_saes
        self.batch = batch
        self.leaves = _leaves(state, batch, attn_saes)
        self.run = rep.run(
            model, state, transcoders, attn_saes, batch=batch, frozen=True, embed=self.leaves.embed,
            tc_acts=self.leaves.tc_acts, tc_error=self.leaves.tc_error,
            attn_acts=self.leaves.attn_acts, attn_error=self.leaves.attn_error, head_mask=head_mask,
        )

    def injection(self, rows: Sequence[tuple[int, int, int, int]], direction: Tensor) -> Tensor:
        """Σ_b target b's pre-activation in batch row b; ``rows`` holds (kind, layer, pos, feature)."""
        total = self.run.final.new_zeros(())
        groups: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        for b, (k, L, p, f) in enumerate(rows):
            if k not in (TARGET, TC, ATTN):
                raise ValueError(f"node kind {k} has no inputs")
            groups.setdefault((k, L), []).append((b, p, f))
        for (k, L), members in groups.items():
            b, p, f = (torch.tensor(x, device=self.run.final.device) for x in zip(*members))
            if k == TARGET:
                total = total + (self.run.final[b, p] @ direction).sum()
            elif k == TC:
                total = total + (self.run.tc_in[L][b, p] * self.transcoders[L].W_enc[:, f].T).sum()
            else:
                z = self.run.z_in[L][b, p].flatten(1)  # [rows, heads * d_head]
                total = total + (z * self.attn_saes[L].W_enc[:, f].T).sum()
        return total

    def gradients(self, rows, direction) -> list[Tensor]:
        with torch.enable_grad():
            return list(torch.autograd.grad(self.injection(rows, direction), self.leaves.all(), retain_graph=True, allow_unused=True))


def _edge_rows(rep_model: Replacement, grads: list[Tensor], nodes: Nodes, n_rows: int, state: rep.PromptState) -> Tensor:
    """[n_rows, N] edges from every node into each batch row's target."""
    leaves = rep_model.leaves
    out = torch.zeros(n_rows, len(nodes), dtype=torch.float64)
    names = (
        [("embed", None)]
        + [("tc", L) for L in leaves.tc_acts]
        + [("tc_err", L) for L in leaves.tc_error]
        + [("attn", L) for L in leaves.attn_acts]
        + [("attn_err", L) for L in leaves.attn_error]
    )
    kind_of = {"tc": TC, "attn": ATTN, "tc_err": MLP_ERROR, "attn_err": ATTN_ERROR}
    for (name, L), grad in zip(names, grads):
        if grad is None:
            continue
        grad = grad[:n_rows].double()
        dev = grad.device  # the model's: gathered there, only [rows, columns] comes to the CPU
        if name == "embed":
            cols = nodes.where(TOKEN)
            out[:, cols] = (grad * state.embed.double()).sum(-1)[:, torch.as_tensor(nodes.pos[cols], device=dev)].cpu()
        elif name in ("tc", "attn"):
            if name == "attn" and kind_of[name] not in set(nodes.kind.tolist()):
                continue
            cols = np.flatnonzero((nodes.kind == kind_of[name]) & (nodes.layer == L))
            p, f = torch.as_tensor(nodes.pos[cols], device=dev), torch.as_tensor(nodes.feature[cols], device=dev)
            acts = torch.as_tensor(nodes.activation[cols], device=dev)
            out[:, cols] = (grad[:, p, f] * acts).cpu()
        else:
            cols = np.flatnonzero((nodes.kind == kind_of[name]) & (nodes.layer == L))
            if len(cols) == 0:
                continue
            err = (state.tc_error[L] if name == "tc_err" else state.attn_error[L]).double()
            out[:, cols] = (grad * err).flatten(2).sum(-1)[:, torch.as_tensor(nodes.pos[cols], device=dev)].cpu()
    return out


def compute_rows(
    model: HookedTransformer,
    state: rep.PromptState,
    transcoders: Mapping[int, SAE],
    attn_saes: Mapping[int, SAE],
    nodes: Nodes,
    rows: Sequence[int],
    direction: Tensor,
    *,
    batch: int = 64,
    on_progress: Callable[[int, int], bool | None] | None = None,
    into: Tensor | None = None,
) -> Tensor:
    """[len(rows), N] float64: the edges into each node of ``rows`` (targets or features), ``batch`` per backward pass.

    ``into`` (an [N, N] adjacency): each batch's rows are written there instead (row ``rows[i]``,
    in its dtype) and ``into`` is returned, so a whole graph holds no second [rows, N] copy.
    """
    out = torch.zeros(0 if into is not None else len(rows), len(nodes), dtype=torch.float64)
    size = max(1, min(batch, len(rows)))
    with torch.inference_mode(False), torch.enable_grad():
        replacement = Replacement(model, state, transcoders, attn_saes, size)
        total = (len(rows) + size - 1) // size
        for step, start in enumerate(range(0, len(rows), size)):
            chunk = rows[start : start + size]
            specs = [(int(nodes.kind[i]), int(nodes.layer[i]), int(nodes.pos[i]), int(nodes.feature[i])) for i in chunk]
            grads = replacement.gradients(specs, direction)
            edges = _edge_rows(replacement, grads, nodes, len(chunk), state)
            if into is not None:
                into[torch.as_tensor(np.asarray(chunk, dtype=np.int64))] = edges.to(into.dtype)
            else:
                out[start : start + len(chunk)] = edges
            if on_progress is not None and on_progress(step + 1, total):
                raise ListerError("the graph was cancelled")
    return into if into is not None else out


def attribute_graph(
    model: HookedTransformer,
    tokens: Sequence[int],
    transcoders: Mapping[int, SAE],
    attn_saes: Mapping[int, SAE],
    target_positions: Sequence[int],
    *,
    blank_id: int,
    newline_id: int,
    batch: int = 64,
    max_memory: int | None = None,
    on_progress: Callable[[int, int], bool | None] | None = None,
    on_estimate: Callable[[int, int, int], None] | None = None,
) -> AttributionGraph:
    """The full attribution graph of the metric at ``target_positions`` (one target each).

    ``attn_saes`` empty: attention features off (attention is frozen, with no nodes), as in
    circuit-tracer. Positions after the last target are dropped (nothing there is upstream).
    ``on_progress(done, total)`` after each backward pass; returning True cancels (ListerError).
    ``on_estimate(n_nodes, bytes, backward_passes)`` once the nodes are known, before the passes.
    """
    import time

    started = time.perf_counter()
    if not target_positions:
        raise ListerError("no target position given; give at least one")
    last = max(target_positions)
    if not 0 <= min(target_positions) or last >= len(tokens):
        raise ListerError(f"target position {last if last >= len(tokens) else min(target_positions)} is outside the prompt; valid: 0..{len(tokens) - 1}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ListerError(f"batch must be an integer >= 1, got {batch!r}")
    ids = torch.tensor(list(tokens[: last + 1]))
    state = rep.prompt_state(model, ids, transcoders, attn_saes, blank_id=blank_id, newline_id=newline_id)
    nodes = build_nodes(state, bool(attn_saes), target_positions)
    widths = [tc.cfg.d_sae for tc in transcoders.values()] + [s.cfg.d_sae for s in attn_saes.values()]
    need = memory_estimate(len(nodes), last + 1, model, widths, batch)
    n_rows = int(np.isin(nodes.kind, (TC, ATTN, TARGET)).sum())
    if on_estimate is not None:
        on_estimate(len(nodes), need, (n_rows + batch - 1) // batch)
    if max_memory is not None and need > max_memory:
        raise ListerError(
            f"this graph has {len(nodes)} nodes and needs about {need / 2**30:.2f} GiB, over the {max_memory / 2**30:.2f} GiB allowed; "
            "raise --max-memory, pick an earlier --pos, or turn attention features off (--no-attention-features)"
        )
    direction, _ = rep.metric_direction(model, blank_id, newline_id)
    rows_all = np.flatnonzero(np.isin(nodes.kind, (TC, ATTN, TARGET)))
    # targets first (the order does not change the numbers)
    rows_all = np.concatenate([rows_all[nodes.kind[rows_all] == TARGET], rows_all[nodes.kind[rows_all] != TARGET]])
    adjacency = torch.zeros(len(nodes), len(nodes), dtype=torch.float32)
    compute_rows(model, state, transcoders, attn_saes, nodes, rows_all, direction, batch=batch, on_progress=on_progress, into=adjacency)
    weights = np.zeros(len(nodes))
    weights[nodes.where(TARGET)] = 1.0 / len(target_positions)
    return AttributionGraph(
        tokens=list(int(t) for t in ids), nodes=nodes, adjacency=adjacency, target_weights=weights,
        n_layers=model.cfg.n_layers, n_heads=model.cfg.n_heads, attention_features=bool(attn_saes),
        seconds=time.perf_counter() - started, extra={"state": state},
    )
