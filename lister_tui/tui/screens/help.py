"""The help screen: every key (as currently bound), the token markers, what the panes mean."""

from __future__ import annotations

import re

from rich.table import Table
from rich.text import Text

from lister_tui.safe_text import text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from lister_tui.tui.keymap import APP_KEYS, BATCH_KEYS, CARD_KEYS, CIRCUIT_KEYS, GRAPH_KEYS, MAIN_KEYS, MATRIX_KEYS, TOKEN_KEYS, key_label
from lister_tui.tui.widgets.token_view import BLANK, EMPTY, NEWLINE, OTHER_SPACE, TAB

_LEGEND = f"""\
[b]Token view[/b]  tokens alternate backgrounds so every boundary shows; {BLANK} a blank, {NEWLINE} a line break,
{TAB} a tab, {OTHER_SPACE} other whitespace, {EMPTY} an empty token. Items are numbered. The [black on #ffd700] filler blank [/]
before a line break is yellow, the [white on #d700af] attribution position [/] (the last item's last token) magenta, the
[black on #5faf5f] end token [/] green. Underlined tokens carry an ablated feature; │ marks where a regeneration
starts. In the compare view, tokens that differ from the base are orange.
[b]Metric[/b]  logit(blank) − logit(↵) at each position, i.e. for the token that follows: red bars (+) favour
a filler blank, blue (−) a line break. Base and ablated curves share columns (absolute positions).
[b]Messages[/b]  appear in one line under the panes for a few seconds; M lists every message so far.
[b]Features[/b]  attribution = activation × gradient of the metric at the attribution position; err = the SAE
error node's share. 'ab' shows @ (ablated at its position) or ∀ (at every position).
[b]Regenerate[/b]  as the study: from tokens[:attribution position] with the sample's own seed; the base is the
same regeneration without the ablation. R switches to regenerating from the prompt.
[b]Deltas[/b]  (Ablation tab) base = the regeneration without the ablation, abl = with it. items, tokens: of the
regenerated list; m@last: the metric at the regenerated list's own last item (the plain model's reading, not the
ablation's effect); m@attr: the metric at the sample's attribution position on its own tokens, without and with
the ablation (the ablation's direct effect); rep: repeated items; div: the Shannon index −Σ p ln p of the list's item names (ln of the count when all differ); end: reached the end token.
[b]Matrix[/b]  (x) columns are samples, labelled by template (s short, l long, u unspecified) and topic (A, B, …:
spelled out under the grid; g groups the columns by template); the colour legend gives the max activation each
colour stands for (darkest: 0).
[b]Batch[/b]  (B) per template, a histogram of items per list: the session's lists (base) and every run's ablated
regeneration, n and means; paired Δ = ablated − the run's own base. From a sweep: its Δitems ± sd per condition.
Over SSH, set COLORTERM=truecolor (or TEXTUAL_COLOR_SYSTEM=256) if colours look wrong; y copies via OSC 52."""
# one paragraph per [b]section[/b], wrapped by the terminal rather than at fixed columns
LEGEND = re.sub(r"\n(?!\[b\]|Over SSH)", " ", _LEGEND)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close", id="lister.help.close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 110; max-width: 100%; height: 90%; border: thick $primary; background: $panel; padding: 0 1; }
    """

    def __init__(self, keymap: dict[str, str] | None = None) -> None:
        super().__init__()
        self.keymap = keymap or {}

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 1), show_header=True, header_style="bold", expand=True)
        table.add_column("key", no_wrap=True)
        table.add_column("does")
        table.add_column("id", style="dim", no_wrap=True)
        for group, specs in (("explorer", APP_KEYS + MAIN_KEYS), ("token view", TOKEN_KEYS), ("expression matrix", MATRIX_KEYS), ("batch view", BATCH_KEYS), ("feature card", CARD_KEYS), ("circuit view", CIRCUIT_KEYS), ("graph view", GRAPH_KEYS)):
            table.add_row(Text(group, style="bold underline"), "", "")
            for s in specs:
                table.add_row(text(key_label(s, self.keymap)), text(s.help), text(s.id))  # keys can come from settings.json
        table.add_row("ctrl+p", "Command palette: every action by name", "")
        table.add_row("tab", "Next pane", "")
        with VerticalScroll():
            yield Static("[b]lister-tui[/b]: why lists end  ·  esc closes\n")
            yield Static(LEGEND)  # safe-text: our own constant: its markup is meant
            yield Static(table)
