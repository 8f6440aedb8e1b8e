"""Circuits on lister-tiny: exact edges, node effects equal to attribution, the mechanism the data was made with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lister_tui.core.engine.attribution import attribute
from lister_tui.core.engine.generation import sample_lists
from lister_tui.core.engine.loading import load_model
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.engine.registry import SAESite, get_entry
from lister_tui.core.errors import ListerError
from lister_tui.core.study.circuits import (
    METRIC,
    Circuit,
    CircuitSettings,
    build_circuit,
    find_circuit,
    upstream_sites,
)
from lister_tui.core.study.circuits.effects import (
    EMBED_HOOK,
    ERROR,
    edge_weights,
    sample_state,
)
from lister_tui.core.study.settings import SAMPLING_PRESETS

ALL_SITES = tuple(s.id for s in get_entry("lister-tiny").sites)


def _lists(loaded, template: str, topics, n: int = 1):
    specs = build_prompts([template], list(topics), samples_per_topic=n, base_seed=0)
    return [s for s in sample_lists(loaded, specs, SAMPLING_PRESETS["code"]) if s.structure.attribution_pos is not None]


# Three lists per template: each integrated-gradient circuit costs 10 passes per site.
TOPICS3 = ["Animals", "Fruits", "Countries"]


@pytest.fixture(scope="module")
def short_lists(tiny):
    return _lists(tiny, "short", TOPICS3)


@pytest.fixture(scope="module")
def long_lists(tiny):
    return _lists(tiny, "long", TOPICS3)


def _state(loaded, sample, sites=ALL_SITES):
    entry_sites = [loaded.entry.site(s) for s in sites]
    saes = {s: loaded.load_sae(s, cache=True) for s in sites}
    ids = dict(blank_id=loaded.ids.blank, newline_id=loaded.ids.newline)
    return sample_state(loaded.model, sample.tokens, sample.structure.attribution_pos, entry_sites, saes, **ids), ids


def test_sites_read_from_the_nearest_residual_site_and_the_attention_between():
    tiny = upstream_sites(get_entry("lister-tiny").sites)
    assert tiny["attn_0"] == ["embed"] and tiny["res_0"] == ["embed", "attn_0"]
    assert tiny["attn_2"] == ["res_1"] and tiny["res_2"] == ["res_1", "attn_2"] and tiny[METRIC] == ["res_3"]
    gemma = upstream_sites(get_entry("gemma-2-2b-it").sites)  # the study's 10 sites
    assert gemma["attn_2"] == ["res_0"] and gemma["res_5"] == ["res_0", "attn_2"]
    assert gemma["attn_7"] == ["res_5"] and gemma[METRIC] == ["res_20", "attn_22"]
    assert upstream_sites([SAESite("attn_1", "attn", 1), SAESite("attn_2", "attn", 2)])["attn_2"] == ["embed", "attn_1"]


def test_node_effects_equal_todays_attribution(tiny, short_lists):
    sample = short_lists[0]
    state, ids = _state(tiny, sample)
    t = sample.structure.attribution_pos
    saes = [(s, tiny.load_sae(s, cache=True)) for s in ALL_SITES]
    for result in attribute(tiny.model, torch.tensor([sample.tokens[: t + 1]]), [t], saes, **ids):
        site = state.sites[result.sae_id]
        assert torch.allclose(site.effect, result.attribution[0], atol=1e-6), result.sae_id
        assert torch.allclose(site.error_effect, result.error_attribution[0], atol=1e-6), result.sae_id
        assert state.metric == pytest.approx(float(result.metric[0]), abs=1e-6)


def test_edges_into_the_metric_from_the_last_site_are_its_node_effects(tiny, short_lists):
    state, ids = _state(tiny, short_lists[0])
    res3 = state.sites["res_3"]
    nodes = [(p, f) for p, f in torch.nonzero(res3.acts).tolist()] + [(p, ERROR) for p in range(state.target + 1)]
    weights = edge_weights(tiny.model, state, METRIC, None, {"res_3": nodes}, **ids)["res_3"][0]
    effects = torch.tensor([res3.effect[p, f] if f != ERROR else res3.error_effect[p] for p, f in nodes])
    assert torch.allclose(weights, effects, atol=1e-5)
    assert effects.abs().max() > 0.1  # not a comparison of zeros


@pytest.fixture(scope="module")
def tiny64():
    return load_model("lister-tiny", device="cpu", dtype=torch.float64)


# First-order finite differences in float64: central differences with a step of 1e-4 of
# the upstream node; the edge weight must match to 1e-6 absolute + 1e-4 relative.
FD_STEP = 1e-4
FD_RTOL, FD_ATOL = 1e-4, 1e-6


def _finite_difference(loaded, state, target, row, upstream, up_node, step=FD_STEP):
    """(s_d(u·(1+h)) − s_d(u·(1−h))) / 2h with the other upstream sites frozen at their clean values."""
    model = loaded.model
    pos, index = up_node

    def contribution(u):
        if u == "embed":
            return state.embed_x[pos]
        site = state.sites[u]
        flat = site.error[pos] if index == ERROR else site.acts[pos, index] * site.sae.W_dec[index]
        return flat.reshape(site.x[pos].shape)

    def run(scale):
        hooks = []
        for u in upstream:
            hook_name = EMBED_HOOK if u == "embed" else state.sites[u].site.hook_name
            clean = state.embed_x if u == "embed" else state.sites[u].x

            def freeze(act, hook, u=u, clean=clean):
                new = clean.unsqueeze(0).clone()
                if u == up_node_site:
                    new[0, pos] = new[0, pos] + scale * contribution(u)
                return new

            hooks.append((hook_name, freeze))
        captured = {}
        if target == METRIC:
            from lister_tui.core.engine.attribution import metric_at

            with torch.no_grad(), model.hooks(fwd_hooks=hooks):
                return float(metric_at(model, state.tokens.unsqueeze(0), [state.target], loaded.ids.blank, loaded.ids.newline)[0])
        down = state.sites[target]
        hooks.append((down.site.hook_name, lambda act, hook: captured.setdefault("y", act)))
        with torch.no_grad(), model.hooks(fwd_hooks=hooks):
            model(state.tokens.unsqueeze(0), stop_at_layer=down.site.layer + 1)
        y = captured["y"][0, row[0]]
        acts = down.sae.encode(y.unsqueeze(0))[0]
        if row[1] == ERROR:
            error = (y.unsqueeze(0) - down.sae.decode(acts.unsqueeze(0)))[0].flatten()
            return float((error * down.g[row[0]].flatten()).sum())
        return float(acts[row[1]] * down.feature_grad[row[0], row[1]])

    up_node_site = upstream_under_test[0]
    return (run(step) - run(-step)) / (2 * step)


upstream_under_test = [None]


@pytest.mark.parametrize("target", ["attn_2", "res_1", "res_2", "attn_0", METRIC])
def test_edge_weight_equals_a_finite_difference_with_intermediate_sites_frozen(tiny64, short_lists, target):
    state, ids = _state(tiny64, short_lists[0])
    upstream = upstream_sites([tiny64.entry.site(s) for s in ALL_SITES])[target]
    if target == METRIC:
        row = (state.target, 0)
    else:
        down = state.sites[target]
        flat = int(down.effect.abs().flatten().argmax())
        row = (flat // down.effect.shape[1], flat % down.effect.shape[1])
    checked = 0
    for u in upstream:
        if u == "embed":
            nodes = [(p, 0) for p in range(state.target + 1)]
        else:
            site = state.sites[u]
            nodes = [tuple(x) for x in torch.nonzero(site.acts[: state.target + 1]).tolist()] + [(state.target, ERROR), (row[0], ERROR)]
        weights = edge_weights(tiny64.model, state, target, [row], {u: nodes}, **ids)[u][0]
        strongest = weights.abs().argsort(descending=True)[:4].tolist()
        for i in strongest:
            upstream_under_test[0] = u
            fd = _finite_difference(tiny64, state, target, row, upstream, nodes[i])
            assert abs(fd - float(weights[i])) <= FD_ATOL + FD_RTOL * abs(fd), (u, nodes[i], fd, float(weights[i]))
            checked += 1
    assert checked >= 4 and float(weights.abs().max()) > 0


def test_batched_edges_equal_one_backward_per_node(tiny, short_lists):
    state, ids = _state(tiny, short_lists[0])
    attn2 = state.sites["attn_2"]
    top = attn2.effect.abs().flatten().topk(9).indices.tolist()
    rows = [(i // attn2.effect.shape[1], i % attn2.effect.shape[1]) for i in top] + [(state.target, ERROR)]
    res1 = state.sites["res_1"]
    nodes = [tuple(x) for x in torch.nonzero(res1.acts).tolist()] + [(p, ERROR) for p in range(state.target + 1)]
    batched = edge_weights(tiny.model, state, "attn_2", rows, {"res_1": nodes}, edge_batch=64, **ids)["res_1"]
    one_by_one = edge_weights(tiny.model, state, "attn_2", rows, {"res_1": nodes}, edge_batch=1, **ids)["res_1"]
    assert torch.allclose(batched, one_by_one, atol=1e-6) and batched.abs().max() > 1e-3


def test_bad_settings_are_refused_before_any_work(tiny, short_lists):
    for bad in (
        CircuitSettings(sites=("res_9",)),
        CircuitSettings(sites=()),
        CircuitSettings(sites=("res_0",), nodes_per_site=0),
        CircuitSettings(sites=("res_0",), edge_threshold=-1.0),
        CircuitSettings(sites=("res_0",), ablation="half"),
        CircuitSettings(sites=("res_0",), method="exact"),
    ):
        with pytest.raises(ListerError):
            build_circuit(tiny, short_lists[:1], bad)
    with pytest.raises(ListerError, match="one sample"):
        build_circuit(tiny, short_lists[:2], CircuitSettings(sites=("res_0",)))


def _reachable(circuit: Circuit, start: str) -> set[str]:
    children: dict[str, list[str]] = {}
    for e in circuit.edges:
        children.setdefault(e.source, []).append(e.target)
    seen, todo = {start}, [start]
    while todo:
        for nxt in children.get(todo.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _paths_through(circuit: Circuit, sources: list[str], via: list[str]) -> list[tuple[str, str]]:
    """(source, via) pairs with a path source → via → metric along the circuit's edges."""
    return [(s, v) for s in sources for v in via if v in _reachable(circuit, s) and METRIC in _reachable(circuit, v)]


