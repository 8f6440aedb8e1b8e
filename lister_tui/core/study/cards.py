"""Feature cards: what one SAE feature is, from the text it fires on and the tokens it writes.

The card follows the feature dashboards of SAE-Vis (McDougall, 2024) and Neuronpedia
(Lin & Bloom, 2023), themselves after Bricken et al. (2023), *Towards Monosemanticity*:

- **top contexts**: the ``k`` strongest activations over a reference corpus
  (:mod:`lister_tui.core.study.corpus`) whose windows differ, each with the window of
  tokens around it and how many of the strongest firings share that window (``repeats``);
- **interval samples**: a few activations drawn from equal-width intervals of
  ``(0, max]`` below the top, each interval with the share of the feature's firings it
  holds (SAE-Vis's "quantile groups"), so the card shows more than the peak;
- **density** (the fraction of tokens where the feature fires) and a histogram of its
  non-zero activations;
- **logit effects**: the tokens its decoder direction promotes and suppresses through
  the unembedding, and its direct effect on the study's metric;
- **in the current sample**: its activation at every token and, if the sample was
  attributed, its attribution and rank.

Long because one card gathers all of these from one corpus pass, and each part is a few
short functions that only the card uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.errors import ListerError
from lister_tui.core.study.corpus import Corpus, Progress, SparseActivations, check_feature, corpus_activations
from lister_tui.core.study.experiment import SAEListAttribution

WINDOW = (12, 4)  # tokens shown before and after the context's token
HISTOGRAM_BINS = 30


@dataclass(frozen=True)
class Context:
    """One activation of the feature in the corpus, with its window of tokens."""

    activation: float
    source: str  # where the document comes from (corpus part and document)
    position: int  # of the token, within its document
    tokens: tuple[str, ...]  # the window's token strings
    index: int  # of the activating token within ``tokens``
    window_activations: tuple[float, ...]  # the feature's activation at each window token
    # firings with this same window (tokens and activating token) among those scanned for the top
    # contexts: a token-level feature fires on many identical windows, shown once with "×N"
    repeats: int = 1

    @property
    def token(self) -> str:
        return self.tokens[self.index]

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    def to_dict(self) -> dict:
        return {
            "token": self.token,
            "activation": self.activation,
            "text": self.text,
            "source": self.source,
            "position": self.position,
            "tokens": list(self.tokens),
            "index": self.index,
            "window_activations": list(self.window_activations),
            "repeats": self.repeats,
        }


@dataclass(frozen=True)
class IntervalGroup:
    """Samples from one interval ``(low, high]`` of activation values."""

    low: float
    high: float
    share: float  # of the feature's firings in this interval
    contexts: tuple[Context, ...]


@dataclass(frozen=True)
class LogitEffects:
    promoted: tuple[tuple[str, float], ...]  # (token, effect), strongest first
    suppressed: tuple[tuple[str, float], ...]  # most negative first
    metric_direct: float  # per unit of activation: effect[blank] − effect[newline]


@dataclass(frozen=True)
class SampleTrace:
    """The feature in one sample: its activation at each token, and its attribution there."""

    key: str
    tokens: tuple[str, ...]
    activations: tuple[float, ...]
    attribution: float | None  # its strongest attributed pair in the sample (None: not attributed or not in the top)
    position: int | None  # where that pair sits
    rank: int | None  # 1 = the sample's strongest pair of this SAE


@dataclass(frozen=True)
class FeatureCard:
    model: str
    sae_id: str
    hook_name: str
    feature: int
    d_sae: int
    corpus: str  # what the corpus was, in words
    n_tokens: int  # tokens counted (BOS excluded)
    n_firing: int
    max_activation: float
    contexts: tuple[Context, ...]
    intervals: tuple[IntervalGroup, ...]
    histogram_counts: tuple[int, ...]
    histogram_edges: tuple[float, ...]
    logit_effects: LogitEffects
    sample: SampleTrace | None = None
    link: str | None = None
    label: str = ""  # the user's name for the feature (kept in the session)
    notices: tuple[str, ...] = ()  # what happened on the way (a damaged cache moved aside and recomputed)
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def density(self) -> float:
        return self.n_firing / self.n_tokens if self.n_tokens else 0.0

    def to_dict(self) -> dict:
        """The card as JSON-ready data (what ``lister-tui feature --json`` writes)."""
        s = self.sample
        return {
            "model": self.model,
            "sae": self.sae_id,
            "hook_name": self.hook_name,
            "feature": self.feature,
            "label": self.label,
            "link": self.link,
            "corpus": self.corpus,
            "n_tokens": self.n_tokens,
            "n_firing": self.n_firing,
            "density": self.density,
            "max_activation": self.max_activation,
            "contexts": [c.to_dict() for c in self.contexts],
            "intervals": [
                {"low": g.low, "high": g.high, "share": g.share, "contexts": [c.to_dict() for c in g.contexts]} for g in self.intervals
            ],
            "histogram": {"counts": list(self.histogram_counts), "edges": list(self.histogram_edges)},
            "logit_effects": {
                "promoted": [{"token": t, "effect": v} for t, v in self.logit_effects.promoted],
                "suppressed": [{"token": t, "effect": v} for t, v in self.logit_effects.suppressed],
                "metric_direct": self.logit_effects.metric_direct,
            },
            "sample": None
            if s is None
            else {
                "key": s.key,
                "tokens": list(s.tokens),
                "activations": list(s.activations),
                "attribution": s.attribution,
                "position": s.position,
                "rank": s.rank,
            },
        }


# --- logit effects -----------------------------------------------------------------------


def residual_direction(lab: LoadedModel, sae_id: str, feature: int) -> torch.Tensor:
    """The feature's decoder direction as written into the residual stream ([d_model]).

    Residual SAEs write ``W_dec[f]`` directly. A ``hook_z`` SAE's direction lives in the
    heads' value outputs: it reaches the residual stream through ``W_O`` (summed over
    heads) and, in Gemma 2, the post-attention RMS norm's gain (its per-token scale is
    left out).
    """
    site = lab.entry.site(sae_id)
    sae = lab.load_sae(sae_id, cache=True)
    d = sae.W_dec[feature].detach().float()
    model = lab.model
    if site.kind == "attn":
        block = model.blocks[site.layer]
        w_o = block.attn.W_O.detach().float()  # [n_heads, d_head, d_model]
        d = torch.einsum("hk,hkm->m", d.reshape(w_o.shape[0], w_o.shape[1]), w_o)
        post = getattr(block, "ln1_post", None)
        if post is not None and hasattr(post, "w"):
            d = d * post.w.detach().float()
    return d


def logit_effects(lab: LoadedModel, sae_id: str, feature: int, k: int = 10) -> LogitEffects:
    """The direct effect of one unit of the feature on every logit: ``d · W_U`` after the final norm.

    ``d`` is :func:`residual_direction`. The final norm is applied as TransformerLens
    folds it into ``W_U``: centred (LayerNorm) and multiplied by its gain. What is
    approximated, as in SAE-Vis's and Neuronpedia's logit tables: the norm's
    per-position scale (1 / the residual's size, one positive factor per position)
    and its projection off the residual's own direction are left out, and only the
    direct path counts (not through later layers; Gemma 2's final soft cap is left
    out). On lister-tiny the sign of ``metric_direct`` agrees with the attribution of
    every top feature of the last layer's SAEs (res_3, attn_3), whose effect on the
    metric is mostly direct, but with only about half of res_0's, whose effect runs
    through later layers (tests/test_cards.py).
    """
    model = lab.model
    d = residual_direction(lab, sae_id, feature)
    if model.cfg.normalization_type in ("LN", "LNPre"):
        d = d - d.mean()
    ln = getattr(model, "ln_final", None)
    if ln is not None and hasattr(ln, "w"):
        d = d * ln.w.detach().float()
    effect = d @ model.unembed.W_U.detach().float()  # [d_vocab]
    k = min(k, effect.numel())
    top = torch.topk(effect, k)
    bottom = torch.topk(-effect, k)
    strings = lambda ids: lab.to_str_tokens(ids.tolist())  # noqa: E731
    promoted = tuple(zip(strings(top.indices), (float(v) for v in top.values)))
    suppressed = tuple(zip(strings(bottom.indices), (-float(v) for v in bottom.values)))
    metric = float(effect[lab.ids.blank] - effect[lab.ids.newline])
    return LogitEffects(promoted, suppressed, metric)


# --- contexts ----------------------------------------------------------------------------


@dataclass
class _Merged:
    """The feature's activations over every corpus part, as one list."""

    feature: int
    parts: list  # (CorpusPart, SparseActivations)
    part_of: np.ndarray  # [n] index of the part
    positions: np.ndarray  # [n] position within the part's concatenated tokens
    values: np.ndarray  # [n]


def _merge(parts: list, feature: int) -> _Merged:
    part_of, positions, values = [], [], []
    for i, (_, acts) in enumerate(parts):
        p, v = acts.feature(feature)
        part_of.append(np.full(len(p), i, dtype=np.int64))
        positions.append(p)
        values.append(v)
    return _Merged(feature, parts, np.concatenate(part_of), np.concatenate(positions), np.concatenate(values))


def _context(lab: LoadedModel, merged: _Merged, j: int, window: tuple[int, int], strings) -> Context:
    part, acts = merged.parts[int(merged.part_of[j])]
    pos = int(merged.positions[j])
    doc = int(np.searchsorted(acts.doc_starts, pos, side="right") - 1)
    start, end = int(acts.doc_starts[doc]), int(acts.doc_starts[doc + 1])
    lo, hi = max(start, pos - window[0]), min(end, pos + window[1] + 1)
    ids = part.docs[doc][lo - start : hi - start]
    feat_pos, feat_val = acts.feature(merged.feature)
    a, b = np.searchsorted(feat_pos, [lo, hi])
    window_acts = np.zeros(hi - lo, dtype=np.float32)
    window_acts[feat_pos[a:b] - lo] = feat_val[a:b]
    return Context(
        float(merged.values[j]),
        f"{part.name}: {part.sources[doc]}",
        pos - start,
        tuple(strings(ids)),
        pos - lo,
        tuple(float(v) for v in window_acts),
    )


SCAN_PER_CONTEXT = 25  # firings looked at per top context wanted, to find distinct windows


def _distinct_top(lab: LoadedModel, merged: _Merged, order: np.ndarray, k: int, window: tuple[int, int], strings) -> tuple[tuple[Context, ...], np.ndarray]:
    """The ``k`` strongest firings whose windows differ (the same tokens around the same
    activating token count once, with ``repeats``: the identical windows among the firings
    looked at), going down the firings until ``k`` differ or ``SCAN_PER_CONTEXT · k`` have
    been looked at; and every firing looked at (the interval samples leave them out)."""
    from dataclasses import replace

    found: dict[tuple, Context] = {}
    scanned = 0
    for j in order[: SCAN_PER_CONTEXT * k]:
        c = _context(lab, merged, int(j), window, strings)
        key = (c.tokens, c.index)
        if key in found:
            found[key] = replace(found[key], repeats=found[key].repeats + 1)
        elif len(found) < k:
            found[key] = c
        else:
            break
        scanned += 1
    return tuple(found.values()), order[:scanned]


def _strings(lab: LoadedModel):
    memo: dict[int, str] = {}

    def get(ids) -> list[str]:
        missing = [i for i in dict.fromkeys(ids) if i not in memo]
        for i, s in zip(missing, lab.to_str_tokens(missing)):
            memo[i] = s
        return [memo[i] for i in ids]

    return get


def _intervals(merged: _Merged, top: np.ndarray, n_intervals: int, per_interval: int, feature: int) -> list[tuple[float, float, float, np.ndarray]]:
    """SAE-Vis's interval samples: ``(0, max]`` cut into equal intervals, a few random firings from each.

    The top interval is skipped (the top contexts show it); firings already among
    the top contexts are not drawn again. Drawn with a generator seeded by the
    feature, so a card is the same every time.
    """
    values = merged.values
    if values.size == 0 or n_intervals < 2:
        return []
    edges = np.linspace(0.0, float(values.max()), n_intervals + 1)
    taken = np.zeros(values.size, dtype=bool)
    taken[top] = True
    rng = np.random.default_rng(feature)
    out = []
    for i in range(n_intervals - 2, -1, -1):
        low, high = edges[i], edges[i + 1]
        inside = (values > low) & (values <= high)
        share = float(inside.mean())
        candidates = np.flatnonzero(inside & ~taken)
        chosen = rng.choice(candidates, size=min(per_interval, candidates.size), replace=False) if candidates.size else candidates
        chosen = chosen[np.argsort(-values[chosen], kind="stable")]
        out.append((float(low), float(high), share, chosen))
    return out


def sample_trace(lab: LoadedModel, sae_id: str, feature: int, key: str, tokens, attribution: SAEListAttribution | None = None) -> SampleTrace:
    """The feature's activation at every token of one sample, and its rank in the sample's attribution."""
    site = lab.entry.site(sae_id)
    sae = lab.load_sae(sae_id, cache=True)
    ids = torch.tensor([list(tokens)], device=lab.device)
    with torch.inference_mode():
        _, cache = lab.model.run_with_cache(ids, stop_at_layer=site.layer + 1, names_filter=[site.hook_name])
        acts = sae.encode(cache[site.hook_name].to(sae.dtype))[0, :, feature].float().cpu()
    attr = pos = rank = None
    if attribution is not None and attribution.top:
        for r, pair in enumerate(attribution.top[0], start=1):
            if pair.feature == feature:
                attr, pos, rank = float(pair.attribution), int(pair.pos), r
                break
    return SampleTrace(key, tuple(lab.to_str_tokens(list(tokens))), tuple(float(v) for v in acts), attr, pos, rank)


def corpus_parts(
    lab: LoadedModel,
    sae_id: str,
    corpus: Corpus,
    *,
    cache: Path | None | bool = True,
    on_progress: Progress | None = None,
    on_notice=None,
) -> list[tuple]:
    """``(part, SparseActivations)`` of every part of ``corpus`` for SAE ``sae_id``: the pass a card reads
    (cached; ``on_progress(done, total)`` over the whole corpus, True stops it with PassCancelled)."""
    total = corpus.n_tokens
    done_before = 0
    parts: list[tuple] = []
    for part in corpus.parts:
        report = None
        if on_progress is not None:
            report = lambda done, _all, base=done_before: on_progress(base + done, total)  # noqa: E731
        acts: SparseActivations = corpus_activations(lab, sae_id, part, cache=cache, on_progress=report, on_notice=on_notice)
        parts.append((part, acts))
        done_before += part.n_tokens
    return parts


def max_activations(lab: LoadedModel, sae_id: str, corpus: Corpus, *, cache: Path | None | bool = True, on_progress: Progress | None = None) -> np.ndarray:
    """[d_sae]: every feature's card ``max_activation`` at once (0 for a feature that never fires)."""
    from lister_tui.core.study.features import feature_maxima

    return feature_maxima(acts for _, acts in corpus_parts(lab, sae_id, corpus, cache=cache, on_progress=on_progress))


def feature_card(
    lab: LoadedModel,
    sae_id: str,
    feature: int,
    corpus: Corpus,
    *,
    k: int = 20,
    window: tuple[int, int] = WINDOW,
    n_intervals: int = 5,
    per_interval: int = 3,
    n_logits: int = 10,
    sample: tuple[str, tuple[int, ...], SAEListAttribution | None] | None = None,
    label: str = "",
    cache: Path | None | bool = True,
    on_progress: Progress | None = None,
) -> FeatureCard:
    """The card of ``feature`` of SAE ``sae_id`` over ``corpus``.

    ``sample`` is ``(key, tokens, that sample's attribution or None)`` for the "in this
    sample" strip. The corpus pass is cached (``cache``: see
    :func:`lister_tui.core.study.corpus.corpus_activations`); ``on_progress(done,
    total)`` is called after each batch of it, and returning True stops it
    (:class:`~lister_tui.core.study.corpus.PassCancelled`). A damaged cache file is moved
    aside and recomputed; the card's ``notices`` say so.
    """
    d_sae = check_feature(lab, sae_id, feature)
    if k < 1:
        raise ListerError(f"k {k} is out of range; valid: 1 or more")
    notices: list[str] = []
    parts = corpus_parts(lab, sae_id, corpus, cache=cache, on_progress=on_progress, on_notice=notices.append)
    merged = _merge(parts, feature)
    strings = _strings(lab)
    order = np.argsort(-merged.values, kind="stable")
    contexts, top = _distinct_top(lab, merged, order, k, window, strings)
    groups = tuple(
        IntervalGroup(low, high, share, tuple(_context(lab, merged, int(j), window, strings) for j in chosen))
        for low, high, share, chosen in _intervals(merged, top, n_intervals, per_interval, feature)
    )
    n_counted = sum(acts.n_counted for _, acts in parts)
    if merged.values.size:
        counts, edges = np.histogram(merged.values, bins=HISTOGRAM_BINS, range=(0.0, float(merged.values.max())))
    else:
        counts, edges = np.zeros(0, dtype=np.int64), np.zeros(0)
    trace = None
    if sample is not None:
        trace = sample_trace(lab, sae_id, feature, sample[0], sample[1], sample[2])
    return FeatureCard(
        model=lab.entry.name,
        sae_id=sae_id,
        hook_name=lab.entry.site(sae_id).hook_name,
        feature=int(feature),
        d_sae=d_sae,
        corpus=corpus.description,
        n_tokens=n_counted,
        n_firing=int(merged.values.size),
        max_activation=float(merged.values.max()) if merged.values.size else 0.0,
        contexts=contexts,
        intervals=groups,
        histogram_counts=tuple(int(c) for c in counts),
        histogram_edges=tuple(float(e) for e in edges),
        logit_effects=logit_effects(lab, sae_id, feature, n_logits),
        sample=trace,
        link=lab.entry.feature_link(sae_id, feature),
        label=label,
        notices=tuple(notices),
    )
