"""The explorer's state is plain data (no UI) that mirrors the core's records."""

from __future__ import annotations

import numpy as np

from lister_tui.core.engine.ablation import EVERY_POSITION, Ablation, FeatureAblation
from lister_tui.core.study.experiment import attribute_lists, select_samples
from lister_tui.core.engine.generation import sample_lists
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.study.settings import SAMPLING_PRESETS
from lister_tui.core.sessions.workspace import AblationChoice, Workspace, sample_key


def test_workspace_toggles_modes_and_batch_attribution(tiny):
    samples = sample_lists(tiny, build_prompts(["short"], ["Fruits"], 2, 0), SAMPLING_PRESETS["code"])
    ws = Workspace(tiny.entry.name)
    keys = ws.add_samples(samples, "code")
    assert keys == [sample_key(s) for s in samples] and len(set(keys)) == 2
    k = keys[0]
    assert ws.toggle(k, AblationChoice("res_0", 3, 30)) is True
    assert ws.toggle(k, AblationChoice("res_0", 4, 31)) is True
    assert ws.toggle(k, AblationChoice("res_0", 3, 30)) is False  # the same pair again: off
    ws.set_mode(k, ("res_0", 4, 31), "every")
    assert ws.current_ablation(k) == Ablation((FeatureAblation("res_0", 4, EVERY_POSITION),))
    ws.clear_choices(k)
    assert ws.current_ablation(k).is_empty()

    batch = attribute_lists(tiny, samples, ["res_0"])
    ws.set_batch_attribution(keys, batch)
    one = attribute_lists(tiny, samples[1:], ["res_0"])["res_0"]
    sliced = ws.state(keys[1]).attribution["res_0"]
    assert [(p.pos, p.feature, p.sample) for p in sliced.top[0]] == [(p.pos, p.feature, p.sample) for p in one.top[0]]
    np.testing.assert_allclose(sliced.max_activation, one.max_activation, rtol=1e-4, atol=1e-5)
    assert select_samples(batch["res_0"], [1, 0]).attribution_pos == [batch["res_0"].attribution_pos[i] for i in (1, 0)]
