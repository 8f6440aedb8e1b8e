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
