"""The head view of a lister-tiny graph edge: the planted template head carries the " short" edge, and its
frozen pattern row at the list's position looks at " short"; edges no head carries are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lister_tui.core.engine.generation import sample_lists
from lister_tui.core.engine.loading import load_model
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.engine.transcoders import load_transcoders
from lister_tui.core.errors import ListerError
from lister_tui.core.study.graphs.attribute import TC, TOKEN, attribute_graph
from lister_tui.core.study.graphs.head_view import head_view
from lister_tui.core.study.graphs.heads import head_label, head_shares, strongest_path
from lister_tui.core.study.settings import SAMPLING_PRESETS

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def short_graph():
    """A short-template list's graph at its attribution position (shipped transcoders, attention features off)."""
    loaded = load_model("lister-tiny", device="cpu")
    tcs = load_transcoders(loaded)
    sample = sample_lists(loaded, build_prompts(["short"], ["Animals"], samples_per_topic=1, base_seed=0), SAMPLING_PRESETS["code"])[0]
    ids = dict(blank_id=loaded.ids.blank, newline_id=loaded.ids.newline)
    graph = attribute_graph(loaded.model, sample.tokens, tcs, {}, [sample.structure.attribution_pos], **ids, batch=256)
    short_pos = sample.tokens.index(loaded.tokenizer.convert_tokens_to_ids(" short"))
    return loaded, tcs, ids, graph, short_pos


def template_head(loaded, tokens, word_pos) -> str:
    """The head of layers 1.. attending most to ``word_pos`` from a later position, from the real model's
    patterns (as tests/test_graphs_ground_truth.py finds the organism's head; not written in)."""
    with torch.no_grad():
        _, cache = loaded.model.run_with_cache(torch.tensor([tokens]), names_filter=lambda n: n.endswith("hook_pattern"))
    best, n_heads = ("", 0.0), loaded.model.cfg.n_heads
    for layer in range(1, loaded.model.cfg.n_layers):
        weights = cache[f"blocks.{layer}.attn.hook_pattern"][0, :, word_pos + 1 :, word_pos].amax(dim=-1)
        head = int(weights.argmax())
        if float(weights[head]) > best[1]:
            best = (head_label(layer * n_heads + head, n_heads), float(weights[head]))
    return best[0]


def test_the_short_edge_is_carried_by_the_template_head_looking_at_short(short_graph):
    loaded, tcs, ids, graph, short_pos = short_graph
    nodes = graph.nodes
    source = int(np.flatnonzero((nodes.kind == TOKEN) & (nodes.pos == short_pos))[0])
    path = strongest_path(graph, source, int(graph.targets[0]))
    crossing = [(t, s) for s, t in zip(path[:-1], path[1:]) if nodes.pos[s] != nodes.pos[t]]
    assert len(crossing) == 1
    t, s = crossing[0]
    assert nodes.pos[s] == short_pos and nodes.pos[t] == nodes.pos[graph.targets[0]]  # into the attribution position
    shares = head_shares(loaded.model, graph, tcs, {}, crossing, **ids)
    view = head_view(graph, t, s, shares, top=3)
    expected = template_head(loaded, graph.tokens, short_pos)
    assert view.labels[0] == expected, (view.labels, view.shares)
    assert view.shares[0] == pytest.approx(float(shares[(t, s)].max()))
    assert view.fraction(0) > 0.5  # it carries most of the edge
    assert view.patterns.shape == (3, view.target_pos + 1) and view.source_pos == short_pos
    assert int(np.argmax(view.patterns[0])) == short_pos  # its row at the list's position looks at " short"
    assert view.weight_on_source(0) == pytest.approx(view.patterns[0].max())
    # the rows are the frozen pattern itself: each sums to 1 over the positions up to the target
    np.testing.assert_allclose(view.patterns.sum(1), 1.0, atol=1e-5)
    # the shares array alone gives the same view
    assert head_view(graph, t, s, shares[(t, s)], top=3).heads == view.heads
    assert [abs(x) for x in view.shares] == sorted((abs(x) for x in view.shares), reverse=True)


def test_edges_no_head_carries_are_refused(short_graph):
    graph = short_graph[3]
    nodes, A = graph.nodes, graph.adjacency
    n_heads_all = graph.n_layers * graph.n_heads
    zeros = np.zeros(n_heads_all)
    same = next((t, s) for t, s in torch.nonzero(A).tolist() if nodes.pos[t] == nodes.pos[s])
    with pytest.raises(ListerError, match="no attention head carries it"):
        head_view(graph, same[0], same[1], zeros)
    # a token does not read anything: no edge from a feature into it
    token = int(np.flatnonzero((nodes.kind == TOKEN) & (nodes.pos == nodes.pos[graph.targets[0]]))[0])
    feature = int(np.flatnonzero((nodes.kind == TC) & (nodes.pos < nodes.pos[token]))[0])
    with pytest.raises(ListerError, match="no edge from"):
        head_view(graph, token, feature, zeros)
    crossing = next((t, s) for t, s in torch.nonzero(A).tolist() if nodes.pos[t] != nodes.pos[s])
    with pytest.raises(ListerError, match="were not computed"):
        head_view(graph, crossing[0], crossing[1], {})
    with pytest.raises(ListerError, match="one value per head"):
        head_view(graph, crossing[0], crossing[1], np.zeros(3))
    with pytest.raises(ListerError, match="not in the graph"):
        head_view(graph, len(nodes), crossing[1], zeros)
    with pytest.raises(ListerError, match="top must be"):
        head_view(graph, crossing[0], crossing[1], zeros, top=0)
