"""Headers drop whole parts, highest rank first, and keep the key figures."""

from lister_tui.tui.header import Part, fit


PARTS = [Part("Circuit", 3), Part("short/Fruits/0", 2), Part("12 nodes, 30 edges", 1), Part("circuit 0.91, complete 0.12", 0), Part("grid", 4)]


def test_everything_when_it_fits():
    assert fit(PARTS, 200).plain == "Circuit · short/Fruits/0 · 12 nodes, 30 edges · circuit 0.91, complete 0.12 · grid"


def test_whole_parts_go_highest_rank_first():
    assert fit(PARTS, 70).plain == "short/Fruits/0 · 12 nodes, 30 edges · circuit 0.91, complete 0.12"
    assert fit(PARTS, 50).plain == "12 nodes, 30 edges · circuit 0.91, complete 0.12"
    assert fit(PARTS, 30).plain == "circuit 0.91, complete 0.12"


def test_key_figures_alone_are_cut_only_when_nothing_else_is_left():
    line = fit(PARTS, 10)
    assert line.cell_len <= 10 and line.plain.endswith("…")
