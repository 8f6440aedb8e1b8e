"""Node and edge effects on one sample, all chosen SAEs spliced with their error terms.

Method: Sparse Feature Circuits (Marks et al., 2024, arXiv 2403.19647), with the
zero ablation of the study as the patch (``a_patch = 0``).

**Nodes.** A node's indirect effect on the metric m (the paper's Eq. 2) is estimated by
attribution patching (Eq. 3), ``IE(a) ≈ ∇_a m · (a_patch − a)``; we report it with the
sign of the study's attribution, ``a · ∇_a m`` (positive: the node pushes towards ending
the list). With the error term kept, splicing an SAE does not change the forward pass,
so ``∇_{a_f} m = g · W_dec[f]`` with ``g`` the metric's gradient at the site's hook in the
plain model, and an error node's effect is ``ε · g`` (REFERENCE §4). These equal
:mod:`lister_tui.core.engine.attribution`'s results (tested). Integrated gradients
(Eq. 4) are an option for the feature nodes.

**Edges.** Between a node u of an upstream site and a node d of a site that reads it
(see :func:`graph.upstream_sites`), the paper's App. A.1 estimates the effect of u on m
through d alone as ``∇_d m · ∇_u d · (u_patch − u)``, where ``∇_u d`` is taken with the
intermediate sites' activations held fixed (stop-gradient). We report

    w(u → d) = u · ∂(∇_d m · d)/∂u      (∇_d m a constant; intermediate sites frozen)

so that the edges into the metric from the last site are that site's node effects. A
downstream node's "value" ``∇_d m · d`` is ``(g · W_dec[f]) a_f`` for a feature and
``g · ε`` for an error node.

**Edges with integrated gradients.** With ``method="ig"`` the feature nodes' effects are IG
(the site's features scaled along α·a, its error kept), and the edges use the same averaged
gradients, as Marks et al.'s code does: ``∇_d m`` of a downstream feature is the IG-averaged
``ḡ · W_dec[f]``, and an edge u → metric uses ``∂m/∂u`` averaged along u's own path (the
metric's other inputs frozen), so the edges into the metric from the last site are its IG
node effects (tested), not first-order ones beside IG nodes. Error nodes stay first-order
(the error is not on the path), in their effects and in their edges.

**Batching.** Every upstream site of a downstream site is replaced by a leaf holding its
clean value, which both freezes the paths through the other upstream sites and gives the
gradients we need. The input is replicated along the batch axis, one downstream node per
row, so one backward pass gives the edges of ``edge_batch`` downstream nodes (Marks et al.
run one backward per downstream node).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from lister_tui.core.engine.attribution import (
    activations_and_gradients,
    check_ig_steps,
    metric_at,
)
from lister_tui.core.engine.lazy import torch  # imported on first use
from lister_tui.core.engine.registry import SAESite
from lister_tui.core.errors import ListerError
from lister_tui.core.study.circuits.graph import (
    EMBED,
    EMBED_HOOK,
    METRIC,
    upstream_sites,
)

if TYPE_CHECKING:
    from torch import Tensor
    from sae_lens import SAE
    from transformer_lens import HookedTransformer

ERROR = -1  # the index that stands for a site's error node in (pos, index) pairs


@dataclass
class SiteState:
    """One site on one sample: activations, the metric's gradient, node effects."""

    site: SAESite
    sae: SAE
    x: Tensor  # [T, ...] the activation at the hook (hook_z keeps [T, heads, d_head])
    g: Tensor  # same shape: d metric / d x
    acts: Tensor  # [T, d_sae] feature activations
    feature_grad: Tensor  # [T, d_sae] d metric / d feature  (g · W_dec[f]; IG: averaged along the path)
    error: Tensor  # [T, d_in] the SAE error ε = x − x̂, flattened
    effect: Tensor  # [T, d_sae] node effects of the features
    error_effect: Tensor  # [T] node effects of the error nodes


@dataclass
class SampleState:
    """Everything the edges of one sample need, from one plain forward and backward pass."""

    tokens: Tensor  # [T] up to and including the target position
    target: int
    sites: dict[str, SiteState]
    embed_x: Tensor  # [T, d_model] the residual stream before block 0 (token + position embeddings)
    embed_g: Tensor  # [T, d_model]
    embed_effect: Tensor  # [T]
    metric: float
    method: str = "grad"  # "ig": feature effects and the edges' gradients averaged along the IG path
    ig_steps: int = 10