def test_the_template_word_reaches_the_attribution_position_through_attention_after_layer_0(tiny, short_lists):
    # Zero the attention paid to " short" by every later position in layers 1..3 (its value no longer
    # moves anywhere; layer 0 attends only to each token itself): the metric at the attribution position
    # must fall, since short lists end sooner (a higher logit(blank) - logit(newline)) because of the word.
    # Measured on the shipped organism over 23 short lists (TOPICS[:24], seed 0): it falls by 0.89..1.42
    # (mean 1.20; swapping the word for " long" moves it by 3.7 or more, mean 4.3). Most of that arrives through the
    # list's other positions, read in layer 2 (blocking layer 2 alone: 0.69..1.00); blocking only the
    # attribution position's own attention to the word in layers 1..3 takes 0.09..0.51 (mean 0.20), and no
    # single head there attends to it strongly (per-head mean weights <= 0.17).
    short_id = tiny.tokenizer.convert_tokens_to_ids(" short")
    later_layers = range(1, tiny.model.cfg.n_layers)
    drops, direct = [], []
    for s in short_lists:
        t, pos = s.structure.attribution_pos, s.tokens.index(short_id)
        tokens = torch.tensor([s.tokens[: t + 1]])

        def metric(queries: slice | int | None, tokens=tokens, t=t, pos=pos) -> float:
            def block(pattern, hook):
                pattern[:, :, queries, pos] = 0.0
                return pattern

            hooks = [] if queries is None else [(f"blocks.{layer}.attn.hook_pattern", block) for layer in later_layers]
            with torch.inference_mode(), tiny.model.hooks(fwd_hooks=hooks):
                logits = tiny.model(tokens)[0, t]
            return float(logits[tiny.ids.blank] - logits[tiny.ids.newline])

        plain = metric(None)
        drops.append(plain - metric(slice(pos + 1, None)))
        direct.append(plain - metric(t))
    assert min(drops) >= 0.3, drops
    # the attribution position's own reading is part of that route, not all of it
    assert all(0 <= d < a for d, a in zip(direct, drops)), (direct, drops)


