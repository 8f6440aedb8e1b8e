"""A feature card as Rich text, for the explorer's card screen and `lister-tui feature`.

Every string of a card comes from a vocabulary, a corpus or the user (its label), so it
is untrusted: it is built into :class:`rich.text.Text` piece by piece (never parsed as
markup) under :mod:`lister_tui.safe_text`'s rule: a token's whitespace and control characters show
as the token view's markers (:func:`visible_token`, ESC as ``␛``), names, labels and sources as
:func:`visible` text, so a token can neither style the terminal nor hide itself.
"""

from __future__ import annotations

from rich.console import Group
from rich.text import Text

from lister_tui.core.study.cards import Context, FeatureCard
from lister_tui.safe_text import visible, visible_token

HIGHLIGHT = "bold reverse"
BARS = " ▁▂▃▄▅▆▇█"


LABEL_SHOWN_CHARS = 80  # a label longer than this (one from a file) is cut with "…" where it is shown


def label_text(label: str) -> Text:
    """A user's label, as plain text."""
    return Text(visible(label), style="italic") if label else Text("")


def feature_title(sae_id: str, feature: int, label: str = "") -> Text:
    """``res_0 f377 "label"``: how a feature is named next to its label everywhere (a label longer
    than LABEL_SHOWN_CHARS, one from a file, is cut with "…")."""
    text = Text(visible(f"{sae_id} f{feature}"))
    if label:
        if len(label) > LABEL_SHOWN_CHARS:
            label = label[: LABEL_SHOWN_CHARS - 1] + "…"
        text.append(" “")
        text.append_text(label_text(label))
        text.append("”")
    return text


