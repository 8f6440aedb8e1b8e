"""Interventions on SAE features: zero, scale, clamp and steer, as cheap forward hooks.

One definition for the explorer, the API, sweeps and exports. With the error term
kept, setting feature f's activation from a_f to a'_f at a position replaces the
activation x by ``x + (a'_f − a_f) W_dec[f]`` (REFERENCE §4). Every kind is a linear
map of a_f, ``a'_f = m·a_f + b``:

========  ==================  =====  =====
kind      a'_f                m      b
========  ==================  =====  =====
zero      0                   0      0
scale k   k·a_f               k      0
clamp v   v                   0      v
steer c   a_f + c             1      c      (adds c·W_dec[f] wherever it applies)
========  ==================  =====  =====

so zero, scale 0 and clamp 0 run the same arithmetic (token-identical), and steer 0
adds nothing. A clamp may be relative (``relative=True``): its value is k × the
feature's maximum activation from its card, resolved with :func:`resolve_relative`
before any hook is built.

Transcoder features (sites ``tc_L``) work the same way in the real model: the
transcoder reads its input hook (``blocks.L.ln2.hook_normalized``), the feature's
activation is encoded there, and ``(a'_f − a_f) W_dec[f]`` is added at its output hook
(``blocks.L.hook_mlp_out``); the MLP itself runs untouched and the transcoder's error
is kept (as :func:`lister_tui.core.study.graphs.checks.measured` does for one forward).

Positions: one absolute token index, ``"all"`` (every position, generated ones
included), ``"prompt"`` (positions before the prompt's end) or ``"generated"`` (from
the prompt's end on, the regenerated prefix's list tokens included). Like
:mod:`ablation`, the hooks track absolute positions through KV-cached generation.

Long because the kinds, their checks and the hooks for SAEs and transcoders are one
definition: every caller (explorer, API, sweeps, experiments) validates and runs the same code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from lister_tui.core.engine.ablation import EVERY_POSITION, Ablation, FeatureSlice
from lister_tui.core.engine.attribution import has_plain_decoder
from lister_tui.core.engine.lazy import torch  # imported on first use (sessions are read without it)
from lister_tui.core.errors import ListerError

if TYPE_CHECKING:
    from sae_lens import SAE
    from torch import Tensor

    from lister_tui.core.engine.registry import ModelEntry

KINDS: tuple[str, ...] = ("zero", "scale", "clamp", "steer")
POSITION_WORDS: tuple[str, ...] = ("all", "prompt", "generated")
# |value| above this is refused: no feature of a model this tool loads is meaningfully
# scaled, clamped or steered by more (lister-tiny's largest activations are below 50).
MAX_ABS_VALUE = 10_000.0

ForwardHook = tuple[str, Callable]


@dataclass(frozen=True)
class Intervention:
    """One feature changed at some positions."""

    sae_id: str
    feature: int
    kind: str = "zero"
    value: float = 0.0  # k for scale, the value for clamp (k × max activation if relative), c for steer
    position: int | str = "all"  # an absolute token index, or one of POSITION_WORDS
    relative: bool = False  # clamp only: value is k × the feature's maximum activation (its card)

    def coefficients(self) -> tuple[float, float]:
        """(m, b) of a' = m·a + b; a relative clamp must be resolved first."""
        if self.kind == "zero":
            return 0.0, 0.0
        if self.kind == "scale":
            return float(self.value), 0.0
        if self.kind == "clamp":
            if self.relative:
                raise ListerError(
                    f"the clamp of feature {self.feature} of {self.sae_id!r} is relative to its maximum activation; "
                    "resolve it with resolve_relative (the feature's card) first"
                )
            return 0.0, float(self.value)
        if self.kind == "steer":
            return 1.0, float(self.value)
        raise ListerError(f"unknown intervention kind {self.kind!r}; valid: {', '.join(KINDS)}")

    def describe(self) -> str:
        """Short text such as ``res_0#382 scale×2 @all`` (literal characters only)."""
        where = f"@{self.position}"
        if self.kind == "zero":
            what = "zero"
        elif self.kind == "scale":
            what = f"scale×{self.value:g}"
        elif self.kind == "clamp":
            what = f"clamp={self.value:g}×max" if self.relative else f"clamp={self.value:g}"
        else:
            what = f"steer{self.value:+g}"
        return f"{self.sae_id}#{self.feature} {what} {where}"

    def to_dict(self) -> dict:
        out = {"site": self.sae_id, "feature": self.feature, "kind": self.kind, "value": self.value, "position": self.position}
        if self.relative:
            out["relative"] = True
        return out