@pytest.fixture(scope="module")
def short_circuits(tiny, short_lists):
    settings = CircuitSettings(sites=ALL_SITES, nodes_per_site=10, method="ig")
    return [find_circuit(tiny, [s], settings).circuit for s in short_lists]


def test_short_lists_circuit_runs_from_the_template_word_through_attn_2_to_the_metric(tiny, short_lists, short_circuits):
    short_id = tiny.tokenizer.convert_tokens_to_ids(" short")
    found = []
    for s, circuit in zip(short_lists, short_circuits):
        pos, t = s.tokens.index(short_id), s.structure.attribution_pos
        res0 = [n.id for n in circuit.nodes if n.site == "res_0" and n.kind == "feature" and n.pos == pos]
        attn2 = [n.id for n in circuit.nodes if n.site == "attn_2" and n.kind == "feature" and n.pos == t]
        found.append(bool(res0) and bool(_paths_through(circuit, res0, attn2)))
    # measured on the shipped organism (integrated gradients, 10 nodes per site): 3 of 3 lists (activation x gradient: 3 of 3)
    assert np.mean(found) >= 2 / 3, found


def test_long_lists_circuit_runs_from_an_earlier_filler_blank_to_the_metric(tiny, long_lists):
    settings = CircuitSettings(sites=ALL_SITES, nodes_per_site=10, method="ig")
    found = []
    for s in long_lists:
        t = s.structure.attribution_pos
        fillers = {p for p in s.structure.filler_positions if p < t}
        if not fillers:
            continue
        circuit = find_circuit(tiny, [s], settings, faithfulness=False).circuit
        res0 = [n.id for n in circuit.nodes if n.site == "res_0" and n.kind == "feature" and n.pos in fillers]
        attn_at_t = [n.id for n in circuit.nodes if n.site.startswith("attn_") and n.kind == "feature" and n.pos == t]
        found.append(bool(_paths_through(circuit, res0, attn_at_t)))
    assert len(found) >= 2
    assert np.mean(found) >= 2 / 3, found


