"""The Interventions tab and the batch experiment (X), driven with keys on lister-tiny."""

from __future__ import annotations

import asyncio

from lister_tui.core.sessions.workspace import AblationChoice
from lister_tui.core.study.intervention_batch import CONTROL, INTERVENED

from .conftest import settle


def test_k_cycles_the_kind_brackets_step_the_value_and_r_regenerates_under_it(make_app):
    async def go():
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            await pilot.press("a")
            await settle(app, pilot)
            await pilot.press("space")  # the features table's first row on
            await pilot.press("k", "right_square_bracket")
            key = app.main.state.current
            (choice,) = app.workspace.state(key).choices
            assert (choice.kind, choice.value) == ("scale", 0.75)
            await pilot.press("k", "k")  # clamp, then steer
            (choice,) = app.workspace.state(key).choices
            assert (choice.kind, choice.value) == ("steer", 2.0)
            await pilot.press("2", "r")
            await settle(app, pilot)
            (run,) = app.workspace.state(key).runs
            assert run.choices[0].kind == "steer" and run.ablated.tokens[: run.ablated.prefix_len] == run.base.tokens[: run.base.prefix_len]

    asyncio.run(go())


def test_x_runs_the_batch_experiment_and_keeps_it_in_the_session(make_app, tiny):
    from lister_tui.core.engine.prompts import prompt_ids
    from lister_tui.tui.screens.experiment import ExperimentScreen

    async def go():
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            key = app.main.state.current
            ids = prompt_ids(tiny, "short", "Fruits")
            pos = ids.index(tiny.tokenizer.convert_tokens_to_ids(" short"))
            app.workspace.toggle(key, AblationChoice("res_0", 378, pos, "every", "zero", 0.0))
            app.workspace.toggle(key, AblationChoice("res_0", 382, pos, "every", "zero", 0.0))
            await pilot.press("X")
            await pilot.pause()
            await pilot.press("enter")  # the scope dialog's defaults: every list × 4 seeds
            await pilot.pause()
            assert isinstance(app.screen, ExperimentScreen)
            await settle(app, pilot)
            (exp,) = app.workspace.experiments
            assert exp.done and exp.units_total == 16
            rows = {r["condition"]: r for r in exp.summary()}
            assert rows[INTERVENED]["n"] == rows[CONTROL]["n"] == 16
            shown = app.export_screenshot()  # what is on screen, at 80x24
            assert "yours" in shown and "control" in shown and "Δitems" in shown and "done" in shown
            await pilot.press("escape")
            await pilot.pause()
            assert len(app.workspace.experiments) == 1  # kept once

    asyncio.run(go())


def test_v_makes_a_clamp_relative_to_the_cards_maximum_found_in_a_worker(make_app, tmp_path, monkeypatch):
    """k to clamp, v: the row waits, a worker finds the maximum over the cards' corpus, the row shows
    ``=0.5×max=<value>``, ] steps k, r regenerates under k × the maximum, and the run keeps both."""
    import numpy as np

    from lister_tui.core.study.cards import max_activations
    from lister_tui.core.study.corpus import default_corpus

    monkeypatch.setenv("LISTER_TUI_CACHE", str(tmp_path))

    async def go():
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            await pilot.press("a")
            await settle(app, pilot)
            await pilot.press("space", "k", "k")  # on, scale, clamp
            key = app.main.state.current
            await pilot.press("v")
            (choice,) = app.workspace.state(key).choices
            assert choice.relative and choice.value == 0.5
            await settle(app, pilot)  # the corpus pass ran in a worker
            (choice,) = app.workspace.state(key).choices
            samples = {k: st.sample for k, st in app.workspace.samples.items()}
            peaks = max_activations(app.lab, choice.sae_id, default_corpus(app.lab, samples), cache=tmp_path)
            assert choice.peak == float(peaks[choice.feature]) and choice.peak > 0
            await pilot.press("right_square_bracket")  # k 0.5 -> 0.6
            (choice,) = app.workspace.state(key).choices
            assert choice.value == 0.6 and choice.to_intervention().value == np.float64(0.6) * choice.peak
            await pilot.press("2")
            await pilot.pause()
            shown = app.export_screenshot()
            assert "0.6×max" in shown and f"{0.6 * choice.peak:.3g}" in shown
            await pilot.press("r")
            await settle(app, pilot)
            (run,) = app.workspace.state(key).runs
            assert run.choices[0].relative and run.choices[0].peak == choice.peak
            await pilot.press("v")  # back to absolute: the value it stood for
            (choice,) = app.workspace.state(key).choices
            assert not choice.relative and choice.value == round(0.6 * run.choices[0].peak, 6)

    asyncio.run(go())


def test_x_asks_for_the_scope_and_seeds_and_refuses_a_bad_count(make_app, tiny):
    """One template × 2 seeds runs over that template's lists only; 0 or 1001 seeds is refused with the range."""
    from textual.widgets import Input, Select

    from lister_tui.core.engine.prompts import prompt_ids
    from lister_tui.core.limits import MAX_EXPERIMENT_SEEDS
    from lister_tui.tui.screens.experiment import ExperimentScreen
    from lister_tui.tui.screens.experiment_scope import ExperimentScopeScreen
    from lister_tui.tui.screens.generate import GenerateRequest

    async def go():
        app = make_app(GenerateRequest(("short", "long"), ("Fruits",), 2, 0, "code"))
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            key = app.main.state.current
            ids = prompt_ids(tiny, "short", "Fruits")
            pos = ids.index(tiny.tokenizer.convert_tokens_to_ids(" short"))
            app.workspace.toggle(key, AblationChoice("res_0", 382, pos, "every", "zero", 0.0))
            await pilot.press("X")
            await pilot.pause()
            dialog = app.screen
            assert isinstance(dialog, ExperimentScopeScreen)
            seeds = dialog.query_one("#seeds", Input)
            for bad in ("0", str(MAX_EXPERIMENT_SEEDS + 1)):
                seeds.value = bad
                await pilot.press("enter")
                await pilot.pause()
                assert app.screen is dialog  # refused: the dialog stays
                assert any(f"from 1 to {MAX_EXPERIMENT_SEEDS}" in str(n.message) for n in app._notifications)
            seeds.value = "2"
            dialog.query_one("#scope", Select).value = "template:long"
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, ExperimentScreen)
            await settle(app, pilot)
            (exp,) = app.workspace.experiments
            assert exp.done and exp.settings.n_seeds == 2
            assert {r["template"] for r in exp.rows} == {"long"} and exp.units_total == 2 * 2  # 2 long lists × 2 seeds
            assert set(exp.sample_keys) == {k for k, st in app.workspace.samples.items() if st.sample.spec.template == "long"}

    asyncio.run(go())


def test_a_relative_clamp_still_waiting_when_reopened_is_filled_in_when_r_asks(make_app, tmp_path, monkeypatch):
    """A session saved while the maximum was being found: r says it waits, finds it, and the next r runs."""
    monkeypatch.setenv("LISTER_TUI_CACHE", str(tmp_path))

    async def go():
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            key = app.main.state.current
            app.workspace.toggle(key, AblationChoice("res_0", 382, 8, "every", "clamp", 0.5, relative=True))
            await pilot.press("r")
            await settle(app, pilot)
            assert app.workspace.state(key).runs == []  # nothing ran under an unknown value
            (choice,) = app.workspace.state(key).choices
            assert choice.peak is not None and choice.peak > 0
            await pilot.press("r")
            await settle(app, pilot)
            (run,) = app.workspace.state(key).runs
            assert run.choices[0].peak == choice.peak

    asyncio.run(go())
