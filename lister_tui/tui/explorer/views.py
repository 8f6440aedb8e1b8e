"""What each pane renders, computed from the workspace and the explorer's state.

Pure functions (and two small caches): nothing here touches a widget or runs the
model, so the text and documents the panes show can be checked without a screen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text

from lister_tui.core.engine.generation import ListSample
from lister_tui.core.engine.listing import parse_structure
from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.sessions.workspace import AblationChoice, SampleState, Workspace
from lister_tui.core.study.features import dataset_ranking, pairs_table
from lister_tui.safe_text import visible
from lister_tui.tui.explorer.state import TOP_K, ExplorerState
from lister_tui.tui.widgets.ablation_panel import delta_parts, delta_summary
from lister_tui.tui.widgets.feature_table import FeatureRow, filter_rows, rows_from_pairs, rows_from_ranking, sort_rows
from lister_tui.tui.widgets.metric_strip import Curve
from lister_tui.tui.widgets.token_view import TokenDoc


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class TokenStrings:
    """Token ids → their strings, asked of the model's tokenizer once per id."""

    def __init__(self, lab: LoadedModel) -> None:
        self.lab = lab
        self._strings: dict[int, str] = {}

    def __call__(self, ids) -> list[str]:
        missing = [i for i in dict.fromkeys(ids) if i not in self._strings]
        if missing:
            for i, s in zip(missing, self.lab.to_str_tokens(missing)):
                self._strings[i] = s
        return [self._strings[i] for i in ids]

    def one(self, token_id: int) -> str:
        return self([token_id])[0]


def choice_marks(choices) -> tuple[frozenset[int], bool]:
    """The positions ablated at a position, and whether any feature is ablated everywhere."""
    return frozenset(c.pos for c in choices if c.mode == "position"), any(c.mode == "every" for c in choices)


def sample_doc(st: SampleState, strings: TokenStrings) -> TokenDoc:
    s = st.sample
    m = s.metrics
    metric = "" if m.metric_at_attribution is None else f" · metric@attr {m.metric_at_attribution:+.2f}"
    title = (
        f"{s.spec.template}/{s.spec.topic}/#{s.spec.sample} · seed {s.spec.seed} · {m.n_items} items · "
        f"{m.n_tokens} tok · {'end' if m.reached_end else 'cap'}{metric}"
    )
    return TokenDoc(title, s.tokens, strings(s.tokens), s.prompt_len, s.structure, st.curve, *choice_marks(st.choices))


def streaming_doc(lab: LoadedModel, st: SampleState, tokens: tuple[int, ...], prefix: int | None, strings: TokenStrings) -> TokenDoc:
    """The regeneration as it streams in: tokens so far, their structure, no curve yet."""
    structure = parse_structure(tokens, lab.ids, st.sample.prompt_len - 1)
    marks, every = choice_marks(st.choices)
    return TokenDoc(
        f"ablated · {plural(len(st.choices), 'feature')}", tokens, strings(tokens), st.sample.prompt_len, structure, None, marks, every,
        prefix, streaming=True,
    )


def _base_doc(b: ListSample, curve, strings: TokenStrings, marks: frozenset[int], other: tuple[int, ...] | None = None) -> TokenDoc:
    return TokenDoc(
        f"base · regenerated from pos {b.prefix_len}, seed {b.spec.seed}", b.tokens, strings(b.tokens), b.prompt_len,
        b.structure, curve, marks, False, b.prefix_len, other,
        # a narrow pane keeps where the regeneration starts (the seed is the sample's own)
        narrow_headers=((f"base · from pos {b.prefix_len}", ""),),
    )


def run_docs(
    lab: LoadedModel, st: SampleState, state: ExplorerState, strings: TokenStrings, cached_base: tuple[ListSample, tuple[float, ...]] | None
) -> tuple[TokenDoc | None, TokenDoc | None]:
    """The base and ablated documents of the compare view: the streaming run, else the latest run."""
    if state.streaming is not None:
        marks, _ = choice_marks(st.choices)
        base = None if cached_base is None else _base_doc(cached_base[0], cached_base[1], strings, marks)
        return base, streaming_doc(lab, st, state.streaming, state.stream_prefix, strings)
    run = shown_run(st, state)
    if run is None:
        return None, None
    b, a = run.base, run.ablated
    marks, every = choice_marks(run.choices)
    base_doc = _base_doc(b, run.base_curve, strings, marks, a.tokens)
    stale = tuple(st.choices) != run.choices
    title = f"ablated · {plural(len(run.choices), 'feature')}" + (" (stale: toggles changed)" if stale else "")
    ablated_doc = TokenDoc(
        title, a.tokens, strings(a.tokens), a.prompt_len, a.structure, run.ablated_curve, marks, every, a.prefix_len, b.tokens,
        info=delta_summary(run), narrow_headers=narrow_run_headers(run, title, stale),
    )
    return base_doc, ablated_doc


