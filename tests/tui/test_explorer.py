"""The explorer's whole loop on lister-tiny, driven with keys; expected figures come from the core."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from lister_tui.core.engine.ablation import Ablation, FeatureAblation
from lister_tui.core.study.experiment import ablate_and_regenerate, attribute_lists
from lister_tui.core.study.features import expression_matrix
from lister_tui.core.study.settings import SAMPLING_PRESETS
from lister_tui.core.sessions.workspace import DELTA_METRICS
from lister_tui.tui.keymap import APP_KEYS, BATCH_KEYS, MAIN_KEYS, MATRIX_KEYS, TOKEN_KEYS
from lister_tui.tui.widgets import FeatureTable, TokenView

from lister_tui.tui.screens.generate import GenerateRequest

from .conftest import settle


def run(coro):
    return asyncio.run(coro)


async def _pick_features(pilot, screen, n: int, sae: str = "res_0") -> list[tuple[int, int]]:
    """Filter the features table to ``sae`` and toggle its first ``n`` pairs inside the regeneration prefix."""
    await pilot.press("slash", *sae, "enter")
    table = screen.query_one("#feature-table", FeatureTable)
    attr_pos = screen.ws.state(screen.state.current).sample.structure.attribution_pos
    picked = []
    for i, row in enumerate(table.rows_shown):
        if 0 < row.pos < attr_pos and len(picked) < n:
            await pilot.press(*["down"] * (i - table.cursor_row))
            assert table.highlighted() == row
            await pilot.press("space")
            picked.append((row.feature, row.pos))
    assert len(picked) == n
    return picked


def test_whole_loop_matches_the_core(make_app, tiny):
    async def go():
        app = make_app()
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            screen = app.screen
            assert len(app.workspace.samples) == 4 and screen.state.current is not None
            # pick the second sample in the browser
            await pilot.press("S", "down")
            await settle(app, pilot)
            key = list(app.workspace.samples)[1]
            assert screen.state.current == key
            sample = app.workspace.state(key).sample
            await pilot.press("a")
            await settle(app, pilot)
            # the table shows what the core's attribution gives for this sample
            core_attr = attribute_lists(tiny, [sample], ["res_0"])["res_0"]
            shown = app.workspace.state(key).attribution["res_0"]
            assert [(p.pos, p.feature) for p in shown.top[0]] == [(p.pos, p.feature) for p in core_attr.top[0]]
            picked = await _pick_features(pilot, screen, 5)
            assert len(app.workspace.state(key).choices) == 5
            await pilot.press("r")
            await settle(app, pilot)
            ablation = Ablation(tuple(FeatureAblation("res_0", f, (p,)) for f, p in picked))
            outcome = ablate_and_regenerate(tiny, [sample], [ablation], SAMPLING_PRESETS["code"])[0]
            run_ = app.workspace.latest_run(key)
            assert run_ is not None and run_.ablation == ablation
            assert run_.ablated.tokens == outcome.ablated.tokens
            assert run_.base.tokens == outcome.base.tokens
            # what is on screen: the ablated generation and the deltas
            ablated_view = screen.query_one("#ablated-view", TokenView)
            assert ablated_view.display and ablated_view.doc.ids == outcome.ablated.tokens
            for name in DELTA_METRICS:
                assert run_.deltas()[name][2] == outcome.delta(name)
            info = ablated_view.doc.info
            assert f"items {outcome.base.metrics.n_items}→{outcome.ablated.metrics.n_items}" in info
            assert f"tokens {outcome.base.metrics.n_tokens}→{outcome.ablated.metrics.n_tokens}" in info
            assert f"{outcome.delta('metric_at_attribution'):+.2f}" in info
            assert screen.query_one("#base-view", TokenView).doc.ids == outcome.base.tokens

    run(go())


def test_integrated_gradients_key_shows_the_cores_integrated_ranking(make_app, tiny):
    async def go():
        app = make_app()
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            screen = app.screen
            key = screen.state.current
            sample = app.workspace.state(key).sample
            await pilot.press("I")
            await settle(app, pilot)
            shown = app.workspace.state(key).attribution
            core = attribute_lists(tiny, [sample], list(shown), method="ig", ig_steps=10)
            for sae, attr in shown.items():
                assert (attr.method, attr.ig_steps) == ("ig", 10)
                assert [(p.pos, p.feature) for p in attr.top[0]] == [(p.pos, p.feature) for p in core[sae].top[0]]
            assert "sample pairs · IG" in str(screen.query_one("#feature-mode").render())
            # a plain attribution afterwards replaces it, and the header says so
            await pilot.press("a")
            await settle(app, pilot)
            assert {a.method for a in app.workspace.state(key).attribution.values()} == {"grad"}
            assert "(IG)" not in str(screen.query_one("#feature-mode").render())

    run(go())


def test_a_new_toggle_cancels_a_stale_regeneration(make_app, tiny, monkeypatch):
    import lister_tui.core.sessions.runs as main_module

    real = main_module.regenerate
    throttle = [0.05]

    def slow(loaded, sample, settings, ablation=None, *, from_attribution_pos=True, on_step=None):
        def step(n, tokens):
            time.sleep(throttle[0])
            return on_step(n, tokens) if on_step else None

        return real(loaded, sample, settings, ablation, from_attribution_pos=from_attribution_pos, on_step=step)

    monkeypatch.setattr(main_module, "regenerate", slow)

    async def go():
        app = make_app()
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            screen = app.screen
            key = screen.state.current
            await pilot.press("a")
            await settle(app, pilot)
            await pilot.press("R")  # from the prompt: a whole list, long enough to interrupt
            await pilot.press("F", "e")  # the top feature, at every position
            await pilot.press("r")
            stale = screen.state.run_id
            for _ in range(200):
                if screen.state.streaming is not None:
                    break
                await pilot.pause(0.01)
            assert screen.state.streaming is not None, "the regeneration never streamed"
            # a new toggle while it streams (keys posted as a terminal would: pilot.press
            # waits for a quiet queue, which a streaming worker never leaves)
            app.simulate_key("down")
            app.simulate_key("e")
            await settle(app, pilot)
            # the stale run stopped early (its worker saw the cancel) and left nothing behind
            assert "cancelled" in screen.controller.latency[stale] and "done" not in screen.controller.latency[stale]
            assert app.workspace.state(key).runs == []
            assert "cancelled" in screen.state.regen_state
            # the next run goes through and equals the core's
            throttle[0] = 0.0
            await pilot.press("r")
            await settle(app, pilot)
            run_ = app.workspace.latest_run(key)
            assert run_ is not None and len(run_.choices) == 2
            sample = app.workspace.state(key).sample
            outcome = ablate_and_regenerate(tiny, [sample], [run_.ablation], SAMPLING_PRESETS["code"], from_attribution_pos=False)[0]
            assert run_.ablated.tokens == outcome.ablated.tokens
            # from the prompt, the base is the sample itself (same seed): not sampled again, but equal
            assert run_.base.tokens == outcome.base.tokens and run_.base.metrics == outcome.base.metrics

    run(go())


def test_bad_requests_are_notifications_not_tracebacks(make_app):
    async def go():
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            screen = app.screen
            await pilot.press("r")  # nothing toggled: an empty ablation is fine (base == ablated)
            await settle(app, pilot)
            run_ = app.workspace.latest_run(screen.state.current)
            assert run_.ablated.tokens == run_.base.tokens
            await pilot.press("a")
            await settle(app, pilot)
            await pilot.press("K")  # the study's top-5, at their positions
            await pilot.press("R", "r")  # ...regenerated from the prompt: pairs past it switch to ∀, said
            await settle(app, pilot)
            assert screen.state.regen_state.startswith("regenerated")
            prompt_len = app.workspace.state(screen.state.current).sample.prompt_len
            assert all(c.mode == "every" for c in app.workspace.state(screen.state.current).choices if c.pos >= prompt_len)
            # a choice outside the prefix that skipped the rule (an old session can hold one) fails as a notification
            from lister_tui.core.sessions.workspace import AblationChoice

            st = app.workspace.state(screen.state.current)
            app.workspace.toggle(screen.state.current, AblationChoice("res_0", 1, len(st.sample.tokens) - 1, "position"))
            await pilot.press("r")
            await settle(app, pilot)
            assert screen.state.regen_state == "regeneration failed"
            assert app.screen is screen  # no error modal for a bad request

    run(go())


def test_keys_have_ids_and_the_palette_offers_every_action(make_app):
    from lister_tui.tui.commands import ExplorerCommands

    specs = APP_KEYS + MAIN_KEYS + TOKEN_KEYS + MATRIX_KEYS + BATCH_KEYS
    ids = [s.id for s in specs]
    assert all(ids) and len(set(ids)) == len(ids)

    async def go():
        app = make_app(request=None, keymap={"lister.regenerate": "f5"})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            provider = ExplorerCommands(app.screen)
            titles = [hit.text async for hit in provider.discover()]
            offered = {s.title for s in APP_KEYS + MAIN_KEYS if s.palette}
            assert all(any(t.startswith(title + " (") for t in titles) for title in offered)
            assert any(t == "Regenerate (f5)" for t in titles)  # the palette shows the remapped key
            screen = app.screen
            await pilot.press("f5")  # remapped: runs (and reports there is no sample), no crash
            await pilot.pause()
            assert any("no sample" in m.text for m in app.messages)
            await pilot.press("question_mark")
            await pilot.pause()
            assert type(app.screen).__name__ == "HelpScreen"
            await pilot.press("escape")
            assert app.screen is screen

    run(go())


def test_expression_matrix_screen_shows_the_core_matrix(make_app, tiny):
    async def go():
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            await pilot.press("x")  # attributes the batch first, then opens
            await settle(app, pilot)
            from lister_tui.tui.screens.matrix import TOP_N, MatrixScreen

            screen = app.screen
            assert isinstance(screen, MatrixScreen)
            batch = app.workspace.batch
            samples = [app.workspace.state(k).sample for k in batch.keys]
            core = expression_matrix(attribute_lists(tiny, samples, [screen.sae_ids[0]])[screen.sae_ids[0]], samples, top_n=TOP_N)
            assert np.array_equal(screen.matrix.features, core.features)
            np.testing.assert_allclose(screen.matrix.values, core.values, rtol=1e-4, atol=1e-5)
            await pilot.press("down", "right")
            await pilot.pause()
            info = str(screen.query_one("#matrix-info").render())
            f = int(core.features[1])
            spec = samples[int(core.samples[1])].spec
            assert f"f{f}" in info and f"{spec.template}/{spec.topic}/{spec.sample}" in info
            await pilot.press("o")  # opens that sample in the main view (enter opens the feature's card)
            await pilot.pause()
            assert app.main.state.current == batch.keys[int(core.samples[1])]

    run(go())


def test_token_cursor_names_the_token_and_its_metric(make_app):
    async def go():
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            screen = app.screen
            st = app.workspace.state(screen.state.current)
            await pilot.press("T", "full_stop")
            view = screen.query_one("#base-view", TokenView)
            assert view.cursor == st.sample.structure.attribution_pos
            await pilot.press("left")
            pos = view.cursor
            info = str(screen.query_one("#cursor-info").render())
            token = app.lab.to_str_tokens([st.sample.tokens[pos]])[0]
            assert f"pos {pos} · id {st.sample.tokens[pos]} · {token!r}" in info
            strip = str(screen.query_one("#metric").render())
            assert f"{st.curve[pos]:+.2f}" in strip

    run(go())


def test_token_view_centres_a_jump_whatever_it_showed_before(make_app):
    # a long list does not fit an 80x24 token view, so the view must scroll
    one_long_list = GenerateRequest(("long",), ("Fruits",), 1, 0, "code")

    async def frames(keys_before: tuple[str, ...]):
        app = make_app(one_long_list)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            await pilot.press("T", *keys_before)
            await pilot.pause()
            await pilot.press("full_stop")
            await pilot.pause()
            view = app.screen.query_one("#base-view", TokenView)
            assert view.cursor == view.doc.structure.attribution_pos
            at_attribution = (view.shown_lines, str(view.render()))
            # a position in the middle of the list is centred (the regeneration's view opens this way)
            middle = view.doc.structure.items[len(view.doc.structure.items) // 2].marker_pos
            view.centre_on(middle)
            await pilot.pause()
            return at_attribution, view.shown_lines, view.cursor_line

    at_attribution, shown, cursor_line = run(frames(()))
    assert at_attribution[0].start > 0, at_attribution  # the list did not fit, and the view scrolled
    assert cursor_line - shown.start == len(shown) // 2, (shown, cursor_line)
    # the same frame after the view was scrolled to the end first
    assert run(frames(("end",)))[0] == at_attribution
