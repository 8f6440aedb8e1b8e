"""Ground truth: the graph of a short-template list finds the organism's planted path from " short".

lister-tiny was trained so that short-template lists end sooner; the word " short" in the prompt
is read at the list's positions by attention. The head that does it is found here from the real
model's attention patterns (the head of layers 1.. that attends most to " short" from a later
position), not written in; the graph's strongest path from the " short" token to the metric must
cross positions through that head, and with attention features on, through an attention feature
at the attribution position.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from graph_fixtures import fit_transcoders

from lister_tui.core.engine.generation import sample_lists
from lister_tui.core.engine.loading import load_model
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.study.graphs.attribute import ATTN, TOKEN, attribute_graph
from lister_tui.core.study.graphs.heads import head_label, head_shares, strongest_path
from lister_tui.core.study.settings import SAMPLING_PRESETS

pytestmark = pytest.mark.slow  # four whole graphs at the attribution position (about two minutes on two free cores)


@pytest.fixture(scope="module", params=["shipped", "fitted"])
def setup(request):
    """lister-tiny's trained transcoders, and transcoders fitted here (the path is attention's, so both find it)."""
    from lister_tui.core.engine.transcoders import load_transcoders

    loaded = load_model("lister-tiny", device="cpu")
    tcs = load_transcoders(loaded) if request.param == "shipped" else fit_transcoders(loaded)
    sample = sample_lists(loaded, build_prompts(["short"], ["Animals"], samples_per_topic=1, base_seed=0), SAMPLING_PRESETS["code"])[0]
    return loaded, tcs, sample


def template_head(loaded, tokens, word_pos) -> tuple[str, float]:
    """The head of layers 1.. with the largest attention to ``word_pos`` from a later position."""
    with torch.no_grad():
        _, cache = loaded.model.run_with_cache(torch.tensor([tokens]), names_filter=lambda n: n.endswith("hook_pattern"))
    best = ("", 0.0)
    n_heads = loaded.model.cfg.n_heads
    for layer in range(1, loaded.model.cfg.n_layers):
        weights = cache[f"blocks.{layer}.attn.hook_pattern"][0, :, word_pos + 1 :, word_pos].amax(dim=-1)  # [heads]
        head = int(weights.argmax())
        if float(weights[head]) > best[1]:
            best = (head_label(layer * n_heads + head, n_heads), float(weights[head]))
    return best


@pytest.mark.parametrize("attention_features", [False, True])
def test_the_strongest_path_from_short_crosses_positions_through_the_template_head(setup, attention_features):
    loaded, tcs, sample = setup
    pos = sample.structure.attribution_pos
    short_pos = sample.tokens.index(loaded.tokenizer.convert_tokens_to_ids(" short"))
    head, weight = template_head(loaded, sample.tokens[: pos + 1], short_pos)
    assert weight > 0.9, (head, weight)  # one head reads the word almost alone
    attn = {layer: loaded.load_sae(f"attn_{layer}") for layer in range(4)} if attention_features else {}
    ids = dict(blank_id=loaded.ids.blank, newline_id=loaded.ids.newline)
    graph = attribute_graph(loaded.model, sample.tokens, tcs, attn, [pos], **ids, batch=256)
    nodes = graph.nodes
    source = int(np.flatnonzero((nodes.kind == TOKEN) & (nodes.pos == short_pos))[0])
    path = strongest_path(graph, source, int(graph.targets[0]))
    assert path and path[0] == source
    crossing = [(t, s) for s, t in zip(path[:-1], path[1:]) if nodes.pos[s] != nodes.pos[t]]
    assert len(crossing) == 1  # the word's position to the list's
    shares = head_shares(loaded.model, graph, tcs, attn, crossing, **ids)[crossing[0]]
    assert head_label(int(np.argmax(shares)), graph.n_heads) == head, (head, shares)
    assert shares.max() > 0.5 * abs(float(graph.adjacency[crossing[0]]))  # the head carries most of the edge
    if attention_features:
        t = crossing[0][0]
        assert nodes.kind[t] == ATTN and nodes.pos[t] == pos  # an attention feature at the attribution position