def narrow_run_headers(run, title: str, stale: bool) -> tuple[tuple[str, str], ...]:
    """The ablated pane's header in a narrow pane (the compare view at 80 columns): the essential
    figures, items a→b (±d) and tokens a→b, kept whole; the other metrics, then the words, go first."""
    full, short = delta_parts(run), delta_parts(run, with_delta=False)
    items, tokens = full["n_items"], full["n_tokens"]
    mark = " (stale)" if stale else ""
    return (
        (title, f"{items} · {tokens}"),
        (title, f"{items} · {short['n_tokens']}"),
        (f"ablated{mark}: {items}", tokens),
        (f"ablated{mark}: {items}", short["n_tokens"]),
        (f"abl{mark}: {items}", short["n_tokens"]),
    )


def shown_run(st: SampleState, state: ExplorerState):
    """The run the screen shows: the latest, unless c cleared the view since."""
    return st.runs[-1] if st.runs and not state.run_hidden else None


def metric_curves(st: SampleState, state: ExplorerState) -> list[Curve]:
    run = shown_run(st, state)
    if state.compare and run is not None and state.streaming is None:
        return [Curve("base", run.base_curve), Curve("abl", run.ablated_curve)]
    return [Curve("metr", st.curve or ())]


def status_text(lab: LoadedModel, ws: Workspace, state: ExplorerState, preset: str, session: str) -> str:
    # the session first: at 80 columns the line's end is what gets cut
    parts = [session or "not saved", lab.entry.name, f"preset {preset}", "from " + state.regen_from_text(short=True)]
    if state.live:
        parts.append("live")
    if state.busy:
        parts.append(state.busy)
    if state.regen_state:
        parts.append(state.regen_state)
    return " · ".join(parts)


def cursor_info(st: SampleState, doc: TokenDoc | None, pos: int, rows: list[FeatureRow]) -> str:
    """Two lines under the metric strip: the token under the cursor, and its top features."""
    if doc is None or not doc.ids:
        return ""
    line1 = f"pos {pos} · id {doc.ids[pos]} · {doc.strings[pos]!r}"
    structure = doc.structure
    if structure is not None:
        if structure.attribution_pos == pos:
            line1 += " · attr pos"
        if pos in structure.filler_positions:
            line1 += " · filler blank"
        if structure.end_pos == pos:
            line1 += " · end token"
    if st.attribution is None:
        line2 = "features: not attributed yet (a)"
    elif pos >= len(st.sample.tokens) or doc.ids[: pos + 1] != st.sample.tokens[: pos + 1]:
        line2 = "features: not in the attributed sample"
    else:
        here = sorted((r for r in rows if r.pos == pos), key=lambda r: -r.attribution)[:4]
        line2 = "top here: " + (
            " · ".join(f"{r.sae_id} f{r.feature} {r.attribution:+.2f} (a {r.activation:.1f})" for r in here) or "no feature among the top pairs"
        )
    return f"{line1}\n{line2}"


@dataclass
class FeatureRows:
    """The features table's rows, computed once per attribution (rankings cost a pass over the pairs)."""

    sae_ids: list[str]
    token_str: object  # Callable[[int], str]
    _cache: dict[tuple, list[FeatureRow]] = field(default_factory=dict)

    def of_sample(self, st: SampleState, key: str) -> list[FeatureRow]:
        if st.attribution is None:
            return []
        cache_key = ("sample", key, id(st.attribution))
        if cache_key not in self._cache:
            rows: list[FeatureRow] = []
            for sae in self.sae_ids:
                if sae in st.attribution:
                    rows += rows_from_pairs(pairs_table(st.attribution[sae], [st.sample], self.token_str))
            self._cache[cache_key] = rows
        return self._cache[cache_key]

    def of_dataset(self, ws: Workspace) -> list[FeatureRow]:
        batch = ws.batch
        if batch is None:
            return []
        cache_key = ("dataset", id(batch))
        if cache_key not in self._cache:
            samples = [ws.state(k).sample for k in batch.keys]
            rows: list[FeatureRow] = []
            for sae in self.sae_ids:
                if sae in batch.by_sae:
                    rows += rows_from_ranking(dataset_ranking(batch.by_sae[sae], samples, self.token_str, k=TOP_K))
            self._cache[cache_key] = rows
        return self._cache[cache_key]


@dataclass(frozen=True)
class FeaturesView:
    """What the features pane shows: its rows, the header's text, each row's ablation mark."""

    rows: list[FeatureRow]
    header: Text
    modes: dict[str, str]
    dataset: bool
    links: bool
    labels: dict = field(default_factory=dict)  # (sae_id, feature) -> the user's label
    dense: frozenset = frozenset()  # keys of rows whose feature is dense (flagged with d)


