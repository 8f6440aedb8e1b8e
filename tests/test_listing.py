"""List structure and metrics, on hand-written token sequences with known answers."""

from __future__ import annotations

import math

import pytest

from lister_tui.core.engine.listing import items_from_text, list_metrics, parse_structure, shannon_index, topic_diversity
from lister_tui.core.engine.loading import TokenIds, single_token_id
from lister_tui.core.errors import ListerError

# a toy vocabulary: 0 pad, 1 "-", 2 "\n", 3 " ", 4 end, 5.. words
IDS = TokenIds(blank=3, newline=2, item_marker=1, stops=(4,), bos=None)
WORDS = {5: " Apple", 6: " Pear", 7: " Fig", 8: " Kiwi", 9: " Tree", 1: "-", 2: "\n", 3: " ", 4: "<end_of_turn>", 0: "<pad>"}


def decode(ids):
    return "".join(WORDS[i] for i in ids if i != 4)


def test_structure_items_fillers_end_and_attribution_position():
    #        0  1  2  3  4  5  6  7  8  9 10 11 12 13
    tokens = [9, 1, 5, 2, 1, 6, 9, 3, 2, 1, 7, 3, 2, 4]
    s = parse_structure(tokens, IDS, first_marker_pos=1)
    assert [(i.marker_pos, i.newline_pos, i.last_token_pos, i.has_filler) for i in s.items] == [
        (1, 3, 2, False),
        (4, 8, 6, True),
        (9, 12, 10, True),
    ]
    assert s.filler_positions == (7, 11)
    assert s.end_pos == 13
    assert s.attribution_pos == 10
    assert s.filler_items == (1, 2)


def test_cut_off_list_has_no_end_and_counts_the_partial_item():
    tokens = [9, 1, 5, 2, 1, 6]
    s = parse_structure(tokens, IDS, 1)
    assert s.end_pos is None and s.n_items == 2
    assert s.attribution_pos == 2  # only complete items define it


def test_list_metrics_repeats_and_diversity():
    tokens = [9, 1, 5, 2, 1, 5, 2, 1, 6, 3, 2, 4]
    m = list_metrics(tokens, prompt_len=2, ids=IDS, decode=decode)
    assert (m.n_items, m.repeated_items, m.filler_count, m.reached_end, m.n_tokens) == (3, 1, 1, True, 10)
    assert m.diversity == pytest.approx(-(2 / 3) * math.log(2 / 3) - (1 / 3) * math.log(1 / 3))


def test_text_items_and_shannon():
    assert items_from_text(" Apple\n- Pear \n- Fig") == ["Apple", "Pear", "Fig"]
    assert shannon_index(["a", "b", "c"]) == pytest.approx(math.log(3))
    assert shannon_index([]) == 0.0
    assert topic_diversity([["a", "b"], ["a", "c"]]) == pytest.approx(shannon_index(["a", "b", "a", "c"]))


def test_multi_token_metric_string_is_rejected(tiny):
    with pytest.raises(ListerError, match="'Provide me'.*2 tokens"):
        single_token_id(tiny.tokenizer, "Provide me")


# List styles: "*" (one marker token, as "-") and numbered "1." (digit tokens, then the dot).
# toy ids: 10 "*", 11 ".", 12 "1", 13 "2", 14 "1" "0" as "10" would be one token: 14 "10"
STAR = TokenIds(blank=3, newline=2, item_marker=10, stops=(4,), bos=None, style="*")
NUMBERED = TokenIds(blank=3, newline=2, item_marker=11, stops=(4,), bos=None, style="1.", digit_ids=frozenset({12, 13, 14}))
WORDS.update({10: "*", 11: ".", 12: "1", 13: "2", 14: "10"})


@pytest.mark.parametrize(
    ("ids", "tokens", "first", "expected_items", "attribution_pos"),
    [
        # "-": the study's rule, last item "- Fig ␣\n" -> its last token skips the blank
        (IDS, [9, 1, 5, 2, 1, 7, 3, 2, 4], 1, [(1, 3, 2), (4, 7, 5)], 5),
        # "*": the same rule with another marker token
        (STAR, [9, 10, 5, 2, 10, 6, 7, 2, 10, 8, 3, 2, 4], 1, [(1, 3, 2), (4, 7, 6), (8, 11, 9)], 9),
        # "1.": items open at the dot after a line's digit tokens ("2.", "10."); a prose line is no item
        (NUMBERED, [12, 11, 5, 2, 13, 11, 6, 3, 2, 14, 11, 7, 2, 9, 11, 8, 2, 4], 1, [(1, 3, 2), (5, 8, 6), (10, 12, 11)], 11),
    ],
    ids=["dash", "star", "numbered"],
)
def test_attribution_position_rule_for_each_list_style(ids, tokens, first, expected_items, attribution_pos):
    s = parse_structure(tokens, ids, first_marker_pos=first)
    assert [(i.marker_pos, i.newline_pos, i.last_token_pos) for i in s.items] == expected_items
    assert s.attribution_pos == attribution_pos
    assert s.end_pos == len(tokens) - 1


def test_numbered_dot_inside_an_item_opens_nothing():
    # "1. Tree . Fig\n2. Kiwi\n": the dot inside the first item is text, not a marker
    tokens = [12, 11, 9, 11, 7, 2, 13, 11, 8, 2, 4]
    s = parse_structure(tokens, NUMBERED, 1)
    assert [(i.marker_pos, i.last_token_pos) for i in s.items] == [(1, 4), (7, 8)]


@pytest.mark.parametrize(
    ("style", "continuation", "names"),
    [
        ("-", " Apple\n- Pear \n-Fig\nnot an item\n", ["Apple", "Pear", "Fig"]),
        ("*", " Apple\n* Pear\n- dash\n", ["Apple", "Pear"]),
        ("1.", " Apple\n2. Pear\n10. Fig\nSure. Done\n", ["Apple", "Pear", "Fig"]),
    ],
)
def test_items_from_text_for_each_style(style, continuation, names):
    assert items_from_text(continuation, style) == names


def test_list_metrics_use_the_style_of_the_token_ids():
    tokens = [12, 11, 5, 2, 13, 11, 5, 2, 13, 11, 6, 2, 4]
    m = list_metrics(tokens, 2, NUMBERED, decode)
    assert m.n_items == 3 and m.repeated_items == 1 and m.reached_end


def test_a_trailing_empty_marker_line_is_no_item_and_is_counted_on_its_own():
    from lister_tui.core.engine.listing import empty_items_from_text, empty_marker_lines

    # "- Apple\n- Pear\n- \n<end>": two items, then a "- " line the model opened and left empty
    tokens = [9, 1, 5, 2, 1, 6, 2, 1, 3, 2, 4]
    m = list_metrics(tokens, prompt_len=2, ids=IDS, decode=decode)
    assert (m.n_items, m.empty_items) == (2, 1)
    assert empty_marker_lines(tokens, IDS, parse_structure(tokens, IDS, 1), 1) == 1  # the same from the tokens alone
    # a lone "-" right before the end, and one in the middle, count too; a list without one has 0
    assert empty_items_from_text(" Apple\n-\n- Pear\n-") == 2
    assert empty_items_from_text(" Apple\n- Pear") == 0
    assert list_metrics([9, 1, 5, 2, 1, 6, 2, 4], 2, IDS, decode).empty_items == 0
    assert empty_items_from_text(" Fig\n2. \n3. Kiwi", "1.") == 1
