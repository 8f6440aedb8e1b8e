"""Attribution graphs on lister-tiny: the replacement model is exact, every edge is a finite difference.

Transcoders here are fitted in the test (tests/graph_fixtures.py): these properties hold for
any transcoder, so they do not wait for the shipped ones.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from graph_fixtures import fit_transcoders

from lister_tui.core.engine.generation import sample_lists
from lister_tui.core.engine.loading import load_model
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.errors import ListerError
from lister_tui.core.study.graphs import replacement as rep
from lister_tui.core.study.graphs.attribute import (
    ATTN,
    ATTN_ERROR,
    MLP_ERROR,
    TARGET,
    TC,
    TOKEN,
    attribute_graph,
    build_nodes,
    compute_rows,
)
from lister_tui.core.study.graphs.prune import check_threshold, prune, scores
from lister_tui.core.study.settings import SAMPLING_PRESETS

# float64 throughout: the replacement reproduces the real logits to 1e-9 (rounding is ~1e-14),
# and an edge matches a central finite difference of its target to 1e-7 absolute + 1e-6 relative.
REPRO_ATOL = 1e-9
FD_STEP = 1e-3
FD_RTOL, FD_ATOL = 1e-6, 1e-7


@pytest.fixture(scope="module")
def tiny64():
    return load_model("lister-tiny", device="cpu", dtype=torch.float64)


@pytest.fixture(scope="module")
def setup(tiny64):
    tcs = fit_transcoders(tiny64)
    attn = {layer: tiny64.load_sae(f"attn_{layer}") for layer in range(tiny64.model.cfg.n_layers)}
    spec = build_prompts(["short"], ["Animals"], samples_per_topic=1, base_seed=0)
    sample = sample_lists(tiny64, spec, SAMPLING_PRESETS["code"])[0]
    pos = sample.structure.attribution_pos
    ids = dict(blank_id=tiny64.ids.blank, newline_id=tiny64.ids.newline)
    state = rep.prompt_state(tiny64.model, torch.tensor(sample.tokens[: pos + 1]), tcs, attn, **ids)
    return tcs, attn, sample, pos, state, ids


def test_with_error_nodes_the_replacement_reproduces_the_real_logits(tiny64, setup):
    tcs, attn, sample, pos, state, ids = setup
    model = tiny64.model
    with torch.no_grad():
        real = model(state.tokens.unsqueeze(0))[0]  # [n, d_vocab]
        for attention in ({}, attn):
            for frozen in (True, False):
                run = rep.run(model, state, tcs, attention, frozen=frozen, tc_acts={L: a.unsqueeze(0) for L, a in enumerate(state.tc_acts)})
                logits = model.unembed(run.final)[0]
                assert (logits - real).abs().max() < REPRO_ATOL
    # the errors are not zero: without them the logits move (so the test above can fail)
    with torch.no_grad():
        run = rep.run(model, state, tcs, attn, tc_error={L: torch.zeros_like(e).unsqueeze(0) for L, e in enumerate(state.tc_error)})
        assert (model.unembed(run.final)[0] - real).abs().max() > 1e-2


def _fd_target(model, state, tcs, attn, node, source, nodes, scale, ids):
    """The target node's pre-activation in the frozen replacement, features and errors fixed,
    with ``source`` multiplied by ``scale``."""
    kind, L, p, f = (int(x) for x in (nodes.kind[node], nodes.layer[node], nodes.pos[node], nodes.feature[node]))
    sk, sl, sp, sf = (int(x) for x in (nodes.kind[source], nodes.layer[source], nodes.pos[source], nodes.feature[source]))
    tc_acts = {i: a.clone().unsqueeze(0) for i, a in enumerate(state.tc_acts)}
    tc_err = {i: e.clone().unsqueeze(0) for i, e in enumerate(state.tc_error)}
    attn_acts = {i: a.clone().unsqueeze(0) for i, a in state.attn_acts.items()}
    attn_err = {i: e.clone().unsqueeze(0) for i, e in state.attn_error.items()}
    embed = state.embed.clone().unsqueeze(0)
    target = {TC: tc_acts, ATTN: attn_acts}.get(sk)
    if target is not None:
        target[sl][0, sp, sf] *= scale
    elif sk == MLP_ERROR:
        tc_err[sl][0, sp] *= scale
    elif sk == ATTN_ERROR:
        attn_err[sl][0, sp] *= scale
    else:
        embed[0, sp] *= scale
    with torch.no_grad():
        run = rep.run(model, state, tcs, attn, embed=embed, tc_acts=tc_acts, tc_error=tc_err, attn_acts=attn_acts, attn_error=attn_err)
        if kind == TARGET:
            return float(rep.metric_of(model, run.final, **ids)[0, p])
        if kind == TC:
            return float(run.tc_in[L][0, p] @ tcs[L].W_enc[:, f])
        return float(run.z_in[L][0, p].flatten() @ attn[L].W_enc[:, f])


@pytest.mark.parametrize("target_kind", [TARGET, TC, ATTN])
def test_every_edge_equals_a_finite_difference_of_its_target(tiny64, setup, target_kind):
    tcs, attn, sample, pos, state, ids = setup
    model = tiny64.model
    nodes = build_nodes(state, True, [pos])
    direction, _ = rep.metric_direction(model, **ids)
    if target_kind == TARGET:
        row = int(nodes.where(TARGET)[0])
    else:  # the feature at the last position with the largest activation in the middle layer
        candidates = np.flatnonzero((nodes.kind == target_kind) & (nodes.layer == 2) & (nodes.pos == pos))
        row = int(candidates[np.argmax(nodes.activation[candidates])])
    edges = compute_rows(model, state, tcs, attn, nodes, [row], direction)[0]
    checked = 0
    for kind in (TC, ATTN, MLP_ERROR, ATTN_ERROR, TOKEN):
        cols = np.flatnonzero(nodes.kind == kind)
        strongest = cols[np.argsort(-edges[cols].abs().numpy())[:3]]
        for source in strongest:
            up = _fd_target(model, state, tcs, attn, row, source, nodes, 1 + FD_STEP, ids)
            down = _fd_target(model, state, tcs, attn, row, source, nodes, 1 - FD_STEP, ids)
            fd = (up - down) / (2 * FD_STEP)
            assert abs(fd - float(edges[source])) <= FD_ATOL + FD_RTOL * abs(fd), (kind, int(source), fd, float(edges[source]))
            checked += 1
    assert checked == 15 and float(edges.abs().max()) > 1e-2  # not a comparison of zeros


def test_transcoders_fitted_in_float32_are_the_same_in_float64():
    """No direction of the skip so large that float32's rounding of its input decides the output.
    Fitted on lister-tiny in float32 (as bench/compare_circuit_tracer.py runs it), the skip once had
    entries of 2e4 along the all-ones direction that LayerNorm's output nulls: circuit-tracer's error
    vectors, the same sum in another order, then differed from ours by 0.14."""
    loaded = load_model("lister-tiny", device="cpu", dtype=torch.float32)
    tcs = fit_transcoders(loaded)
    spec = build_prompts(["short"], ["Animals"], samples_per_topic=1, base_seed=0)
    sample = sample_lists(loaded, spec, SAMPLING_PRESETS["code"])[0]
    _, cache = loaded.model.run_with_cache(torch.tensor([sample.tokens]), names_filter=lambda n: n.endswith("ln2.hook_normalized"))
    for layer, tc in tcs.items():
        x = cache[f"blocks.{layer}.ln2.hook_normalized"][0]
        single = x @ tc.W_skip.T
        exact = x.double() @ tc.W_skip.double().T
        assert float((single.double() - exact).abs().max()) < 1e-4 * float(exact.abs().max()), layer


def test_batched_rows_equal_one_backward_per_target(tiny64, setup):
    tcs, attn, sample, pos, state, ids = setup
    nodes = build_nodes(state, True, [pos])
    direction, _ = rep.metric_direction(tiny64.model, **ids)
    rows = list(nodes.where(TARGET)) + list(np.flatnonzero(nodes.pos == pos)[:11])
    batched = compute_rows(tiny64.model, state, tcs, attn, nodes, rows, direction, batch=12)
    single = compute_rows(tiny64.model, state, tcs, attn, nodes, rows, direction, batch=1)
    assert torch.allclose(batched, single, atol=1e-12) and batched.abs().max() > 1e-2


@pytest.fixture(scope="module")
def graph32():
    """A whole graph in float32 without attention features (a few seconds)."""
    loaded = load_model("lister-tiny", device="cpu")
    tcs = fit_transcoders(loaded)
    spec = build_prompts(["short"], ["Animals"], samples_per_topic=1, base_seed=0)
    sample = sample_lists(loaded, spec, SAMPLING_PRESETS["code"])[0]
    pos = sample.structure.attribution_pos
    return attribute_graph(loaded.model, sample.tokens, tcs, {}, [pos], blank_id=loaded.ids.blank, newline_id=loaded.ids.newline, batch=128)


def test_pruning_keeps_the_stated_share_of_influence(graph32):
    for node_threshold in (0.5, 0.8):
        pruned = prune(graph32, node_threshold=node_threshold, edge_threshold=0.98)
        kinds = graph32.nodes.kind
        assert pruned.node_mask[np.isin(kinds, (TOKEN, TARGET))].all()
        assert pruned.kept_node_influence >= node_threshold - 0.05, pruned.kept_node_influence
        n_kept = int(pruned.node_mask[np.isin(kinds, (TC, MLP_ERROR))].sum())
        assert 0 < n_kept < int(np.isin(kinds, (TC, MLP_ERROR)).sum())  # pruning removed something and kept something
        # every kept edge joins kept nodes
        rows, cols = torch.nonzero(pruned.edge_mask, as_tuple=True)
        assert pruned.node_mask[rows.numpy()].all() and pruned.node_mask[cols.numpy()].all()
    replacement, completeness = scores(graph32)
    assert 0 < replacement < 1 and 0 < completeness < 1


@pytest.mark.parametrize("value", [0, -0.1, 1.5, float("nan"), "0.8", True])
def test_thresholds_outside_0_1_are_refused(value):
    with pytest.raises(ListerError, match=r"\(0, 1\]"):
        check_threshold("node threshold", value)


def test_a_target_outside_the_prompt_is_refused_before_work(tiny64, setup):
    tcs, attn, sample, pos, state, ids = setup
    with pytest.raises(ListerError, match="valid: 0.."):
        attribute_graph(tiny64.model, sample.tokens, tcs, attn, [len(sample.tokens) + 3], **ids)


def test_scaling_a_node_changes_the_target_as_the_graph_predicts(tiny64, setup):
    """In the replacement model a small scaling (no feature crosses its threshold) moves the metric
    exactly as the graph's linear propagation says; zeroing is reported beside the real model."""
    from lister_tui.core.study.graphs.checks import (
        check_nodes,
        graph_prediction,
        measured,
    )

    tcs, attn, sample, pos, state, ids = setup
    graph = attribute_graph(tiny64.model, sample.tokens, tcs, {}, [pos], **ids, batch=256)
    A = graph.adjacency[graph.targets[0]].abs()
    strongest = [int(i) for i in A.argsort(descending=True)[:40] if graph.nodes.kind[int(i)] in (TC, MLP_ERROR)][:4]
    for node in strongest:
        predicted = graph_prediction(graph, node, 0.99)[0]
        got = measured(tiny64.model, graph, tcs, {}, node, 0.99, frozen=True, **ids)[0]
        assert abs(predicted - got) <= 1e-6 + 1e-4 * abs(got), (node, predicted, got)
        assert abs(got) > 1e-5
    rows = check_nodes(tiny64.model, graph, tcs, {}, strongest, factor=0.0, **ids)
    assert len(rows) == len(strongest)
    for row in rows:
        assert all(np.isfinite(row[k]) for k in ("graph", "replacement", "real"))


