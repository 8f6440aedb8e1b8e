"""Replay samples in batches: the same tokens as one list at a time, progress as lists finish,
and a changed token still caught."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from lister_tui.core.engine.ablation import Ablation, FeatureAblation
from lister_tui.core.engine.generation import sample_lists
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.sessions.replay import replay
from lister_tui.core.sessions.runs import ablation_run
from lister_tui.core.sessions.workspace import AblationChoice, Workspace
from lister_tui.core.study.experiment import attribute_lists, regeneration_prefix, top_k_ablation
from lister_tui.core.study.settings import SAMPLING_PRESETS

CODE = SAMPLING_PRESETS["code"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def samples(tiny):
    return sample_lists(tiny, build_prompts(["short", "long"], ["Fruits", "Colors"], 2, 0), CODE)


def test_batched_seeded_sampling_gives_the_tokens_of_one_list_at_a_time(tiny, samples):
    """What the batched replay relies on, on the shipped model: samples, regenerations from the
    attribution position, and regenerations under one ablation, batched or alone."""
    specs = [s.spec for s in samples]
    alone = [sample_lists(tiny, [spec], CODE)[0] for spec in specs]
    assert [s.tokens for s in alone] == [s.tokens for s in samples]
    prefixes = [regeneration_prefix(s) for s in samples]
    ablation = Ablation((FeatureAblation("res_0", 7, "every"), FeatureAblation("attn_1", 3, "every")))
    for abl in (None, ablation):
        together = sample_lists(tiny, specs, CODE, prefixes=prefixes, ablation=abl)
        one_by_one = [sample_lists(tiny, [spec], CODE, prefixes=[p], ablation=abl)[0] for spec, p in zip(specs, prefixes)]
        assert [s.tokens for s in together] == [s.tokens for s in one_by_one]


@pytest.fixture(scope="module")
def workspace(tiny, samples) -> Workspace:
    """Eight lists; two runs on the first (same prefix, so one base), one on the second."""
    ws = Workspace(tiny.entry.name)
    keys = ws.add_samples(samples, "code")
    attrs = attribute_lists(tiny, samples[:2], ["res_0"])["res_0"]
    for i, ks in ((0, [3, 5]), (1, [5])):
        for k in ks:
            choices = tuple(AblationChoice(f.sae_id, f.feature, f.positions[0]) for f in top_k_ablation(attrs, i, k).features)
            ws.record_ablation(keys[i], ablation_run(tiny, keys[i], samples[i], choices, "code"))
    return ws


def test_replay_reports_ok_with_progress_for_every_list(tiny, workspace):
    seen = []
    report = replay(tiny, workspace, on_progress=lambda done, total, what: seen.append((done, total, what)))
    assert report.ok, [m.describe() for m in report.mismatches]
    assert report.checked == 8 + 2 * 3
    assert [d for d, _, _ in seen] == list(range(1, 15)) and {t for _, t, _ in seen} == {14}
    key = list(workspace.samples)[0]
    assert {w for _, _, w in seen} >= {f"{key} sample", f"{key} run 0 base", f"{key} run 1 ablated"}


def test_replay_still_catches_a_changed_token(tiny, workspace):
    key = list(workspace.samples)[0]
    st = workspace.state(key)
    run = st.runs[1]
    pos = len(run.ablated.tokens) - 2
    tampered = list(run.ablated.tokens)
    tampered[pos] += 1
    st.runs[1] = replace(run, ablated=replace(run.ablated, tokens=tuple(tampered)))
    try:
        report = replay(tiny, workspace)
    finally:
        st.runs[1] = run
    assert [(m.key, m.what, m.position) for m in report.mismatches] == [(key, "run 1 ablated", pos)]


def test_a_list_that_differs_only_in_its_batch_is_not_reported(tiny, workspace, monkeypatch):
    """If batch-size rounding (a GPU's kernels) tipped a draw in the batch, the list alone decides."""
    import lister_tui.core.sessions.replay as replay_module

    real = replay_module.sample_lists
    calls = []

    def tipped(loaded, specs, settings, **kw):
        out = real(loaded, specs, settings, **kw)
        calls.append(len(specs))
        if len(specs) > 1:  # a batch: pretend its first list came out one token different
            first = out[0]
            tokens = list(first.tokens)
            tokens[-1] += 1
            out[0] = replace(first, tokens=tuple(tokens))
        return out

    monkeypatch.setattr(replay_module, "sample_lists", tipped)
    report = replay(tiny, workspace)
    assert report.ok and max(calls) > 1 and 1 in calls  # batched, then that list alone


def test_runs_that_scale_steer_or_change_a_transcoder_feature_replay_under_their_interventions(tiny, samples):
    """A run recorded with kinds (or on tc_L) is replayed as the explorer made it, not as a zero-ablation;
    one ablated list altered is caught."""
    ws = Workspace(tiny.entry.name)
    keys = ws.add_samples(samples[:2], "code")
    for key, s, choices in (
        (keys[0], samples[0], (AblationChoice("res_0", 7, 0, "every", "steer", 4.0),)),
        (keys[0], samples[0], (AblationChoice("res_1", 3, 0, "every", "scale", 3.0),)),
        (keys[1], samples[1], (AblationChoice("tc_1", 5, 0, "every"),)),
    ):
        ws.record_ablation(key, ablation_run(tiny, key, s, choices, "code", from_attribution_pos=False))
    assert ws.state(keys[0]).runs[0].ablated.tokens != ws.state(keys[0]).runs[0].base.tokens  # the steer changed the list
    assert replay(tiny, ws).ok
    run = ws.state(keys[1]).runs[0]
    altered = replace(run, ablated=replace(run.ablated, tokens=run.ablated.tokens[:-1] + (run.ablated.tokens[-1] + 1,)))
    ws.state(keys[1]).runs[0] = altered
    report = replay(tiny, ws)
    assert not report.ok and [m.what for m in report.mismatches] == ["run 0 ablated"]
