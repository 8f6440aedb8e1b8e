"""The explorer as a daily instrument: nothing is lost, every flow finishes, state is on screen.

Each test drives one flow with keys, as a user would, on the shipped lister-tiny."""

from __future__ import annotations

import asyncio

from lister_tui.core.sessions.store import SessionStore, read_session
from lister_tui.tui.app import ListerApp
from lister_tui.tui.screens.generate import GenerateRequest
from lister_tui.tui.widgets import SampleTable

from .conftest import SMALL, settle
from .test_sessions_ui import saved


def run(coro):
    return asyncio.run(coro)


async def _top5_run(app, pilot) -> str:
    await pilot.press("a")
    await settle(app, pilot)
    await pilot.press("K", "r")
    await settle(app, pilot)
    return app.main.state.current


def test_g_adds_a_batch_and_keeps_runs(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    folder = tmp_path / "sessions"

    async def go():
        app = ListerApp(tiny, initial=SMALL, session=SessionStore(folder / "s"), sessions_dir=folder)
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            key = await _top5_run(app, pilot)
            assert len(app.workspace.state(key).runs) == 1
            # the same batch again (the dialog opens with the last request): nothing dropped
            await pilot.press("g")
            await pilot.pause()
            await pilot.press("ctrl+s")
            await settle(app, pilot)
            st = app.workspace.state(key)
            assert len(app.workspace.samples) == 4 and len(st.runs) == 1 and st.attribution is not None
            # a new batch adds its samples beside the old ones
            app.main.controller.start_generation(GenerateRequest(("short",), ("Fruits",), 1, 7, "code"))
            await settle(app, pilot)
            assert len(app.workspace.samples) == 5 and len(app.workspace.state(key).runs) == 1
            assert app.main.query_one("#samples", SampleTable).row_count == 5
            await saved(app, pilot)
        return key

    key = run(go())
    ws = read_session(folder / "s").workspace
    assert len(ws.samples) == 5 and len(ws.state(key).runs) == 1


def test_remove_asks_and_undo_brings_it_back_after_a_save(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    folder = tmp_path / "sessions"

    async def go():
        app = ListerApp(tiny, initial=SMALL, session=SessionStore(folder / "s"), sessions_dir=folder)
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            key = await _top5_run(app, pilot)
            await pilot.press("delete")
            await pilot.pause()
            await pilot.press("n")  # asked, and kept
            await pilot.pause()
            assert key in app.workspace.samples
            await pilot.press("delete")
            await pilot.pause()
            await pilot.press("y")
            await settle(app, pilot)
            assert key not in app.workspace.samples and app.main.state.current != key
            assert app.main.query_one("#samples", SampleTable).row_count == 3
            await saved(app, pilot)
            on_disk = read_session(folder / "s").workspace
            assert key not in on_disk.samples and len(on_disk.removed[key].runs) == 1
            await pilot.press("u")
            await settle(app, pilot)
            assert app.main.state.current == key and len(app.workspace.state(key).runs) == 1
            assert app.main.query_one("#samples", SampleTable).row_count == 4
            await saved(app, pilot)

    run(go())
    assert len(read_session(folder / "s").workspace.samples) == 4


def _messages(app) -> list[str]:
    return [m.text for m in app.messages]


def test_top5_regenerates_from_the_prompt(make_app):
    """a, K, R, r: pairs past the prompt switch to every position (∀), said once, and the run succeeds."""

    async def go():
        app = make_app()
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            key = await _top5_run(app, pilot)  # a K r: from the attribution position
            await pilot.press("R")
            await pilot.pause()
            st = app.workspace.state(key)
            prompt_len = st.sample.prompt_len
            assert all(c.mode == "every" for c in st.choices if c.pos >= prompt_len)
            assert any("ablated at every position (∀)" in m for m in _messages(app))
            await pilot.press("r")
            await settle(app, pilot)
            assert len(st.runs) == 2 and not st.runs[-1].from_attribution_pos
            assert "failed" not in app.main.state.regen_state and "regenerated (5 features)" in app.main.state.regen_state
            # K with the prompt as prefix: the same rule on the way in
            await pilot.press("c", "K")
            await pilot.pause()
            assert len(st.choices) == 5 and all(c.mode == "every" for c in st.choices if c.pos >= prompt_len)
            # e cannot put a pair back at a position outside the prefix
            await pilot.press("2")
            await pilot.pause()
            app.main.query_one("#choices").focus()
            await pilot.press("e")
            await pilot.pause()
            assert all(c.mode == "every" for c in st.choices if c.pos >= prompt_len)

    run(go())


def test_c_clears_status_and_deltas_and_d_says_its_state(make_app):
    async def go():
        app = make_app()
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            key = await _top5_run(app, pilot)
            screen = app.main
            ablated = screen.query_one("#ablated-view")
            assert ablated.display and "regenerated" in str(screen.query_one("#status").render())
            await pilot.press("d")  # right after r: d is the user's mode, said
            await pilot.pause()
            assert not ablated.display and any("compare view off" in m for m in _messages(app))
            await pilot.press("r")
            await settle(app, pilot)
            assert not ablated.display, "a run keeps the user's compare mode"
            await pilot.press("d")
            await pilot.pause()
            assert ablated.display and any("compare view on" in m for m in _messages(app))
            await pilot.press("c")
            await pilot.pause()
            status = str(screen.query_one("#status").render())
            assert "regenerated" not in status
            assert "no regeneration" in str(screen.query_one("#deltas").render())
            assert not ablated.display
            assert len(app.workspace.state(key).runs) == 2  # cleared from view, kept in the session

    run(go())


def test_state_is_on_screen_at_80x24(make_app):
    """Titled panes carry the state; s writes the SAE into the filter; delta labels fit; '1 feature'."""
    from textual.widgets import Input, TabbedContent

    async def go():
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            screen = app.main
            key = await _top5_run(app, pilot)
            assert screen.query_one("#samples").border_title == "samples 4"
            title = str(screen.tokens.border_title)
            assert key.split("@")[0] in title and "base | ablated" in title and "attr pos" in title
            assert str(screen.query_one("#tabs", TabbedContent).get_tab("ablation").label) == "Interventions 5"
            assert str(screen.query_one("#status").render()).startswith("not saved · lister-tiny")
            box = screen.features.query_one("#filter", Input)
            await pilot.press("s")
            assert box.value.split() == ["sae:res_0"]
            await pilot.press("s")
            await pilot.pause()
            assert box.value.split() == ["sae:res_1"]
            assert {r.sae_id for r in screen.features.table.rows_shown} == {"res_1"}
            await pilot.press("2")
            await pilot.pause()
            deltas = screen.query_one("#deltas")
            lines = [line.text for line in deltas.render_lines(deltas.region.reset_offset)]
            labels = [line.split()[0] for line in lines if line.strip()]
            assert lines[0].strip() == "one draw (n=1)"  # a single regeneration is labelled as one draw
            assert labels[1:3] == ["base", "items"] and len(labels) == len(set(labels)), "a label wrapped onto two lines"
            # one pair, one run: "1 feature"
            await pilot.press("c", "1")
            await pilot.pause()
            screen.features.table.focus()
            await pilot.press("space", "r")
            await settle(app, pilot)
            assert "regenerated (1 feature)" in str(screen.query_one("#status").render())

    run(go())


def test_startup_says_it_is_sampling_and_answers_keys(make_app, monkeypatch):
    """While the first batch samples: no 'no sample', and keys that need one answer 'loading…'."""
    import threading

    from lister_tui.tui.explorer import controller as controller_module
    from lister_tui.tui.widgets import TokenView

    gate = threading.Event()
    real = controller_module.sample_lists

    def held(*args, **kwargs):
        gate.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(controller_module, "sample_lists", held)

    async def go():
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            base = app.main.query_one("#base-view", TokenView)
            assert base.placeholder.startswith("Sampling the first batch")
            assert "sampling the first batch" in str(app.main.tokens.border_title)
            await pilot.press("a", "K", "r")
            await pilot.pause()
            messages = _messages(app)
            assert sum(m.startswith("loading…") for m in messages) == 3 and not any("no sample" in m for m in messages)
            gate.set()
            await settle(app, pilot)
            assert app.main.state.current is not None and base.doc is not None

    run(go())


def test_messages_show_in_one_line_under_the_panes_and_m_lists_them(make_app):
    """At 80×24 a message never covers the features table: no toast, one line under the panes, which
    c clears; M lists every message; the ablation list keeps SAE, feature, position and mode in view."""
    from lister_tui.tui.screens.messages import MessagesScreen
    from lister_tui.tui.widgets.message_line import MessageLine

    async def go():
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            screen = app.main
            await pilot.press("a")
            await settle(app, pilot)
            await pilot.press("K")
            await pilot.pause()
            line = screen.query_one(MessageLine)
            assert line.display and "top-5" in line.text
            assert not list(app.screen.query("Toast")), "a toast covers the panes"
            table = screen.features.table
            assert not line.region.overlaps(table.region) and line.region.y > table.region.y
            assert table.region.height >= 5  # the features table keeps its rows
            # the interventions list at 80 columns: each pair's feature and how it is changed stay
            # visible; its mode and position come next (the table scrolls to them)
            await pilot.press("2")
            await pilot.pause()
            choices = screen.query_one("#choices")
            rendered = [strip.text for strip in choices.render_lines(choices.region.reset_offset)]
            header = rendered[0].split()
            assert header[:3] == ["SAE", "feat", "kind"]
            first = app.workspace.state(screen.state.current).choices[0]
            assert rendered[1].split()[:3] == [first.sae_id, str(first.feature), "zero"]
            assert [str(c.label).strip() for c in choices.columns.values()][3] == "m pos"
            await pilot.press("c")
            await pilot.pause()
            assert not line.display and not line.text
            await pilot.press("M")
            await pilot.pause()
            assert isinstance(app.screen, MessagesScreen)
            title = str(app.screen.query("Static").first().render())
            assert "top-5" in " ".join(m.text for m in app.screen.entries) and title.startswith("Messages (")

    run(go())