def has_linear_decoder(sae: SAE) -> bool:
    """True when ``sae.decode(a)`` is ``a @ W_dec + b_dec`` (reshaped for hook_z), whatever its encoder:
    circuits encode through the SAE's own ``encode`` and need only the decoder to be linear. SAELens's
    inference Standard, JumpReLU and TopK SAEs (BatchTopK loads as JumpReLU) without a run-time
    normaliser; TopK's optional decoder-norm rescaling is not linear in W_dec's rows and is refused."""
    from sae_lens import JumpReLUSAE, StandardSAE, TopKSAE  # imported late: sae-lens takes seconds to import

    return (
        type(sae) in (StandardSAE, JumpReLUSAE, TopKSAE)
        and sae.cfg.normalize_activations in ("none", "expected_average_only_in")
        and not getattr(sae.cfg, "rescale_acts_by_decoder_norm", False)
    )


def _flat(t: Tensor, site: SAESite) -> Tensor:
    return t.flatten(-2) if site.kind == "attn" else t


def sample_state(
    model: HookedTransformer,
    tokens: Sequence[int],
    target: int,
    sites: Sequence[SAESite],
    saes: dict[str, SAE],
    *,
    blank_id: int,
    newline_id: int,
    method: str = "grad",
    ig_steps: int = 10,
) -> SampleState:
    """Activations, gradients and node effects of every chosen site on ``tokens[: target + 1]``."""
    for site in sites:
        if not has_linear_decoder(saes[site.id]):
            raise ListerError(
                f"SAE {site.id} does not decode as a @ W_dec + b_dec; circuits need a linear decoder "
                "(Standard, JumpReLU or TopK SAEs without run-time normalisation or decoder-norm rescaling)"
            )
    if not 0 <= target < len(tokens):
        raise ListerError(f"target position {target} is out of range; valid: 0..{len(tokens) - 1}")
    run = torch.tensor([list(tokens[: target + 1])], device=model.cfg.device)
    hooks = [EMBED_HOOK, *(s.hook_name for s in sites)]
    xs, gs, metric = activations_and_gradients(model, run, [target], hooks, blank_id=blank_id, newline_id=newline_id)
    states = {}
    for site in sites:
        sae = saes[site.id]
        x = xs[site.hook_name][0].to(sae.dtype)
        g = gs[site.hook_name][0].to(sae.dtype)
        with torch.no_grad():
            acts = sae.encode(x)  # [T, d_sae]
            reconstruction = _flat(sae.decode(acts), site)
            feature_grad = _flat(g, site) @ sae.W_dec.T  # [T, d_sae]
            error = _flat(x, site) - reconstruction
            effect = acts * feature_grad
            error_effect = (error * _flat(g, site)).sum(-1)
        if method == "ig":
            # the gradient averaged along the path (this site's features at α·a, error kept), the
            # same numbers as attribute_integrated's; kept, so that the edges use it too
            path_g = _path_gradient(model, run, target, sae, x, acts, reconstruction, steps=ig_steps, **_ids(blank_id, newline_id))
            with torch.no_grad():
                feature_grad = _flat(path_g, site) @ sae.W_dec.T
                effect = acts * feature_grad
        states[site.id] = SiteState(site, sae, x, g, acts, feature_grad, error, effect, error_effect)
    embed_x, embed_g = xs[EMBED_HOOK][0], gs[EMBED_HOOK][0]
    return SampleState(
        tokens=run[0],
        target=target,
        sites=states,
        embed_x=embed_x,
        embed_g=embed_g,
        embed_effect=(embed_x * embed_g).sum(-1),
        metric=float(metric[0]),
        method=method,
        ig_steps=ig_steps,
    )


def _ids(blank_id: int, newline_id: int) -> dict:
    return {"blank_id": blank_id, "newline_id": newline_id}


