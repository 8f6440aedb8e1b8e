"""A generation, token by token: boundaries, whitespace and list structure made visible."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.style import Style
from rich.text import Text
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from lister_tui.core.engine.listing import ListStructure

# The marker vocabulary (whitespace and control characters) lives with the one rule for untrusted
# text: token strings come from a model's or a session's vocabulary and may hold terminal escapes.
from lister_tui.safe_text import BLANK, EMPTY, NEWLINE, OTHER_SPACE, TAB  # noqa: F401
from lister_tui.safe_text import visible as visible_text
from lister_tui.safe_text import visible_token as visible
from lister_tui.tui.keymap import TOKEN_KEYS, bindings
from lister_tui.tui.theme import colour, metric_colour, metric_scale


@dataclass
class TokenDoc:
    """What a token view shows; every field comes from the engine's records."""

    title: str
    ids: tuple[int, ...]
    strings: list[str]
    prompt_len: int
    structure: ListStructure | None = None
    curve: tuple[float, ...] | None = None
    marks: frozenset[int] = frozenset()  # positions where a feature is ablated
    every_marked: bool = False  # some feature is ablated at every position
    prefix_len: int | None = None  # a regeneration's prefix (shown with a bar after it)
    diff_against: tuple[int, ...] | None = None  # tokens of the other side (compare view)
    streaming: bool = False
    info: str = ""  # a short line under the title (deltas, state)
    # shorter (title, info) pairs, most complete first, for a view too narrow for title and info:
    # the first whose lines both fit is shown (else the last, cut)
    narrow_headers: tuple[tuple[str, str], ...] = ()

    def header_for(self, width: int) -> tuple[str, str]:
        """The (title, info) shown in ``width`` cells (as made visible), before any cutting."""
        options = ((self.title, self.info), *self.narrow_headers)
        for title, info in options:
            if len(visible_text(title)) <= width and len(visible_text(info)) <= width:
                return title, info
        return options[-1]


@dataclass
class _Cell:
    pos: int | None
    text: str
    style: Style


@dataclass
class _Layout:
    lines: list[list[_Cell]] = field(default_factory=list)
    where: dict[int, tuple[int, int]] = field(default_factory=dict)  # pos -> (line, column)


