"""The feature card screen on lister-tiny: pushed directly, driven with keys; its figures are the core's."""

from __future__ import annotations

import asyncio

import pytest

from lister_tui.core.engine.generation import make_sample
from lister_tui.core.engine.prompts import PromptSpec
from lister_tui.core.sessions.workspace import Workspace
from lister_tui.core.study.cards import feature_card
from lister_tui.core.study.corpus import Corpus, part_from_texts, reference_part
from lister_tui.core.study.experiment import attribute_lists
from lister_tui.organism.corpus import make_corpus
from lister_tui.tui.screens.feature_card import FeatureCardScreen

from .conftest import settle

MARKUP_LABEL = "[bold]says short[/bold]"


@pytest.fixture(scope="module")
def setting(tiny):
    """A workspace with one attributed held-out list, its top res_0 feature, and a small corpus."""
    ex = make_corpus(1, seed=1)[0]  # a short-template list
    ids = tiny.tokenizer(ex.text, add_special_tokens=False)["input_ids"]
    prompt_len = len(tiny.tokenizer(ex.prompt, add_special_tokens=False)["input_ids"])
    sample = make_sample(tiny, PromptSpec(ex.template, ex.topic, 0, 0), prompt_len, tuple(ids), True)
    ws = Workspace(tiny.entry.name)
    keys = ws.add_samples([sample], "code")
    ws.set_batch_attribution(keys, attribute_lists(tiny, [sample], ["res_0"]))
    top = ws.state(keys[0]).attribution["res_0"].top[0][0]
    texts = [e.text for e in make_corpus(40, seed=1)]
    corpus = Corpus((part_from_texts(tiny, "held-out", texts, [f"#{i}" for i in range(40)]),))
    return ws, keys[0], top, corpus


def run(coro):
    return asyncio.run(coro)


def test_the_card_shows_the_cores_figures_and_its_keys_work(make_app, tiny, setting, tmp_path):
    ws, key, top, corpus = setting

    async def go():
        app = make_app(request=None, workspace=ws)
        async with app.run_test(size=(110, 40)) as pilot:
            await settle(app, pilot)
            screen = FeatureCardScreen(tiny, "res_0", top.feature, workspace=ws, sample_key=key, corpus=corpus, cache=tmp_path)
            closed = []
            app.push_screen(screen, closed.append)
            await settle(app, pilot)
            expected = feature_card(tiny, "res_0", top.feature, corpus, cache=tmp_path)
            assert screen.card is not None
            assert [c.activation for c in screen.card.contexts] == [c.activation for c in expected.contexts]
            contexts = str(screen.query_one("#card-contexts").render())
            assert f"{expected.contexts[0].activation:6.2f}" in contexts
            assert screen.query_one("#card-progress").has_class("-done")
            # the sample strip: the feature's rank in this sample's attribution
            assert screen.card.sample.rank == 1 and screen.card.sample.position == top.pos
            assert "rank 1" in str(screen.query_one("#card-sample").render())

            # space switches it off in the sample's ablation, and on again
            await pilot.press("space")
            choices = ws.state(key).choices
            assert [(c.sae_id, c.feature) for c in choices] == [("res_0", top.feature)]
            await pilot.press("space")
            assert ws.state(key).choices == []

            # l writes a label: stored as typed, shown as text (never as markup)
            await pilot.press("l")
            await pilot.pause()
            await pilot.press(*MARKUP_LABEL, "enter")
            await pilot.pause()
            assert ws.label("res_0", top.feature) == MARKUP_LABEL
            title = screen.query_one("#card-title").render()
            assert MARKUP_LABEL in str(title)

            # y copies the id (lister-tiny has no feature pages)
            await pilot.press("y")
            assert app.clipboard == f"lister-tiny res_0 feature {top.feature}"

            await pilot.press("escape")
            await pilot.pause()
            assert closed == [True]  # it changed the workspace

    run(go())


def test_escape_cancels_a_running_corpus_pass(make_app, tiny, tmp_path):
    corpus = Corpus((reference_part(tiny),))

    async def go():
        app = make_app(request=None)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = FeatureCardScreen(tiny, "res_3", 5, corpus=corpus, cache=tmp_path)
            closed = []
            app.push_screen(screen, closed.append)
            await pilot.pause(0.5)
            await pilot.press("escape")
            await settle(app, pilot)
            assert closed == [False] and screen.card is None
            assert not list(tmp_path.rglob("*.npz"))  # a cancelled pass caches nothing

    run(go())


