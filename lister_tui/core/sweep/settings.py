"""A sweep's settings: everything that determines its tables, validated before any model loads, and the
conditions they imply (the base, each SAE's top-k ablation, the baselines)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

from lister_tui.core.engine.attribution import check_ig_steps
from lister_tui.core.engine.loading import check_device_name
from lister_tui.core.engine.prompts import TOPICS, available_templates, build_prompts, template_source
from lister_tui.core.engine.registry import ModelEntry
from lister_tui.core.engine.sampling import SamplingSettings
from lister_tui.core.errors import ListerError
from lister_tui.core.study.baselines import (
    BAN_BLANK_AND_END,
    BAN_END,
    steering_name,
)
from lister_tui.core.study.experiment import (
    ATTRIBUTION_METHODS,
    DEFAULT_IG_STEPS,
)
from lister_tui.core.study.settings import SAMPLING_PRESETS
from lister_tui.core.sweep.tables import BASE

from lister_tui.core.limits import MAX_K, MAX_LAYER, MAX_SEED, MAX_STEERING_SCALE  # noqa: E402


@dataclass(frozen=True)
class SweepSettings:
    """Everything that determines a sweep's tables (the manifest records all of it)."""

    model: str = "lister-tiny"
    saes: tuple[str, ...] = ()  # empty: the model's preset, every SAE site of its registry entry
    templates: tuple[str, ...] = ("short",)
    topics: tuple[str, ...] = TOPICS
    samples_per_topic: int = 5
    sampling_preset: str | None = "code"  # the preset the sampling values came from (None: explicit)
    sampling: SamplingSettings = SAMPLING_PRESETS["code"]
    k: int = 5  # top-k (position, feature) pairs zeroed per sample
    seed: int = 0
    device: str = "auto"
    dtype: str | None = None  # None: the registry entry's default
    restricted_sampling: bool = True
    steering: bool = True
    steering_layer: int | None = None  # None: the layer of the entry's earliest residual SAE (else 0)
    steering_scale: float = 8.0
    faithfulness: bool = True
    attribution: str = "grad"  # how pairs are ranked: "grad" (the study's activation x gradient) or "ig"
    ig_steps: int = DEFAULT_IG_STEPS  # integrated-gradient steps (used with attribution="ig")
    # named intervention sets (--interventions FILE), each one condition: {"name", "interventions": [...]}
    interventions: tuple[dict, ...] = ()

    def intervention_sets(self):
        """The intervention sets as :class:`~lister_tui.core.engine.interventions.InterventionSet`, in order."""
        from lister_tui.core.sweep.interventions_file import sets_from_records

        return sets_from_records(self.interventions)

    def sae_ids(self, entry: ModelEntry) -> tuple[str, ...]:
        """The SAEs to ablate, in order, duplicates dropped; the preset when none were given."""
        if not self.saes:
            return tuple(s.id for s in entry.sites)
        return tuple(dict.fromkeys(self.saes))

    def resolved_steering_layer(self, entry: ModelEntry) -> int:
        if self.steering_layer is not None:
            return self.steering_layer
        residual = sorted(s.layer for s in entry.sites if s.kind == "res")
        return residual[0] if residual else 0

    def validate(self, entry: ModelEntry) -> None:
        """Raise ListerError naming the first bad value and what would be valid (no weights needed)."""
        if not entry.sites:
            raise ListerError(f"model {entry.name!r} has no SAEs to ablate")
        for sae_id in self.sae_ids(entry):
            entry.site(sae_id)  # "unknown SAE 'x' for model ...; valid: ..."
        if not self.templates:
            raise ListerError(f"no templates given; valid: {', '.join(available_templates(entry))}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_K:
            raise ListerError(f"k must be an integer in [1, {MAX_K}], got {self.k!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ListerError(f"seed must be an integer in [0, {MAX_SEED}], got {str(self.seed)[:40]!s}")
        check_device_name(self.device)
        if not isinstance(self.sampling, SamplingSettings):
            raise ListerError(f"sampling must be a temperature, top_p, top_k and max_new_tokens, got {self.sampling!r}")
        build_prompts(self.templates, self.topics, self.samples_per_topic, self.seed, entry=entry)  # unknown template/topic, counts
        if self.attribution not in ATTRIBUTION_METHODS:
            raise ListerError(f"unknown attribution method {self.attribution!r}; valid: {', '.join(ATTRIBUTION_METHODS)}")
        check_ig_steps(self.ig_steps)
        if self.steering:
            if self.steering_layer is not None and (isinstance(self.steering_layer, bool) or not isinstance(self.steering_layer, int) or not 0 <= self.steering_layer <= MAX_LAYER):
                raise ListerError(f"steering layer {str(self.steering_layer)[:40]} is out of range; valid: 0..{MAX_LAYER} (a layer of the model)")
            scale = self.steering_scale
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or abs(scale) > MAX_STEERING_SCALE:
                raise ListerError(f"steering scale must be a finite number in [-{MAX_STEERING_SCALE:g}, {MAX_STEERING_SCALE:g}], got {scale!r}")
        if self.interventions:
            from lister_tui.core.sweep.interventions_file import parse_sets

            reserved = set(SweepSettings.conditions(replace(self, interventions=()), entry))
            parse_sets({"sets": [dict(r) for r in self.interventions]}, entry, "settings.interventions", reserved)

    def to_dict(self, entry: ModelEntry | None = None) -> dict:
        """JSON-ready settings, with the SAE list and steering layer resolved when ``entry`` is given."""
        out = asdict(self)
        out["saes"] = list(self.sae_ids(entry)) if entry is not None else list(self.saes)
        out["templates"], out["topics"] = list(self.templates), list(self.topics)
        if self.interventions:  # absent when none: older sweeps' settings (and hashes) stay as they were
            out["interventions"] = [dict(r) for r in self.interventions]
        else:
            out.pop("interventions", None)
        if entry is not None:
            out["steering_layer"] = self.resolved_steering_layer(entry)
        return out

    @classmethod
    def from_dict(cls, values: Mapping) -> SweepSettings:
        """Settings back from :meth:`to_dict`'s output (a manifest's ``settings``)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ListerError(f"unknown sweep settings {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        out = dict(values)
        try:
            if isinstance(out.get("sampling"), Mapping):
                out["sampling"] = SamplingSettings(**out["sampling"])
            if "interventions" in out:
                if not isinstance(out["interventions"], (list, tuple)) or not all(isinstance(r, Mapping) for r in out["interventions"]):
                    raise ListerError(f"settings.interventions must be a list of sets, got {out['interventions']!r:.80}")
                out["interventions"] = tuple(dict(r) for r in out["interventions"])
            for key in ("saes", "templates", "topics"):
                if key in out:
                    if not isinstance(out[key], (list, tuple)) or not all(isinstance(v, str) for v in out[key]):
                        raise ListerError(f"settings.{key} must be a list of names, got {out[key]!r:.80}")
                    out[key] = tuple(out[key])
        except TypeError as exc:
            raise ListerError(f"settings.sampling is invalid ({exc})") from exc
        return cls(**out)

    def conditions(self, entry: ModelEntry) -> list[str]:
        """Every condition's name, in the tables' order: the base, each SAE's ablation, the baselines."""
        names = [BASE] + [ablation_condition(s) for s in self.sae_ids(entry)]
        names += [str(r["name"]) for r in self.interventions]
        if self.restricted_sampling:
            names += [BAN_BLANK_AND_END, BAN_END]
        if self.steering:
            names.append(steering_name(self.resolved_steering_layer(entry), self.steering_scale))
        return names

    def cli_args(self, entry: ModelEntry, interventions_file=None) -> list[str]:
        """``lister-tui sweep`` arguments that repeat this sweep exactly (every value explicit)."""
        s = self.sampling
        origin = entry.extra.get("base_origin", entry.origin)
        args = [] if origin == "built-in" or not origin.endswith(".toml") else ["--registry", origin]
        for option, path in dict.fromkeys(filter(None, map(template_source, self.templates))):  # the files they came from
            if [option, path] != args[:2]:
                args += [option, path]
        args += ["--model", self.model]
        adhoc = entry.extra.get("adhoc", {})
        for sae_id in self.sae_ids(entry):
            args += ["--sae", f"{sae_id}={adhoc[sae_id]}" if sae_id in adhoc else sae_id]
        for t in self.templates:
            args += ["--template", t]
        for topic in self.topics:
            args += ["--topic", topic]
        args += ["--samples", str(self.samples_per_topic), "--preset", self.sampling_preset or "code"]
        args += ["--temperature", repr(s.temperature), "--top-p", repr(s.top_p), "--max-new-tokens", str(s.max_new_tokens)]
        if s.top_k is not None:
            args += ["--top-k", str(s.top_k)]
        args += ["--k", str(self.k), "--seed", str(self.seed), "--device", self.device]
        if self.dtype is not None:
            args += ["--dtype", self.dtype]
        args.append("--restricted" if self.restricted_sampling else "--no-restricted")
        if self.steering:
            args += ["--steering", "--steering-layer", str(self.resolved_steering_layer(entry))]
            args += ["--steering-scale", repr(self.steering_scale)]
        else:
            args.append("--no-steering")
        args.append("--faithfulness" if self.faithfulness else "--no-faithfulness")
        args += ["--attribution", self.attribution, "--ig-steps", str(self.ig_steps)]
        if self.interventions:  # the sets live in a file (the sweep's interventions.json)
            args += ["--interventions", str(interventions_file or "interventions.json")]
        return args


def ablation_condition(sae_id: str) -> str:
    """The condition that zeroes ``sae_id``'s top-k pairs, e.g. "ablate res_0"."""
    return f"ablate {sae_id}"