@dataclass(frozen=True)
class InterventionSet:
    """Interventions applied together; empty means the plain model."""

    interventions: tuple[Intervention, ...] = ()
    name: str = ""

    def is_empty(self) -> bool:
        return len(self.interventions) == 0

    def sae_ids(self) -> list[str]:
        return list(dict.fromkeys(i.sae_id for i in self.interventions))

    def describe(self) -> str:
        return "; ".join(i.describe() for i in self.interventions) or "none"

    def to_dict(self) -> dict:
        return {"name": self.name, "interventions": [i.to_dict() for i in self.interventions]}


def from_ablation(ablation: Ablation, name: str = "") -> InterventionSet:
    """A zero-ablation as an intervention set (one intervention per feature and position)."""
    out = []
    for item in ablation.features:
        if item.positions == EVERY_POSITION:
            out.append(Intervention(item.sae_id, item.feature, "zero", 0.0, "all"))
        else:
            out += [Intervention(item.sae_id, item.feature, "zero", 0.0, int(p)) for p in item.positions]
    return InterventionSet(tuple(out), name)


def check_value(kind: str, value: object, where: str) -> float:
    """``value`` as a float if it is finite and not absurd for ``kind``; else ListerError naming ``where``."""
    if kind not in KINDS:
        raise ListerError(f"{where}: unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ListerError(f"{where}: value must be a number, got {value!r:.60}")
    v = float(value)
    if not math.isfinite(v) or abs(v) > MAX_ABS_VALUE:
        raise ListerError(f"{where}: value {value!r:.60} is not valid; give a finite number in [-{MAX_ABS_VALUE:g}, {MAX_ABS_VALUE:g}]")
    return v


def check_position(position: object, where: str, seq_len: int | None = None) -> int | str:
    """``position`` if it is a word of POSITION_WORDS or a token index (below ``seq_len`` when given)."""
    if isinstance(position, str):
        if position in POSITION_WORDS:
            return position
        if position.strip().isdigit():
            position = int(position.strip())
        else:
            raise ListerError(f"{where}: unknown position {position!r:.60}; valid: {', '.join(POSITION_WORDS)} or a token index")
    if isinstance(position, bool) or not isinstance(position, int) or position < 0 or (seq_len is not None and position >= seq_len):
        upper = "" if seq_len is None else f"..{seq_len - 1}"
        raise ListerError(f"{where}: position {position!r:.60} is out of range; valid: {', '.join(POSITION_WORDS)} or a token index 0{upper}")
    return position


def validate(interventions: InterventionSet, d_saes: Mapping[str, int], seq_len: int | None = None) -> None:
    """Raise ListerError naming the first bad site, feature, kind, value or position.

    ``d_saes`` maps each known SAE id to its width (no weights needed). With ``seq_len``,
    a token-index position must lie in ``0..seq_len-1``.
    """
    for n, item in enumerate(interventions.interventions):
        where = f"intervention {n + 1} ({item.sae_id}#{item.feature})"
        if item.sae_id not in d_saes:
            raise ListerError(f"{where}: unknown site {item.sae_id!r}; valid: {', '.join(sorted(d_saes)) or 'none'}")
        d_sae = d_saes[item.sae_id]
        if isinstance(item.feature, bool) or not isinstance(item.feature, int) or not 0 <= item.feature < d_sae:
            raise ListerError(f"{where}: feature {item.feature!r} is out of range; valid: 0..{d_sae - 1}")
        check_value(item.kind, item.value, where)
        if item.relative and item.kind != "clamp":
            raise ListerError(f"{where}: only a clamp can be relative to the maximum activation, not {item.kind!r}")
        check_position(item.position, where, seq_len)


def resolve_relative(interventions: InterventionSet, max_activation: Callable[[str, int], float]) -> InterventionSet:
    """Relative clamps made absolute: value × ``max_activation(sae_id, feature)`` (e.g. its card's)."""
    out = []
    for item in interventions.interventions:
        if item.kind == "clamp" and item.relative:
            peak = float(max_activation(item.sae_id, item.feature))
            item = replace(item, value=item.value * peak, relative=False)
        out.append(item)
    return replace(interventions, interventions=tuple(out))


def intervention_sites(entry: ModelEntry) -> list[str]:
    """Every site an intervention may name: the entry's SAE sites, then its transcoders' ``tc_L``."""
    from lister_tui.core.engine.entries import transcoder_site_id

    tc = [transcoder_site_id(layer) for tset in entry.transcoders for layer in tset.layers]
    return [s.id for s in entry.sites] + list(dict.fromkeys(t for t in tc if t not in {s.id for s in entry.sites}))


def site_width(entry: ModelEntry, site_id: str) -> int | None:
    """The SAE's (or transcoder's, ``tc_L``) d_sae from its cfg.json when its weights are a local or
    shipped folder (None: unknown)."""
    import json
    from pathlib import Path

    site = entry.site(site_id)
    if site.release is not None:
        return None
    if site.path is not None:
        folder = Path(site.path)
    else:
        from lister_tui.organism import paths

        if entry.weights_dir is None:
            return None
        folder = Path(entry.weights_dir) / paths.SAES_SUBDIR / site.id
    try:
        d_sae = json.loads((folder / "cfg.json").read_text(encoding="utf-8")).get("d_sae")
    except (OSError, ValueError):
        return None
    return d_sae if isinstance(d_sae, int) and d_sae > 0 else None


def intervention_hooks(interventions: InterventionSet, saes: Mapping[str, SAE], prompt_len: int) -> list[ForwardHook]:
    """Fresh forward hooks for one generation (or one forward pass) from position 0.

    ``prompt_len`` splits "prompt" from "generated" positions; every row of the batch
    must share it. The hooks keep a position counter, so make new ones for every
    generation batch. An empty set gives no hooks.
    """
    validate(interventions, {k: s.cfg.d_sae for k, s in saes.items()})
    by_hook: dict[str, dict[str, list[Intervention]]] = {}
    by_transcoder: dict[str, list[Intervention]] = {}
    for item in interventions.interventions:
        if is_transcoder(saes[item.sae_id]):
            by_transcoder.setdefault(item.sae_id, []).append(item)
            continue
        hook_name = saes[item.sae_id].cfg.metadata.hook_name
        by_hook.setdefault(hook_name, {}).setdefault(item.sae_id, []).append(item)
    hooks: list[ForwardHook] = [
        (hook_name, _PositionTracking([_Columns(saes[sae_id], items, prompt_len) for sae_id, items in by_sae.items()]))
        for hook_name, by_sae in by_hook.items()
    ]
    for sae_id, items in by_transcoder.items():
        hooks += _TranscoderHooks(_TranscoderColumns(saes[sae_id], items, prompt_len)).hooks()
    return hooks


def is_transcoder(sae: SAE) -> bool:
    """Whether ``sae`` reads one hook and writes another (a transcoder: ``hook_name_out`` set)."""
    out = getattr(sae.cfg.metadata, "hook_name_out", None)
    return out is not None and out != sae.cfg.metadata.hook_name


class _Columns:
    """One SAE's interventions at one hook: one column per intervention (a feature may repeat)."""

    def _columns(self, sae: SAE, items: Sequence[Intervention], prompt_len: int, *, is_hook_z: bool) -> None:
        """The features, their coefficients and the steady mask (shared by SAEs and transcoders)."""
        self.sae = sae
        self.items = list(items)
        self.prompt_len = prompt_len
        self.is_hook_z = is_hook_z
        device = sae.device
        self.feature_ids = torch.tensor([i.feature for i in items], dtype=torch.long, device=device)  # [J]
        coef = [i.coefficients() for i in items]
        self.m_minus_1 = torch.tensor([m - 1.0 for m, _ in coef], dtype=sae.dtype, device=device)  # [J]
        self.b = torch.tensor([b for _, b in coef], dtype=sae.dtype, device=device)  # [J]
        explicit = [i.position for i in items if isinstance(i.position, int)]
        # past this position the mask never changes: built once, no per-step work
        self.steady_from = max([prompt_len] + [p + 1 for p in explicit])
        self.steady = self._mask_rows(self.steady_from, 1)
        self.steady_any = bool(self.steady.any())

    def __init__(self, sae: SAE, items: Sequence[Intervention], prompt_len: int):
        self._columns(sae, items, prompt_len, is_hook_z=sae.cfg.reshape_activations == "hook_z")
        self.fast = has_plain_decoder(sae)
        if self.fast:
            self.slice = FeatureSlice.of(sae, self.feature_ids)

    def _mask_rows(self, start: int, n: int) -> Tensor:  # [n, J] bool, on the SAE's device
        pos = torch.arange(start, start + n).unsqueeze(1)  # [n, 1]
        cols = []
        for item in self.items:
            p = item.position
            if p == "all":
                cols.append(torch.ones(n, dtype=torch.bool))
            elif p == "prompt":
                cols.append(pos[:, 0] < self.prompt_len)
            elif p == "generated":
                cols.append(pos[:, 0] >= self.prompt_len)
            else:
                cols.append(pos[:, 0] == int(p))
        return torch.stack(cols, dim=1).to(self.sae.device)

    def mask(self, start: int, n: int) -> Tensor | None:
        if start >= self.steady_from:
            return self.steady if self.steady_any else None
        mask = self._mask_rows(start, n)
        return mask if bool(mask.any()) else None  # a CPU-built mask: no device read-back

    def delta(self, activation: Tensor, mask: Tensor) -> Tensor:
        """What the interventions add to ``activation`` (same shape)."""
        if not self.fast:  # the SAE reshapes hook_z itself
            return self._delta_through_sae(activation, mask).reshape(activation.shape)
        x = activation.flatten(-2) if self.is_hook_z else activation  # [batch, n, d_in]
        acts = self.slice.encode(x)  # [batch, n, J]
        change = (acts * self.m_minus_1 + self.b) * mask  # [batch, n, J]: a' − a where applied
        return (change @ self.slice.W_dec).reshape(activation.shape)

    def _delta_through_sae(self, x: Tensor, mask: Tensor) -> Tensor:
        """Any architecture: decode(a') − decode(a), encoding before each decode (stateful normalisers)."""
        sae = self.sae
        x = x.to(sae.device, sae.dtype)
        full = sae.decode(sae.encode(x))
        acts = sae.encode(x)  # [batch, n, d_sae]
        new = acts.clone()
        for j, f in enumerate(self.feature_ids.tolist()):
            target = new[..., f] + (acts[..., f] * self.m_minus_1[j] + self.b[j])
            new[..., f] = torch.where(mask[:, j], target, new[..., f])
        return sae.decode(new) - full


class _PositionTracking:
    """A forward hook for one hook point that knows which absolute positions it sees."""

    def __init__(self, groups: list[_Columns]):
        self.groups = groups
        self.offset = 0

    def __call__(self, activation: Tensor, hook) -> Tensor:
        n = activation.shape[1]
        start, self.offset = self.offset, self.offset + n
        total: Tensor | None = None
        for group in self.groups:
            mask = group.mask(start, n)
            if mask is None:
                continue
            delta = group.delta(activation, mask)
            total = delta if total is None else total + delta
        if total is None:
            return activation
        return activation + total.to(activation.device, activation.dtype)


class _TranscoderColumns(_Columns):
    """One transcoder's interventions: activations encoded from its input, decoder rows written to its output."""

    def __init__(self, sae: SAE, items: Sequence[Intervention], prompt_len: int):
        self._columns(sae, items, prompt_len, is_hook_z=False)
        with torch.no_grad():
            self.W_dec = sae.W_dec[self.feature_ids].detach().contiguous()  # [J, d_out]
        self.fast = _plain_transcoder(sae)
        if self.fast:  # sae-lens Transcoder.encode: no input bias subtracted, ReLU, JumpReLU's threshold
            with torch.no_grad():
                threshold = getattr(sae, "threshold", None)
                self.slice = FeatureSlice(
                    W_enc=sae.W_enc[:, self.feature_ids].detach().contiguous(),
                    b_enc=sae.b_enc[self.feature_ids].detach(),
                    W_dec=self.W_dec,
                    input_bias=torch.zeros(sae.cfg.d_in, dtype=sae.dtype, device=sae.device),
                    threshold=None if threshold is None else threshold[self.feature_ids].detach(),
                )

    def delta(self, activation: Tensor, mask: Tensor) -> Tensor:
        """What the interventions add to the transcoder's output hook, from its input ``activation``."""
        if self.fast:
            acts = self.slice.encode(activation)  # [batch, n, J]
        else:  # any transcoder: its own encode, the chosen columns
            acts = self.sae.encode(activation.to(self.sae.device, self.sae.dtype))[..., self.feature_ids]
        change = (acts * self.m_minus_1 + self.b) * mask  # [batch, n, J]
        return change @ self.W_dec  # [batch, n, d_out]


def _plain_transcoder(sae: SAE) -> bool:
    """True when ``sae.encode`` is exactly ``relu(x W_enc + b_enc)`` (masked by a JumpReLU threshold)."""
    from sae_lens.saes.transcoder import JumpReLUSkipTranscoder, JumpReLUTranscoder, SkipTranscoder, Transcoder

    return type(sae) in (Transcoder, SkipTranscoder, JumpReLUTranscoder, JumpReLUSkipTranscoder) and sae.cfg.normalize_activations in (
        "none",
        "expected_average_only_in",
    )


class _TranscoderHooks:
    """A pair of hooks for one transcoder: its input hook computes the change, its output hook adds it.

    Within one forward pass the MLP reads its input before it writes its output, so the
    change computed at the input is the one added at the output of the same positions.
    """

    def __init__(self, group: _TranscoderColumns):
        self.group = group
        self.offset = 0
        self.pending: Tensor | None = None

    def hooks(self) -> list[ForwardHook]:
        meta = self.group.sae.cfg.metadata
        return [(meta.hook_name, self.read), (meta.hook_name_out, self.write)]

    def read(self, activation: Tensor, hook) -> Tensor:
        n = activation.shape[1]
        start, self.offset = self.offset, self.offset + n
        mask = self.group.mask(start, n)
        self.pending = None if mask is None else self.group.delta(activation, mask)
        return activation

    def write(self, activation: Tensor, hook) -> Tensor:
        pending, self.pending = self.pending, None
        if pending is None:
            return activation
        return activation + pending.to(activation.device, activation.dtype)
