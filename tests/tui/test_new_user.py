"""What a new user meets first: the focus keys in the footer at 80 columns, and A saying what it did."""

from __future__ import annotations

import asyncio

from textual.widgets import Footer
from textual.widgets._footer import FooterKey, FooterLabel

from lister_tui.tui.explorer.controller import batch_attributed

from .conftest import settle


def test_footer_shows_the_focus_keys_at_80_columns(make_app):
    async def go():
        app = make_app(None)
        async with app.run_test(size=(80, 24)) as pilot:
            for _ in range(5):
                await pilot.pause(0.1)
            footer = app.screen.query_one(Footer)
            keys = {k.key: k for k in footer.query(FooterKey)}
            for key in ("S", "T", "F", "1", "2"):
                assert key in keys, f"{key} not in the footer"
            palette = next(k for k in keys.values() if k.has_class("-command-palette"))
            for key in ("S", "T", "F", "1", "2", "g", "a", "r"):
                region = keys[key].region
                assert region.width > 0 and region.right <= palette.region.x, (key, region, palette.region)
            label = next(lbl for lbl in footer.query(FooterLabel))
            assert "focus" in str(label.render()) and label.region.right <= palette.region.x
            # and they do what the footer says: S focuses the sample browser, T the tokens
            await pilot.press("S")
            assert app.focused is app.screen.query_one("#samples")
            await pilot.press("T")
            assert app.focused is app.screen.query_one("#base-view")

    asyncio.run(go())


def test_batch_attribution_says_what_it_did(make_app):
    async def go():
        app = make_app()
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            await pilot.press("A")
            await settle(app, pilot)
            n = len(app.workspace.samples)
            said = [m.text for m in app.messages]
            assert any(f"attributed {n} of {n} samples" in m and "dataset ranking" in m for m in said), said

    asyncio.run(go())


def test_batch_message_names_the_skipped_samples():
    assert "2 without a complete item skipped" in batch_attributed(4, 6, 3)
    assert "skipped" not in batch_attributed(6, 6, 3)


def test_batch_legend_is_a_line_of_its_own_not_drawn_over_the_bars(make_app):
    async def go():
        from textual_plotext import PlotextPlot

        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            await pilot.press("B")
            for _ in range(3):
                await pilot.pause(0.1)
            plots = list(app.screen.query(PlotextPlot))
            assert plots
            for plot in plots:
                drawn = plot.render().plain
                assert "█" in drawn and "base" not in drawn and "ablated" not in drawn
            legend = str(app.screen.query_one("#batch-legend").render())
            assert "base lists" in legend and "ablated" not in legend  # no runs yet: no ablated bars

    asyncio.run(go())


def test_selected_topics_carry_a_mark_not_only_a_colour(make_app):
    async def go():
        from lister_tui.tui.screens.generate import GenerateRequest
        from lister_tui.tui.widgets.check_list import SELECTED_MARK

        app = make_app(None)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            from lister_tui.tui.screens.generate import GenerateScreen

            app.push_screen(GenerateScreen(GenerateRequest(("short",), ("Fruits", "Rivers"), 1, 0, "code")))
            await pilot.pause(0.2)
            topics = app.screen.query_one("#topics")
            rows = {}
            for y in range(topics.size.height):
                line = topics.render_line(y).text
                for name in ("Fruits", "Rivers", "Animals", "Countries"):
                    if name in line:
                        rows[name] = line
            assert SELECTED_MARK in rows["Fruits"] and SELECTED_MARK in rows["Rivers"]
            assert SELECTED_MARK not in rows["Animals"] and SELECTED_MARK not in rows["Countries"]
            # unselected rows differ from selected ones in their characters, not only in colour
            assert rows["Fruits"].replace("Fruits", "") != rows["Animals"].replace("Animals", "")

    asyncio.run(go())


def test_features_table_uses_a_wide_terminal_for_labels(make_app):
    label = "the item marker after a city name, read by the end-of-list switch"

    async def label_width(size) -> tuple[int, str]:
        from lister_tui.tui.widgets import FeatureTable

        app = make_app()
        async with app.run_test(size=size) as pilot:
            await settle(app, pilot)
            await pilot.press("a")
            await settle(app, pilot)
            table = app.screen.query_one("#feature-table", FeatureTable)
            row = table.rows_shown[0]
            app.workspace.set_label(row.sae_id, row.feature, label)
            app.screen.refresh_features()
            await pilot.pause(0.2)
            column = table.columns["label"]
            shown = table.get_row_at(0)[-1].plain
            fits = column.width + sum(c.width for k, c in table.columns.items() if k != "label") <= table.size.width
            assert fits or column.width == 18  # narrow: the label column keeps its least width
            return column.width, shown

    narrow, _ = asyncio.run(label_width((80, 24)))
    wide, shown = asyncio.run(label_width((160, 48)))
    assert label in shown
    assert narrow == 18 and wide >= len(label) + 1  # the whole label shows at 160 columns, not its first 17 characters
