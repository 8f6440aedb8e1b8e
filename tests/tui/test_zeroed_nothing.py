"""An ablation that zeroes nothing says so in the explorer (it is not a measured "no effect")."""

from __future__ import annotations

import asyncio

import torch

from lister_tui.core.sessions.export import export_tables
from lister_tui.core.sessions.opening import model_info
from lister_tui.core.sessions.store import SessionStore, read_session
from lister_tui.core.sessions.workspace import AblationChoice

from .conftest import settle

WARNING = "the ablation zeroed nothing"


def _activations(tiny, sae_id: str, tokens) -> torch.Tensor:
    """[pos, d_sae]: the SAE's feature activations on ``tokens`` (plain model)."""
    sae = tiny.load_sae(sae_id)
    hook = sae.cfg.metadata.hook_name
    with torch.inference_mode():
        _, cache = tiny.model.run_with_cache(torch.tensor([list(tokens)]), names_filter=hook)
        return sae.encode(cache[hook])[0]


def _warnings(app) -> list[str]:
    return [m.text for m in app.messages if WARNING in m.text]


def test_an_ablation_of_features_that_are_zero_where_chosen_warns(make_app, tiny):
    async def go():
        app = make_app()
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            screen = app.main
            key = screen.state.current
            sample = app.workspace.state(key).sample
            pos = sample.structure.attribution_pos - 1
            acts = _activations(tiny, "res_0", sample.tokens)
            silent = [int(f) for f in torch.nonzero(acts[pos] == 0).flatten()[:2]]
            for feature in silent:
                app.workspace.toggle(key, AblationChoice("res_0", feature, pos))
            await pilot.press("r")
            await settle(app, pilot)
            run = app.workspace.latest_run(key)
            assert run is not None and len(run.choices) == 2
            assert run.activations_zeroed == 0 and run.zeroed_nothing
            assert run.ablated.tokens == run.base.tokens  # nothing switched off: the base's list
            assert len(_warnings(app)) == 1
            assert WARNING in screen.state.regen_state

    asyncio.run(go())


def test_a_normal_ablation_does_not_warn_and_records_what_it_zeroed(make_app, tiny, tmp_path):
    async def go():
        app = make_app()
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            screen = app.main
            key = screen.state.current
            sample = app.workspace.state(key).sample
            pos = sample.structure.attribution_pos - 1
            acts = _activations(tiny, "res_0", sample.tokens)
            active = [int(f) for f in torch.nonzero(acts[pos] > 0).flatten()[:2]]
            assert len(active) == 2
            for feature in active:
                app.workspace.toggle(key, AblationChoice("res_0", feature, pos))
            await pilot.press("r")
            await settle(app, pilot)
            run = app.workspace.latest_run(key)
            assert run is not None and run.activations_zeroed == 2  # two features, one position each
            assert not run.zeroed_nothing and not _warnings(app)
            assert WARNING not in screen.state.regen_state
            # the count is kept with the session, and exported
            SessionStore(tmp_path / "s").save(app.workspace, model_info(tiny))
            opened = read_session(tmp_path / "s").workspace
            assert opened.latest_run(key).activations_zeroed == 2
            assert export_tables(opened)["ablations"]["activations_zeroed"].tolist() == [2]

    asyncio.run(go())


def test_the_last_layers_top_k_adds_nothing_and_says_so_then_the_run_warns(make_app):
    """res_3 (the last layer): act×grad is 0 before the attribution position, so K adds no pair;
    regenerating anyway zeroes nothing, and both say so."""

    async def go():
        app = make_app()
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(app, pilot)
            screen = app.main
            key = screen.state.current
            await pilot.press("a")
            await settle(app, pilot)
            await pilot.press(*["s"] * (screen.controller.sae_ids.index("res_3") + 1))  # the SAE filter: res_3
            assert screen.controller.sae_ids[screen.state.sae_filter - 1] == "res_3"
            await pilot.press("K")
            await settle(app, pilot)
            assert app.workspace.state(key).choices == []
            assert any("res_3 has no pair with a positive attribution" in m.text for m in app.messages)
            await pilot.press("r")
            await settle(app, pilot)
            run = app.workspace.latest_run(key)
            assert run is not None and run.choices == () and run.activations_zeroed == 0
            assert [w for w in _warnings(app) if "no feature is chosen" in w]

    asyncio.run(go())