def _path_gradient(
    model: HookedTransformer,
    run: Tensor,
    target: int,
    sae: SAE,
    x: Tensor,
    acts: Tensor,
    reconstruction: Tensor,
    *,
    steps: int,
    blank_id: int,
    newline_id: int,
    frozen: dict[str, Tensor] | None = None,
) -> Tensor:
    """d metric / d x at the site's hook, averaged over α at the midpoints of ``steps`` intervals,
    with the activation there replaced by x − x̂ + decode(α·a) (the error kept, the features scaled):
    integrated gradients' path. ``frozen`` holds other hooks at given values (edges' stop-gradient)."""
    check_ig_steps(steps)
    hook_name = sae.cfg.metadata.hook_name
    with torch.no_grad():
        if reconstruction is None:
            reconstruction = sae.decode(acts)
        error = x - reconstruction.reshape(x.shape)
    total = torch.zeros_like(x)
    with torch.inference_mode(False), torch.enable_grad():
        for step in range(steps):
            alpha = (step + 0.5) / steps
            point = (error + sae.decode(alpha * acts).reshape(x.shape)).detach().clone().requires_grad_(True)

            def splice(activation: Tensor, hook) -> Tensor:
                return point.to(activation.dtype).unsqueeze(0).expand_as(activation)

            hooks = [(h, _hold(v)) for h, v in (frozen or {}).items() if h != hook_name] + [(hook_name, splice)]
            with model.hooks(fwd_hooks=hooks):
                value = metric_at(model, run.clone(), [target], blank_id, newline_id)
            (grad,) = torch.autograd.grad(value.sum(), [point])
            total += grad.detach()
    return total / steps


def _hold(value: Tensor):
    def hook(activation: Tensor, hook) -> Tensor:
        return value.to(activation.dtype).unsqueeze(0).expand_as(activation).detach()

    return hook


def edge_weights(
    model: HookedTransformer,
    state: SampleState,
    target: str,
    rows: Sequence[tuple[int, int]],
    upstream: dict[str, Sequence[tuple[int, int]]],
    *,
    blank_id: int,
    newline_id: int,
    edge_batch: int = 64,
) -> dict[str, Tensor]:
    """w(u → d) for every downstream node d in ``rows`` of ``target`` (a site id or "metric")
    and every upstream node u listed in ``upstream`` (site id or "embed" -> (pos, index)).

    ``rows`` and the upstream lists hold (position, feature) pairs, with ``ERROR`` as the
    feature of an error node (and ``0`` for an embedding); the metric has the single row
    ``(target position, 0)``. Returns, per upstream site, a ``[len(rows), len(list)]``
    tensor. One backward pass per ``edge_batch`` rows. Every site that ``target`` reads from
    is held fixed, whether or not its nodes are asked for.
    """
    if target == METRIC:
        rows = [(state.target, 0)]
    feeds = upstream_sites([s.site for s in state.sites.values()])[target]
    extra = [u for u in upstream if u not in feeds]
    if extra:
        raise ListerError(f"{target} does not read from {', '.join(extra)} directly; it reads from {', '.join(feeds)}")
    out = {u: torch.zeros(len(rows), len(nodes)) for u, nodes in upstream.items()}
    if not rows or not any(upstream.values()):
        return out
    for start in range(0, len(rows), edge_batch):
        chunk = rows[start : start + edge_batch]
        grads = _upstream_gradients(model, state, target, chunk, feeds, blank_id, newline_id)
        for u, nodes in upstream.items():
            if nodes:
                path = None
                if state.method == "ig" and target == METRIC and u != EMBED:
                    path = _metric_path_gradient(model, state, u, feeds, blank_id, newline_id).unsqueeze(0)
                out[u][start : start + len(chunk)] = _weights_from_gradient(state, u, grads[u], nodes, path)
    return out


def _metric_path_gradient(model: HookedTransformer, state: SampleState, u: str, feeds: list[str], blank_id: int, newline_id: int) -> Tensor:
    """d metric / d (site u's activation) averaged along u's integrated-gradients path, the
    metric's other inputs held at their clean values: the edges u → metric then are u's IG node
    effects where u is the last site (Marks et al. set those edges to the node effects)."""
    up = state.sites[u]
    frozen = {(EMBED_HOOK if f == EMBED else state.sites[f].site.hook_name): (state.embed_x if f == EMBED else state.sites[f].x) for f in feeds if f != u}
    path_g = _path_gradient(
        model, state.tokens.unsqueeze(0), state.target, up.sae, up.x, up.acts, None,
        steps=state.ig_steps, blank_id=blank_id, newline_id=newline_id, frozen=frozen,
    )
    return _flat(path_g, up.site)  # [T, d_in]