def context_text(c: Context, width: int | None = None, brackets: bool = False) -> Text:
    """The window, the activating token highlighted (and in ``⟦ ⟧`` with ``brackets``, for plain
    output), other firing tokens emphasised by their activation."""
    text = Text()
    peak = max(c.window_activations) or 1.0
    for i, (token, act) in enumerate(zip(c.tokens, c.window_activations)):
        if i == c.index:
            style = HIGHLIGHT
        elif act > 0:
            style = "bold" if act >= 0.5 * peak else "underline"
        else:
            style = ""
        text.append(f"⟦{visible_token(token)}⟧" if brackets and i == c.index else visible_token(token), style=style)
    if width is not None and len(text) > width:
        # keep the highlighted token in view: cut from the left first
        before = len(visible_token("".join(c.tokens[: c.index])))
        cut = max(0, min(before - width // 2, len(text) - width))
        text = text[cut : cut + width]
    return text


def sparkline(counts, width: int = 30) -> str:
    if not counts:
        return ""
    top = max(counts) or 1
    return "".join(BARS[0 if n == 0 else max(1, round(n / top * (len(BARS) - 1)))] for n in counts[:width])


def top_title(contexts) -> str:
    """The top contexts' heading: "distinct" (and how many firings they stand for) when
    identical windows were folded into one line with ×N."""
    n = len(contexts)
    firings = sum(getattr(c, "repeats", 1) for c in contexts)
    if firings == n:
        return f"Top {n} contexts"
    return f"Top {n} distinct contexts (of the {firings} strongest firings; ×N: that many identical windows)"


def contexts_lines(contexts, title: str, width: int = 100, brackets: bool = True) -> Text:
    """One line per context: activation, the window (the token kept in view), how many firings
    share that window (×N, when more than one) and where it comes from."""
    repeats = any(getattr(c, "repeats", 1) > 1 for c in contexts)
    count_width = max((len(f" ×{c.repeats}") for c in contexts), default=0) if repeats else 0
    context_width = max(20, min(60, width - 8 - 24))
    source_width = max(0, width - 8 - context_width - 2 - count_width)
    text = Text(visible(title), style="bold")
    for c in contexts:
        line = Text(f"\n{c.activation:6.2f}  ")
        window = context_text(c, context_width, brackets)
        window.pad_right(context_width - len(window))
        line.append_text(window)
        if repeats:
            line.append(visible(f" ×{c.repeats}".ljust(count_width) if c.repeats > 1 else " " * count_width), style="bold")
        if source_width >= 8:
            source = Text("  " + visible(c.source.split(": ", 1)[-1]), style="dim")
            source.truncate(source_width + 2, overflow="ellipsis")
            line.append_text(source)
        text.append_text(line)
    return text


def effects_text(card: FeatureCard) -> Text:
    e = card.logit_effects
    text = Text("promotes   ", style="bold")
    for token, value in e.promoted:
        text.append(visible_token(token), style="green")
        text.append(f" {value:+.2f}  ")
    text.append("\nsuppresses ", style="bold")
    for token, value in e.suppressed:
        text.append(visible_token(token), style="red")
        text.append(f" {value:+.2f}  ")
    text.append("\nmetric (blank − newline), direct: ", style="bold")
    text.append(f"{e.metric_direct:+.3f} per unit of activation")
    return text


def summary_text(card: FeatureCard) -> Text:
    text = Text()
    text.append_text(feature_title(card.sae_id, card.feature, card.label))
    text.stylize("bold")
    text.append(visible(f"  ·  {card.model} {card.hook_name}  ·  {card.d_sae} features") + "\n")
    text.append(f"density {card.density:.3%} ({card.n_firing:,} of {card.n_tokens:,} tokens) · max activation {card.max_activation:.2f}\n")
    text.append("corpus: ")
    text.append(visible(card.corpus))
    if card.link:
        text.append("\n" + visible(card.link))
    return text


def axis_ticks(high: float, most: int = 6) -> tuple[list[float], list[str]]:
    """Ticks for an axis from 0 to ``high``: round steps (1, 2, 2.5 or 5 × 10^k), at least
    three ticks and at most ``most``, labelled with as few decimals as the step needs."""
    import math

    if not math.isfinite(high) or high <= 0:
        return [0.0], ["0"]
    raw = high / max(2, most - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    while high / step < 2 and step > power / 10:  # at least three ticks (0, step, 2·step)
        step /= 2
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if round(step / 10 ** math.floor(math.log10(step)), 6) == 2.5 else 0)
    values = [i * step for i in range(int(high / step + 1e-9) + 1)]
    return values, [f"{v:.{decimals}f}" for v in values]


def histogram_text(card: FeatureCard) -> Text:
    if not card.histogram_counts:
        return Text("histogram: the feature never fires on this corpus")
    edges = card.histogram_edges
    return Text(f"histogram of non-zero activations  0 {sparkline(card.histogram_counts)} {edges[-1]:.2f}")


def sample_text(card: FeatureCard, width: int = 100) -> Text:
    s = card.sample
    if s is None:
        return Text("")
    text = Text(visible(f"in sample {s.key}: "), style="bold")
    if s.rank is None:
        text.append("not among its attributed pairs" if s.attribution is None else "")
    else:
        text.append(visible(f"rank {s.rank}, attribution {s.attribution:+.3f} at pos {s.position}"))
    text.append("\n")
    text.append_text(strip_text(s.tokens, s.activations, width))
    return text


def strip_text(tokens, activations, width: int = 100) -> Text:
    """The sample's tokens, each tinted by the feature's activation there (the strongest reversed)."""
    text = Text()
    peak = max(activations, default=0.0) or 1.0
    for token, act in zip(tokens, activations):
        style = HIGHLIGHT if act >= 0.999 * peak and act > 0 else ("bold" if act >= 0.5 * peak else ("underline" if act > 0 else "dim"))
        text.append(visible_token(token), style=style)
    return text


def card_renderable(card: FeatureCard, width: int = 100) -> Group:
    """The whole card, for a console ``width`` columns wide."""
    parts = [summary_text(card), Text(""), contexts_lines(card.contexts, top_title(card.contexts), width)]
    for g in card.intervals:
        if g.contexts:
            parts.append(contexts_lines(g.contexts, f"Interval ({g.low:.2f}, {g.high:.2f}]: {g.share:.1%} of firings", width))
    parts += [Text(""), histogram_text(card), Text(""), effects_text(card)]
    if card.sample is not None:
        parts += [Text(""), sample_text(card, width)]
    return Group(*parts)
