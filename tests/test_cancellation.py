"""Long work stops when asked: an attribution stops at the next SAE once its progress callback returns
True, and sampling stops at the next step once its step callback does."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lister_tui.core.engine.generation import sample_lists
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.errors import Cancelled
from lister_tui.core.study.experiment import attributable, attribute_lists
from lister_tui.core.study.settings import SAMPLING_PRESETS


@pytest.fixture(scope="module")
def lists(tiny):
    samples = sample_lists(tiny, build_prompts(["short"], ["Fruits", "Colors"], 2), replace(SAMPLING_PRESETS["code"], max_new_tokens=40))
    return [samples[i] for i in attributable(samples)]


def test_an_attribution_stops_at_the_next_sae_when_asked(tiny, lists):
    calls = []

    def cancel_after_the_first(sae_id, done, n):
        calls.append(sae_id)
        return True

    sae_ids = [s.id for s in tiny.entry.sites]
    with pytest.raises(Cancelled):
        attribute_lists(tiny, lists, sae_ids, on_progress=cancel_after_the_first)
    assert len(calls) == 1 and len(sae_ids) > 1


def test_an_attribution_not_asked_to_stop_covers_every_sae(tiny, lists):
    calls = []
    out = attribute_lists(tiny, lists[:1], ["res_0", "attn_1"], on_progress=lambda s, d, n: calls.append(s))
    assert set(out) == {"res_0", "attn_1"} and calls == ["res_0", "attn_1"]


def test_sampling_stops_at_the_next_step_when_asked(tiny):
    steps = []

    def cancel_at_three(step, tokens):
        steps.append(step)
        return step >= 3

    specs = build_prompts(["short", "long"], ["Fruits", "Colors"], 2)
    out = sample_lists(tiny, specs, replace(SAMPLING_PRESETS["code"], max_new_tokens=60), on_step=cancel_at_three, max_batch_size=2)
    assert steps == [1, 2, 3]  # later batches never start
    assert sum(len(s.tokens) - s.prompt_len for s in out) <= 3 * 2
