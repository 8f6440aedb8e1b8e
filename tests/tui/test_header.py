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


def test_histogram_axis_has_several_round_ticks():
    from lister_tui.tui.card_render import axis_ticks

    values, labels = axis_ticks(0.7768158912658691)
    assert labels == ["0.0", "0.2", "0.4", "0.6"] and values[-1] <= 0.7768158912658691
    for high in (0.0013, 0.05, 1.0, 3.2, 12.5, 250.0, 7e4):
        values, labels = axis_ticks(high)
        assert 3 <= len(values) <= 6 and values[-1] <= high * (1 + 1e-9), (high, labels)
        assert all(len(label) <= 7 for label in labels) and len(set(labels)) == len(labels), labels
    assert axis_ticks(0.0) == ([0.0], ["0"])