def test_a_whole_graphs_rows_are_the_rows_computed_alone(tiny64, setup):
    """attribute_graph writes each batch's rows straight into the adjacency (no second [rows, N]
    copy): every row lands at its node, and the rows of nodes without inputs stay zero."""
    tcs, _, sample, pos, _, ids = setup
    graph = attribute_graph(tiny64.model, sample.tokens, tcs, {}, [pos], **ids, batch=7)
    nodes = graph.nodes
    state = graph.extra["state"]
    direction, _ = rep.metric_direction(tiny64.model, **ids)
    features = nodes.where(TC)
    rows = [int(graph.targets[0]), int(features[0]), int(features[len(features) // 2]), int(features[-1])]
    alone = compute_rows(tiny64.model, state, tcs, {}, nodes, rows, direction, batch=1).float()
    assert torch.allclose(graph.adjacency[rows], alone, rtol=1e-6, atol=1e-9)
    assert all(float(graph.adjacency[r].abs().max()) > 0 for r in rows)
    no_inputs = np.flatnonzero(np.isin(nodes.kind, (MLP_ERROR, TOKEN)))
    assert float(graph.adjacency[no_inputs].abs().max()) == 0.0


def test_a_graph_is_cancelled_after_the_backward_pass_that_asked(tiny64, setup):
    """on_progress returning True stops the work after that pass (a worker's cancel), with a clear error."""
    tcs, attn, sample, pos, state, ids = setup
    calls = []

    def cancel(done, total):
        calls.append((done, total))
        return True

    with pytest.raises(ListerError, match="cancelled"):
        attribute_graph(tiny64.model, sample.tokens, tcs, attn, [pos], **ids, batch=32, on_progress=cancel)
    assert len(calls) == 1 and calls[0][1] > 10  # one pass of many was done
