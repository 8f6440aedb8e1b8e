"""CheckList: a SelectionList whose selected rows carry a mark, not only a colour.

Textual draws the same ``X`` in every row's button and tells selected from not selected by
colour alone, which a colour-blind user or a monochrome terminal cannot see. Here a selected
row shows ``✓`` and an unselected one a blank button.
"""

from __future__ import annotations

from rich.segment import Segment
from textual.strip import Strip
from textual.widgets import SelectionList
from textual.widgets._option_list import OptionDoesNotExist

SELECTED_MARK, UNSELECTED_MARK = "✓", " "


class CheckList(SelectionList):
    def render_line(self, y: int) -> Strip:
        line = super().render_line(y)
        try:
            selection = self.get_option_at_index(self.scroll_offset.y + y)
        except OptionDoesNotExist:
            return line
        segments = list(line)
        if len(segments) < 2:
            return line
        mark = SELECTED_MARK if selection.value in self._selected else UNSELECTED_MARK
        inner = segments[1]
        segments[1] = Segment(mark, inner.style, inner.control)
        return Strip(segments, line.cell_length)