def density_rows(rows: list[FeatureRow], densities: dict, view: str) -> tuple[list[FeatureRow], frozenset]:
    """``rows`` under the density option: the keys of dense rows (every SAE whose densities are known),
    and with ``view == "downweight"`` the rows re-ranked by attribution × min(1, max density / density)
    (:func:`lister_tui.core.study.features.density_aware`'s ``score_density_adjusted``)."""
    import pandas as pd

    from lister_tui.core.study.features import density_aware

    if view == "plain" or not rows:
        return rows, frozenset()
    adjusted: dict[str, float] = {}
    dense: set[str] = set()
    for sae_id in dict.fromkeys(r.sae_id for r in rows):
        if sae_id not in densities:
            continue
        mine = [r for r in rows if r.sae_id == sae_id]
        frame = pd.DataFrame({"feature": [r.feature for r in mine], "attribution": [r.attribution for r in mine]})
        ranked = density_aware(frame, densities[sae_id], mode="flag", score="attribution")
        for r, flag, score in zip(mine, ranked["dense"], ranked["score_density_adjusted"]):
            adjusted[r.key] = float(score)
            if flag:
                dense.add(r.key)
    if view == "downweight":
        rows = sorted(rows, key=lambda r: (-adjusted.get(r.key, r.attribution), r.sae_id, r.feature))
    return rows, frozenset(dense)


# short: at 80 columns the header shares its line with the filter (the help screen explains D)
DENSITY_HEADER = {"flag": "d = dense (D)", "downweight": "attr×density"}


def features_view(
    lab: LoadedModel, ws: Workspace, state: ExplorerState, rows_of: FeatureRows, query: str, densities: dict | None = None
) -> FeaturesView:
    # the SAE choice (s) lives in the filter text as sae:NAME: one visible query, nothing hidden
    if state.dataset_mode:
        rows = rows_of.of_dataset(ws)
        n = len(ws.batch.keys) if ws.batch else 0
        what = f"dataset top-{TOP_K} × {n}" if ws.batch else "dataset: press A"
    else:
        st = ws.state(state.current) if state.current else None
        rows = rows_of.of_sample(st, state.current) if st else []
        what = "sample pairs · grad" if rows else "not attributed: a (or I)"
        if rows and st.attribution and any(a.method == "ig" for a in st.attribution.values()):
            what = "sample pairs · IG"
    rows = sort_rows(filter_rows(rows, query), state.sort_key)
    rows, dense = density_rows(rows, densities or {}, state.density_view)
    modes = {}
    if state.current is not None:
        for c in ws.state(state.current).choices:
            modes[f"{c.sae_id}:{c.feature}:{c.pos}"] = "∀" if c.mode == "every" else "@"
    short = {"attribution": "attr", "activation": "act"}.get(state.sort_key, state.sort_key)  # fits 80 columns
    if state.density_view == "downweight":
        header = Text.assemble((what, "bold"), " · ", (DENSITY_HEADER["downweight"], "bold"))
    else:
        header = Text.assemble((what, "bold"), " · by ", visible(short), " (o)")
        if state.density_view == "flag":
            header = Text.assemble((what, "bold"), " · ", (DENSITY_HEADER["flag"], "bold"))
    return FeaturesView(rows, header, modes, state.dataset_mode, lab.entry.feature_url is not None, dict(ws.labels), dense)


def tokens_title(ws: Workspace, state: ExplorerState, compare_shown: bool) -> str:
    """The token pane's title: which sample, and what it shows (sample, or base | ablated and from where)."""
    if state.current is None:
        return "tokens · sampling the first batch…" if state.busy else "tokens"
    if compare_shown:
        mode = "base | ablated" + (" (streaming)" if state.streaming is not None else "") + f" · from {state.regen_from_text(short=True)}"
    else:
        mode = "sample" + (" · compare off (d)" if not state.compare else "")
    return f"{state.current.split('@')[0]} · {mode}"  # the seed is on the sample's own title line


def ablation_status(state: ExplorerState, st: SampleState) -> str:
    status = (
        f"{len(st.choices)} active · regen from {state.regen_from_text()} (R) · "
        f"live {'on' if state.live else 'off'} (l) · space removes, e mode, k kind, [ ] value, c clears"
    )
    return f"{state.regen_state} · {status}" if state.regen_state else status


def choice_for_row(row: FeatureRow) -> AblationChoice:
    """The ablation choice a features-table row stands for (a dataset-ranked feature: every position)."""
    if row.pos is None:
        return AblationChoice(row.sae_id, row.feature, -1, "every")
    return AblationChoice(row.sae_id, row.feature, row.pos, "position")
