"""Escape really stops long work: a batch attribution stops after the SAE it is on and nothing of it
lands in the workspace; a generation stops at its next decoding step and adds no samples."""

from __future__ import annotations

import asyncio

import lister_tui.tui.explorer.controller as controller_module
from lister_tui.tui.screens.generate import GenerateRequest

from .conftest import settle


def test_escape_stops_a_batch_attribution(make_app, monkeypatch):
    real = controller_module.attribute_lists
    seen = {"progress": 0, "cancelled": False, "saes": 0}

    def spy(lab, samples, sae_ids, *, on_progress, **kw):
        seen["saes"] = len(sae_ids)

        def counting(sae, done, n):
            seen["progress"] += 1
            return on_progress(sae, done, n)

        try:
            return real(lab, samples, sae_ids, on_progress=counting, **kw)
        except controller_module.Cancelled:
            seen["cancelled"] = True
            raise

    monkeypatch.setattr(controller_module, "attribute_lists", spy)

    async def go():
        app = make_app()
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            screen = app.screen
            screen.controller.attribute_batch()
            while seen["progress"] == 0:  # the first SAE is done: escape now
                await pilot.pause(0.01)
            await pilot.press("escape")
            await settle(app, pilot)
            assert seen["cancelled"] and seen["progress"] < seen["saes"]  # stopped before the last SAE (each takes milliseconds here)
            assert app.workspace.batch is None and not screen.state.busy
            assert app.is_running

    asyncio.run(go())


def test_escape_stops_a_generation(make_app, monkeypatch):
    real = controller_module.sample_lists
    steps = []

    def spy(lab, specs, settings, *, on_step, **kw):
        def counting(step, tokens):
            steps.append(step)
            return on_step(step, tokens)

        return real(lab, specs, settings, on_step=counting, **kw)

    monkeypatch.setattr(controller_module, "sample_lists", spy)

    async def go():
        app = make_app()
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            before = len(app.workspace.samples)
            steps.clear()
            screen = app.screen
            # 3 templates x 6 topics x 10 samples: far more steps than the few taken before escape
            screen.controller.start_generation(GenerateRequest(("short", "long", "unspecified"), ("Fruits", "Colors", "Animals", "Sports", "Rivers", "Books"), 10))
            while len(steps) < 2:
                await pilot.pause(0.01)
            await pilot.press("escape")
            await settle(app, pilot)
            assert len(app.workspace.samples) == before  # nothing of the cancelled batch was added
            full = 100 * 3  # at least one batch per template, each up to max_new_tokens steps
            assert len(steps) < full / 2, len(steps)
            assert not screen.state.busy and app.is_running

    asyncio.run(go())
