"""Zero-ablation of SAE features as plain forward hooks, cheap enough for generation.

With the error term kept, splicing an SAE and zeroing features S at a position
replaces the activation x by ``x − Σ_{f∈S} a_f W_dec[f]`` (REFERENCE §4), where a_f
is feature f's activation on x. Only the encoder columns of S are needed to get
a_f, so each hook does one small [d_in, |S|] matmul on the unspliced model instead
of running whole SAEs. The result equals splicing the SAE (``use_error_term=True``)
and zeroing ``hook_sae_acts_post`` up to float rounding.

The hooks track absolute positions: in KV-cached generation a hook sees the whole
prefix first, then one new position per forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from lister_tui.core.engine.attribution import has_plain_decoder
from lister_tui.core.engine.lazy import torch  # imported on first use
from lister_tui.core.errors import ListerError

if TYPE_CHECKING:
    from sae_lens import SAE
    from torch import Tensor

EVERY_POSITION: Literal["every"] = "every"

ForwardHook = tuple[str, Callable]



@dataclass(frozen=True)
class FeatureSlice:
    """Features ``ids`` of a Standard or JumpReLU SAE: their encoder columns and decoder rows, so
    that a hook encodes and decodes only those. :meth:`encode` mirrors sae-lens's
    ``StandardSAE.encode`` / ``JumpReLUSAE.encode`` exactly (ablation and interventions share it)."""

    W_enc: Tensor  # [d_in, n]
    b_enc: Tensor  # [n]
    W_dec: Tensor  # [n, d_in]
    input_bias: Tensor  # [d_in]
    threshold: Tensor | None  # [n], JumpReLU only

    @classmethod
    def of(cls, sae: SAE, ids: Tensor) -> FeatureSlice:
        from sae_lens import JumpReLUSAE  # imported late: sae-lens takes seconds to import

        with torch.no_grad():
            return cls(
                W_enc=sae.W_enc[:, ids].detach().contiguous(),
                b_enc=sae.b_enc[ids].detach(),
                W_dec=sae.W_dec[ids].detach().contiguous(),
                input_bias=(sae.b_dec * sae.cfg.apply_b_dec_to_input).detach(),
                threshold=sae.threshold[ids].detach() if isinstance(sae, JumpReLUSAE) else None,
            )

    def encode(self, x: Tensor) -> Tensor:  # [..., d_in] -> [..., n]
        pre = (x.to(self.W_enc.device, self.W_enc.dtype) - self.input_bias) @ self.W_enc + self.b_enc
        acts = torch.relu(pre)  # both architectures use ReLU as the base activation
        if self.threshold is not None:  # sae-lens JumpReLUSAE.encode: relu(pre) * (pre > threshold)
            acts = acts * (pre > self.threshold).to(acts.dtype)
        return acts

@dataclass(frozen=True)
class FeatureAblation:
    """Zero one SAE feature at some positions."""

    sae_id: str
    feature: int
    # Absolute positions in the sequence (prefix positions), or "every": every
    # position, generated ones included.
    positions: tuple[int, ...] | Literal["every"]


@dataclass(frozen=True)
class Ablation:
    """A set of feature ablations applied together; empty means the plain model."""

    features: tuple[FeatureAblation, ...] = ()

    def is_empty(self) -> bool:
        return len(self.features) == 0


def validate(ablation: Ablation, saes: Mapping[str, SAE], seq_len: int | None) -> None:
    """Raise ListerError naming the first bad SAE id, feature or position.

    With ``seq_len`` given, explicit positions must lie in ``0..seq_len-1``.
    """
    for item in ablation.features:
        if item.sae_id not in saes:
            valid = ", ".join(sorted(saes)) or "none loaded"
            raise ListerError(f"unknown SAE {item.sae_id!r} in ablation; valid: {valid}")
        d_sae = saes[item.sae_id].cfg.d_sae
        if isinstance(item.feature, bool) or not isinstance(item.feature, int) or not 0 <= item.feature < d_sae:
            raise ListerError(
                f"feature {item.feature!r} of SAE {item.sae_id!r} is out of range; valid: 0..{d_sae - 1}"
            )
        if isinstance(item.positions, str):
            if item.positions != EVERY_POSITION:
                raise ListerError(
                    f"positions {item.positions!r} for feature {item.feature} of {item.sae_id!r} are not valid; "
                    f"give a tuple of positions or {EVERY_POSITION!r}"
                )
            continue
        if len(item.positions) == 0:
            raise ListerError(
                f"feature {item.feature} of {item.sae_id!r} has no positions; "
                f"give at least one position or {EVERY_POSITION!r}"
            )
        upper = "" if seq_len is None else f"..{seq_len - 1}"
        for pos in item.positions:
            if isinstance(pos, bool) or not isinstance(pos, int) or pos < 0 or (seq_len is not None and pos >= seq_len):
                raise ListerError(
                    f"position {pos!r} for feature {item.feature} of {item.sae_id!r} is out of range; "
                    f"valid: 0{upper}"
                )


def ablation_hooks(ablation: Ablation, saes: Mapping[str, SAE], prefix_len: int, *, count: bool = False) -> list[ForwardHook]:
    """Fresh forward hooks for one generation (or one forward pass) from position 0.

    Explicit positions must lie in the prefix (``< prefix_len``). The hooks keep a
    position counter, so make new ones for every generation batch (e.g. pass
    ``lambda n: ablation_hooks(ablation, saes, n)`` as ``generate``'s hook_factory).
    An empty ablation gives no hooks. With ``count``, the hooks also count the
    activations they zeroed (non-zero before, per feature and position):
    :func:`zeroed_activations` reads the total after the pass.
    """
    validate(ablation, saes, prefix_len)
    # hook name -> sae id -> feature -> positions ("every" absorbs explicit positions)
    plan: dict[str, dict[str, dict[int, set[int] | Literal["every"]]]] = {}
    for item in ablation.features:
        hook_name = saes[item.sae_id].cfg.metadata.hook_name
        features = plan.setdefault(hook_name, {}).setdefault(item.sae_id, {})
        previous = features.get(item.feature, set())
        if item.positions == EVERY_POSITION or previous == EVERY_POSITION:
            features[item.feature] = EVERY_POSITION
        else:
            features[item.feature] = set(previous) | set(item.positions)
    hooks: list[ForwardHook] = []
    for hook_name, by_sae in plan.items():
        groups = [_FeatureGroup(saes[sae_id], features, prefix_len) for sae_id, features in by_sae.items()]
        hooks.append((hook_name, _PositionTrackingAblation(groups, count)))
    return hooks


def zeroed_activations(hooks: list[ForwardHook]) -> int:
    """How many non-zero feature activations hooks made with ``count=True`` zeroed (summed over
    batch, positions and features). 0 means the ablation changed nothing: every chosen feature
    was already 0 wherever it was ablated."""
    total = 0
    for _, hook in hooks:
        if isinstance(hook, _PositionTrackingAblation) and hook.zeroed is not None:
            total += int(hook.zeroed)  # one read-back per pass, after it
    return total


class _FeatureGroup:
    """The features of one SAE ablated at one hook, with their encoder slices."""

    def __init__(self, sae: SAE, features: dict[int, set[int] | Literal["every"]], prefix_len: int):
        self.sae = sae
        self.is_hook_z = sae.cfg.reshape_activations == "hook_z"
        ids = sorted(features)
        self.feature_ids = torch.tensor(ids, dtype=torch.long, device=sae.device)  # [n_S]
        self.every = torch.tensor([features[f] == EVERY_POSITION for f in ids], device=sae.device)  # [n_S]
        # [prefix_len, n_S]: True where feature j is ablated at prefix position p
        self.prefix_mask = torch.zeros(prefix_len, len(ids), dtype=torch.bool, device=sae.device)
        for j, f in enumerate(ids):
            if features[f] != EVERY_POSITION:
                self.prefix_mask[sorted(features[f]), j] = True
        self.has_every = any(features[f] == EVERY_POSITION for f in ids)
        self.every_row = self.every.unsqueeze(0)  # [1, n_S]: the mask of one generated position
        # The per-feature encoder below mirrors StandardSAE/JumpReLUSAE.encode exactly;
        # anything else is ablated through the SAE's own encode/decode.
        self.fast = has_plain_decoder(sae)
        if self.fast:
            self.slice = FeatureSlice.of(sae, self.feature_ids)

    def mask(self, start: int, n: int) -> Tensor | None:  # [n, n_S], or None when nothing is ablated
        """Which features are ablated at absolute positions start..start+n-1.

        Past the prefix only "every position" features apply, a mask that never
        changes: it is built once, and no per-step test reads a device tensor back
        (on a GPU that would synchronise every decoding step).
        """
        if start >= self.prefix_mask.shape[0]:
            return self.every_row if self.has_every else None
        explicit = torch.zeros(n, len(self.every), dtype=torch.bool, device=self.every.device)
        overlap = max(0, min(start + n, self.prefix_mask.shape[0]) - start)
        if overlap:
            explicit[:overlap] = self.prefix_mask[start : start + overlap]
        mask = explicit | self.every
        return mask if bool(mask.any()) else None

    def delta(self, activation: Tensor, mask: Tensor, counts: list[Tensor] | None = None) -> Tensor:
        """What zeroing the masked features removes from ``activation`` (same shape); with
        ``counts``, appends how many non-zero activations that zeroes (a device tensor: no sync)."""
        if not self.fast:
            return self._delta_through_sae(activation, mask, counts)
        x = activation.flatten(-2) if self.is_hook_z else activation  # [batch, n, d_in]
        zeroed = self.slice.encode(x) * mask  # [batch, n, n_S]
        if counts is not None:
            counts.append((zeroed != 0).sum())
        removed = zeroed @ self.slice.W_dec  # [batch, n, d_in]
        return removed.reshape(activation.shape)

    def _delta_through_sae(self, activation: Tensor, mask: Tensor, counts: list[Tensor] | None = None) -> Tensor:
        """Any architecture: decode(a) − decode(a with S zeroed), as a splice would do.

        encode runs before each decode because stateful normalisers keep the input's
        statistics between the two calls.
        """
        sae = self.sae
        x = activation.to(sae.device, sae.dtype)
        full = sae.decode(sae.encode(x))
        acts = sae.encode(x)  # [batch, n, d_sae]
        keep = torch.ones(acts.shape[-2:], dtype=acts.dtype, device=acts.device)  # [n, d_sae]
        keep[:, self.feature_ids] = (~mask).to(acts.dtype)
        if counts is not None:
            counts.append(((acts[..., self.feature_ids] * mask) != 0).sum())
        return full - sae.decode(acts * keep)


class _PositionTrackingAblation:
    """A forward hook for one hook point that knows which absolute positions it sees."""

    def __init__(self, groups: list[_FeatureGroup], count: bool = False):
        self.groups = groups
        self.offset = 0  # absolute position of the next call's first position
        self.count = count
        self.zeroed: Tensor | None = None  # with count: non-zero activations zeroed so far

    def __call__(self, activation: Tensor, hook) -> Tensor:
        # activation: [batch, n, d] or hook_z [batch, n, n_heads, d_head]
        n = activation.shape[1]
        start, self.offset = self.offset, self.offset + n
        total: Tensor | None = None
        for group in self.groups:
            mask = group.mask(start, n)
            if mask is None:
                continue  # e.g. new tokens when only prefix positions are ablated
            counts: list[Tensor] | None = [] if self.count else None
            delta = group.delta(activation, mask, counts)
            if counts:
                self.zeroed = counts[0] if self.zeroed is None else self.zeroed + counts[0]
            total = delta if total is None else total + delta
        if total is None:
            return activation
        return activation - total.to(activation.device, activation.dtype)