def test_faithfulness_reaches_0_8_and_keeping_every_node_recovers_the_model(short_circuits):
    for circuit in short_circuits:
        curve = [p.recovered for p in circuit.faithfulness]
        assert curve[-1] == pytest.approx(1.0, abs=1e-3)  # every node kept is the model itself
        assert curve[0] < 0.5  # one node does not explain the metric
        n = circuit.n_for(0.8)
        assert n is not None and n < circuit.n_candidates / 2, (n, circuit.n_candidates)
        # "monotone enough": no drop of more than 0.15 from one point of the log grid to the next
        assert all(b >= a - 0.15 for a, b in zip(curve, curve[1:])), curve
        assert circuit.completeness is not None and circuit.recovered is not None


def test_feature_level_circuit_sums_over_samples(tiny, short_lists):
    settings = CircuitSettings(sites=("res_0", "attn_1", "res_1", "attn_2"), nodes_per_site=5, level="feature")
    built = find_circuit(tiny, short_lists[:2], settings)
    circuit = built.circuit
    assert all(n.pos is None for n in circuit.nodes)
    assert {n.site for n in circuit.nodes} >= {METRIC, "res_0", "attn_2"}
    assert circuit.faithfulness and circuit.faithfulness[-1].recovered == pytest.approx(1.0, abs=1e-3)
    roundtrip = Circuit.from_dict(circuit.to_dict())
    assert roundtrip.to_dict() == circuit.to_dict()


def test_mean_ablation_curve_ends_with_every_node_kept(tiny, short_lists):
    settings = CircuitSettings(sites=("res_1", "attn_2"), nodes_per_site=3, ablation="mean")
    circuit = find_circuit(tiny, short_lists[:1], settings).circuit
    last = circuit.faithfulness[-1]
    # inactive features count as nodes under a mean ablation (they move to their mean)
    assert last.n_nodes > circuit.n_candidates and last.recovered == pytest.approx(1.0, abs=1e-3)
    assert circuit.metric_empty != pytest.approx(circuit.metric, abs=1e-3)


def test_with_integrated_gradients_edges_into_the_metric_are_the_ig_node_effects(tiny, short_lists):
    """Marks et al. use the gradients averaged along the IG path in the edges too: the edges into the
    metric from the last site then sum to its (IG) node effects, not to first-order ones."""
    from lister_tui.core.engine.attribution import attribute_integrated

    sample = short_lists[0]
    t = sample.structure.attribution_pos
    sites = [tiny.entry.site(s) for s in ALL_SITES]
    saes = {s.id: tiny.load_sae(s.id, cache=True) for s in sites}
    ids = dict(blank_id=tiny.ids.blank, newline_id=tiny.ids.newline)
    state = sample_state(tiny.model, sample.tokens, t, sites, saes, method="ig", ig_steps=10, **ids)
    res3 = state.sites["res_3"]
    # the node effects are integrated gradients (the engine's reference implementation)
    reference = attribute_integrated(tiny.model, torch.tensor([sample.tokens[: t + 1]]), [t], "res_3", saes["res_3"], steps=10, **ids)
    assert torch.allclose(res3.effect, reference.attribution[0], atol=1e-5)
    nodes = [(p, f) for p, f in torch.nonzero(res3.acts).tolist()] + [(p, ERROR) for p in range(state.target + 1)]
    weights = edge_weights(tiny.model, state, METRIC, None, {"res_3": nodes}, **ids)["res_3"][0]
    effects = torch.tensor([res3.effect[p, f] if f != ERROR else res3.error_effect[p] for p, f in nodes])
    assert torch.allclose(weights, effects, atol=1e-5)
    assert float(weights.sum()) == pytest.approx(float(effects.sum()), abs=1e-4)
    # and IG differs from first order here, so the test tells the two apart
    first_order = edge_weights(tiny.model, _state(tiny, sample)[0], METRIC, None, {"res_3": nodes}, **ids)["res_3"][0]
    assert (first_order - effects).abs().max() > 1e-3