class TokenView(Widget, can_focus=True):
    """Tokens laid out one item per line, with a token cursor."""

    BINDINGS = bindings(TOKEN_KEYS)

    DEFAULT_CSS = """
    TokenView { height: 1fr; width: 1fr; padding: 0 1; background: $surface; }
    TokenView:focus { background: $boost; }
    """

    cursor: reactive[int] = reactive(0)
    show_prompt: reactive[bool] = reactive(False)
    metric_colours: reactive[bool] = reactive(False)

    class CursorMoved(Message):
        def __init__(self, view: "TokenView", pos: int) -> None:
            super().__init__()
            self.view = view
            self.pos = pos

        @property
        def control(self) -> "TokenView":
            return self.view

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.doc: TokenDoc | None = None
        self._top = 0
        # After a jump or a new document the cursor's line is centred, so what the view
        # shows depends on where the cursor is, not on which frames happened to render.
        self._centre_next = False
        # What the last frame showed: the layout lines in view and the cursor's line.
        self.shown_lines = range(0)
        self.cursor_line = 0
        self._token_layout: tuple[int, _Layout] | None = None
        self.placeholder = "No sample yet: press g to generate."

    # --- data ---------------------------------------------------------------

    def set_doc(self, doc: TokenDoc | None, keep_cursor: bool = True) -> None:
        self.doc = doc
        self._token_layout = None
        if doc is not None:
            if not keep_cursor or not self.first_pos <= self.cursor < len(doc.ids):
                target = doc.structure.attribution_pos if doc.structure and doc.structure.attribution_pos else self.first_pos
                self.cursor = min(max(target, self.first_pos), max(len(doc.ids) - 1, 0))
                self._centre_next = True
        self.refresh()

    @property
    def first_pos(self) -> int:
        if self.doc is None or self.show_prompt:
            return 0
        return max(self.doc.prompt_len - 1, 0)

    def watch_cursor(self, old: int, new: int) -> None:
        self.refresh()
        self.post_message(self.CursorMoved(self, new))

    def watch_show_prompt(self) -> None:
        self._token_layout = None
        self._top = 0
        if self.doc is not None and self.cursor < self.first_pos:
            self.cursor = self.first_pos
        self.refresh()

    def watch_metric_colours(self) -> None:
        self._token_layout = None
        self.refresh()

    def restyle(self) -> None:
        """Redraw with the current theme's colours (after a theme change)."""
        self._token_layout = None
        self.refresh()

    # --- actions ------------------------------------------------------------

    def action_move(self, step: int) -> None:
        if self.doc is None or not self.doc.ids:
            return
        self.cursor = max(self.first_pos, min(len(self.doc.ids) - 1, self.cursor + step))

    def action_line(self, step: int) -> None:
        layout = self._get_layout(self._text_width())
        if self.doc is None or self.cursor not in layout.where:
            return
        line, col = layout.where[self.cursor]
        target = line + step
        if not 0 <= target < len(layout.lines):
            return
        candidates = [(abs(c - col), p) for p, (l, c) in layout.where.items() if l == target]
        if candidates:
            self.cursor = min(candidates)[1]

    def centre_on(self, pos: int) -> None:
        """Put the cursor on ``pos`` (clamped to the document) and centre its line."""
        if self.doc is None or not self.doc.ids:
            return
        self.cursor = max(self.first_pos, min(len(self.doc.ids) - 1, pos))
        self._centre_next = True
        self.refresh()

    def action_jump(self, where: str) -> None:
        if self.doc is None or not self.doc.ids:
            return
        if where == "start":
            self.cursor = self.first_pos
        elif where == "end":
            self.cursor = len(self.doc.ids) - 1
        elif where == "attribution" and self.doc.structure and self.doc.structure.attribution_pos is not None:
            self.cursor = self.doc.structure.attribution_pos
        self._centre_next = True
        self.refresh()

    # --- layout -------------------------------------------------------------

    def _text_width(self) -> int:
        return max(self.content_region.width, 8)

    def _styles(self) -> dict:
        app = self.app
        fg = colour(app, "token-fg")
        return {
            "a": Style(color=fg, bgcolor=colour(app, "token-a")),
            "b": Style(color=fg, bgcolor=colour(app, "token-b")),
            "prompt": Style(color=colour(app, "prompt-fg")),
            "filler": Style(color=colour(app, "filler-fg"), bgcolor=colour(app, "filler"), bold=True),
            "attribution": Style(color=colour(app, "attribution-fg"), bgcolor=colour(app, "attribution"), bold=True),
            "end": Style(color=colour(app, "end-token-fg"), bgcolor=colour(app, "end-token"), bold=True),
            "label": Style(color=colour(app, "marker-fg"), bold=True),
            "diff": Style(color=colour(app, "diff-fg"), bold=True),
            "mark": Style(underline=True, bold=True),
            "bar": Style(color=colour(app, "attribution"), bold=True),
            "palette": metric_scale(app),
        }

    def _token_style(self, pos: int, styles: dict[str, Style], scale: float) -> Style:
        doc = self.doc
        assert doc is not None
        st = doc.structure
        if pos < doc.prompt_len - 1:
            style = styles["prompt"]
        else:
            style = styles["a"] if pos % 2 == 0 else styles["b"]
            if self.metric_colours and doc.curve is not None and pos < len(doc.curve):
                style = style + Style(bgcolor=metric_colour(doc.curve[pos], scale, styles.get("palette", ())))
            if doc.diff_against is not None and (pos >= len(doc.diff_against) or doc.diff_against[pos] != doc.ids[pos]):
                style = style + styles["diff"]
        if st is not None:
            if pos in st.filler_positions:
                style = styles["filler"]
            if st.end_pos == pos:
                style = styles["end"]
            if st.attribution_pos == pos:
                style = styles["attribution"]
        if pos in doc.marks:
            style = style + styles["mark"]
        return style

    def _get_layout(self, width: int) -> _Layout:
        if self._token_layout is not None and self._token_layout[0] == width:
            return self._token_layout[1]
        layout = _Layout()
        doc = self.doc
        if doc is None:
            return layout
        styles = self._styles()
        scale = max((abs(v) for v in (doc.curve or ())), default=0.0)
        markers = {item.marker_pos: item.index for item in (doc.structure.items if doc.structure else ())}
        line: list[_Cell] = []
        used = 0
        indent = 3

        def new_line() -> None:
            nonlocal line, used
            layout.lines.append(line)
            line, used = [], 0

        for pos in range(self.first_pos, len(doc.ids)):
            if pos in markers and pos >= doc.prompt_len - 1:
                if used:
                    new_line()
                label = f"{markers[pos] + 1:>2} "
                line.append(_Cell(None, label, styles["label"]))
                used += len(label)
            if doc.prefix_len is not None and pos == doc.prefix_len and pos > 0:
                line.append(_Cell(None, "│", styles["bar"]))
                used += 1
            text = visible(doc.strings[pos])
            if used and used + len(text) > width:
                new_line()
                line.append(_Cell(None, " " * indent, Style()))
                used = indent
            text = text[: max(width - used, 1)]
            layout.where[pos] = (len(layout.lines), used)
            line.append(_Cell(pos, text, self._token_style(pos, styles, scale)))
            used += len(text)
            if "\n" in doc.strings[pos]:
                new_line()
        if line:
            new_line()
        self._token_layout = (width, layout)
        return layout

    def render(self) -> Text:
        doc = self.doc
        if doc is None:
            return Text(self.placeholder, style="italic")
        width = self._text_width()
        height = max(self.content_region.height, 1)
        title, info = doc.header_for(width)
        header = Text(visible_text(title)[:width], style="bold")
        if doc.streaming:
            header.append(" ▸ streaming", style="bold italic")
        head_lines = [header]
        if info:
            head_lines.append(Text(visible_text(info)[:width], style="italic"))
        layout = self._get_layout(width)
        room = max(height - len(head_lines), 1)
        cursor_line = layout.where.get(self.cursor, (0, 0))[0]
        if self._centre_next:
            self._top = cursor_line - room // 2
            self._centre_next = False
        elif cursor_line < self._top:
            self._top = cursor_line
        elif cursor_line >= self._top + room:
            self._top = cursor_line - room + 1
        self._top = max(0, min(self._top, max(len(layout.lines) - room, 0)))
        self.shown_lines = range(self._top, min(self._top + room, len(layout.lines)))
        self.cursor_line = cursor_line
        out = Text()
        for h in head_lines:
            out.append_text(h)
            out.append("\n")
        cursor_style = Style(reverse=True, bold=True)
        for i, cells in enumerate(layout.lines[self._top : self._top + room]):
            if i:
                out.append("\n")
            for cell in cells:
                style = cell.style + cursor_style if cell.pos is not None and cell.pos == self.cursor else cell.style
                out.append(cell.text, style=style)  # safe-text: cells are built from visible_token(...)
        return out

    def on_resize(self) -> None:
        self._token_layout = None