def _upstream_gradients(
    model: HookedTransformer,
    state: SampleState,
    target: str,
    rows: Sequence[tuple[int, int]],
    upstream: list[str],
    blank_id: int,
    newline_id: int,
) -> dict[str, Tensor]:
    """d s_r / d (upstream activation) for each row r, as [R, T, d] per upstream site, where
    s_r is downstream node r's value ∇_d m · d, with the upstream sites as frozen leaves."""
    n_rows = len(rows)
    tokens = state.tokens.unsqueeze(0).expand(n_rows, -1)
    leaves: dict[str, Tensor] = {}

    def hook_of(u: str) -> str:
        return EMBED_HOOK if u == EMBED else state.sites[u].site.hook_name

    def clean(u: str) -> Tensor:
        return state.embed_x if u == EMBED else state.sites[u].x

    def make_leaf(u: str):
        def hook(activation: Tensor, hook) -> Tensor:
            # the clean value, cut from everything before it: paths through the other
            # upstream sites stop at their own leaves (stop-gradient)
            leaf = clean(u).to(activation.dtype).unsqueeze(0).expand(n_rows, *clean(u).shape).clone()
            leaves[u] = leaf.requires_grad_(True)
            return leaves[u]

        return hook

    captured: dict[str, Tensor] = {}

    def capture(activation: Tensor, hook) -> Tensor:
        captured["y"] = activation
        return activation

    fwd_hooks = [(hook_of(u), make_leaf(u)) for u in upstream]
    with torch.inference_mode(False), torch.enable_grad():
        if target == METRIC:
            with model.hooks(fwd_hooks=fwd_hooks):
                values = metric_at(model, tokens.clone(), [state.target] * n_rows, blank_id, newline_id)
        else:
            down = state.sites[target]
            fwd_hooks.append((down.site.hook_name, capture))
            with model.hooks(fwd_hooks=fwd_hooks):
                model(tokens.clone(), stop_at_layer=down.site.layer + 1, attention_mask=torch.ones_like(tokens))
            values = _downstream_values(down, captured["y"], rows)
        grads = torch.autograd.grad(values.sum(), [leaves[u] for u in upstream], allow_unused=True)
    out = {}
    for u, grad in zip(upstream, grads):
        grad = torch.zeros_like(leaves[u]) if grad is None else grad.detach()
        out[u] = grad if u == EMBED else _flat(grad, state.sites[u].site)  # [R, T, d_in]
    return out


def _downstream_values(down: SiteState, y: Tensor, rows: Sequence[tuple[int, int]]) -> Tensor:
    """∇_d m · d for each row's downstream node, from the captured activation y [R, T, ...]."""
    pos = torch.tensor([p for p, _ in rows], device=y.device)
    feature = torch.tensor([max(f, 0) for _, f in rows], device=y.device)
    is_error = torch.tensor([f == ERROR for _, f in rows], device=y.device)
    picked = y[torch.arange(len(rows), device=y.device), pos]  # [R, d_in] or [R, heads, d_head]
    sae = down.sae
    acts = sae.encode(picked.to(sae.dtype))  # [R, d_sae]
    reconstruction = sae.decode(acts)  # decode right after encode (stateful reshapes)
    feature_values = acts.gather(1, feature.unsqueeze(1)).squeeze(1) * down.feature_grad[pos, feature]
    error = _flat(picked.to(sae.dtype) - reconstruction, down.site)
    error_values = (error * _flat(down.g, down.site)[pos]).sum(-1)
    return torch.where(is_error, error_values, feature_values)


def _weights_from_gradient(
    state: SampleState, u: str, grad: Tensor, nodes: Sequence[tuple[int, int]], path: Tensor | None = None
) -> Tensor:
    """u · ∂s/∂u for the listed upstream nodes, from the gradient at u's site [R, T, d_in].
    With ``path`` (the gradient averaged along the IG path, [1 or R, T, d_in]) the feature
    nodes use it; error nodes, whose node effect is first-order, keep ``grad``."""
    pos = torch.tensor([p for p, _ in nodes], device=grad.device)
    at = grad[:, pos]  # [R, K, d_in]
    if u == EMBED:
        return (at * state.embed_x[pos].to(at.dtype)).sum(-1).float().cpu()
    up = state.sites[u]
    feature = torch.tensor([max(f, 0) for _, f in nodes], device=grad.device)
    is_error = torch.tensor([f == ERROR for _, f in nodes], device=grad.device)
    if path is not None:
        at = torch.where(is_error.view(1, -1, 1), at, path[:, pos].to(at.dtype))
    directions = torch.where(is_error.unsqueeze(1), up.error[pos], up.sae.W_dec[feature] * up.acts[pos, feature].unsqueeze(1))
    return (at * directions.to(at.dtype)).sum(-1).float().cpu()