def test_the_matrix_shows_labels_next_to_features(make_app, tiny, setting):
    ws, key, top, corpus = setting
    from lister_tui.tui.screens.matrix import MatrixScreen
    from lister_tui.tui.widgets.heatmap import Heatmap

    async def go():
        ws.set_label("res_0", top.feature, "a\x1b[31m very long label past the width")
        app = make_app(request=None, workspace=ws)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(app, pilot)
            screen = MatrixScreen(ws.batch, ws.samples, ["res_0"])
            app.push_screen(screen)
            await pilot.pause()
            labels = screen.query_one(Heatmap).row_labels
            row = list(screen.matrix.features).index(top.feature)
            assert labels[row] == f"f{top.feature} a␛[31m very lon…"  # 16 characters of label, ESC shown as its marker
            assert all(label == f"f{f}" for f, label in zip(screen.matrix.features, labels) if f != top.feature)

    try:
        run(go())
    finally:
        ws.set_label("res_0", top.feature, "")


def test_enter_on_a_feature_row_opens_its_card_and_its_label_shows_in_the_tables(make_app, tiny, setting, tmp_path, monkeypatch):
    ws, key, top, corpus = setting
    import lister_tui.tui.screens.feature_card as card_module
    from lister_tui.tui.screens.matrix import MatrixScreen
    from lister_tui.tui.widgets.ablation_panel import ChoiceTable
    from lister_tui.tui.widgets.feature_table import FeatureTable

    monkeypatch.setattr(card_module, "default_corpus", lambda lab, samples=None, file=None: corpus)
    monkeypatch.setenv("LISTER_TUI_CACHE", str(tmp_path))

    async def go():
        app = make_app(request=None, workspace=ws)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            main = app.main
            await pilot.press("F")  # the features table
            table = main.query_one("#feature-table", FeatureTable)
            row = table.highlighted()
            await pilot.press("enter")
            await settle(app, pilot)
            card = app.screen
            assert isinstance(card, FeatureCardScreen) and (card.sae_id, card.feature) == (row.sae_id, row.feature)
            assert card.card is not None and card.card.sample.key == key
            await pilot.press("space")  # through the controller: the main screen's ablation has it
            await pilot.press("l", *"blank marker", "enter")
            await pilot.pause()
            await pilot.press("escape")
            await settle(app, pilot)
            assert app.screen is main
            assert [(c.sae_id, c.feature) for c in ws.state(key).choices] == [(row.sae_id, row.feature)]
            labelled = table.get_row_at(table.cursor_row)[-1]
            assert str(labelled).strip() == "blank marker"
            choices = main.query_one("#choices", ChoiceTable)
            assert str(choices.get_row_at(0)[-1]).strip() == "blank marker"
            # enter on the ablation list opens the same card
            await pilot.press("2")
            choices.focus()
            await pilot.press("enter")
            await settle(app, pilot)
            assert isinstance(app.screen, FeatureCardScreen) and app.screen.feature == row.feature
            await pilot.press("escape")
            await settle(app, pilot)
            # and enter in the expression matrix opens the card of the row's feature
            await pilot.press("x")
            await settle(app, pilot)
            assert isinstance(app.screen, MatrixScreen)
            await pilot.press("enter")
            await settle(app, pilot)
            assert isinstance(app.screen, FeatureCardScreen) and app.screen.sample_key == key
            await pilot.press("escape", "escape")
            await settle(app, pilot)

    try:
        run(go())
    finally:
        ws.set_label(top.sae_id, top.feature, "")
        ws.labels.clear()
        ws.clear_choices(key)


def test_a_damaged_cache_is_healed_and_the_card_screen_says_so(make_app, tiny, tmp_path):
    part = part_from_texts(tiny, "two lists", ["<bos>- Apple\n- Pear \n", "<bos>- Oak \n- Elm\n"], ["a", "b"])
    corpus = Corpus((part,))
    feature_card(tiny, "res_2", 1, corpus, k=2, cache=tmp_path)  # cached
    (path,) = (tmp_path / "activations").glob("*.npz")
    path.write_bytes(path.read_bytes()[:200])  # truncated

    async def go():
        app = make_app(request=None)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = FeatureCardScreen(tiny, "res_2", 1, corpus=corpus, cache=tmp_path)
            app.push_screen(screen)
            await settle(app, pilot)
            assert screen.card is not None and screen.card.notices
            shown = [m.text for m in app.messages]
            assert any("activation cache" in m and "recomputed" in m for m in shown), shown

    run(go())


def test_the_cards_state_line_drops_whole_key_hints_at_80_columns(make_app, tiny, setting, tmp_path):
    ws, key, top, corpus = setting

    async def go():
        app = make_app(request=None, workspace=ws)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            screen = FeatureCardScreen(tiny, "res_0", top.feature, workspace=ws, sample_key=key, corpus=corpus, cache=tmp_path)
            app.push_screen(screen)
            await settle(app, pilot)
            line = str(screen.query_one("#card-state").render())
            assert line.startswith("not ablated in this sample") and "…" not in line and len(line) <= 78
            for part in line.split(" · "):  # every part whole
                assert part in ("not ablated in this sample", "space toggles", "l labels", "y copies its link or id", "esc closes"), part

    run(go())
