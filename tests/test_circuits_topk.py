"""TopK SAEs decode as a @ W_dec + b_dec, so circuits take them: a TopK SAE at a lister-tiny site gives
node effects equal to activation x (d metric / d activation) taken by autograd through its decode."""

from __future__ import annotations

import torch

from lister_tui.core.engine.entries import SAESite
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.study.circuits.effects import has_linear_decoder, sample_state


def _topk(d_in: int, hook: str, k: int = 8, rescale: bool = False):
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(0)
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=64, k=k, rescale_acts_by_decoder_norm=rescale, metadata=SAEMetadata(hook_name=hook)))
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return sae.eval()


def test_a_topk_sae_works_in_circuits_with_effects_equal_to_autograd(tiny):
    from lister_tui.core.engine.generation import sample_lists
    from lister_tui.core.study.settings import SAMPLING_PRESETS

    hook = "blocks.1.hook_resid_post"
    sae = _topk(tiny.model.cfg.d_model, hook)
    assert has_linear_decoder(sae) and not has_linear_decoder(_topk(tiny.model.cfg.d_model, hook, rescale=True))
    specs = build_prompts(["short"], ["Fruits"], samples_per_topic=1, base_seed=0)
    sample = next(s for s in sample_lists(tiny, specs, SAMPLING_PRESETS["code"]) if s.structure.attribution_pos is not None)
    site = SAESite("topk_1", "res", 1)
    state = sample_state(tiny.model, sample.tokens, sample.structure.attribution_pos, [site], {"topk_1": sae},
                         blank_id=tiny.ids.blank, newline_id=tiny.ids.newline).sites["topk_1"]  # fmt: skip
    # autograd through the SAE's own decode: d (decode(a) · g) / d a  times a
    acts = state.acts.detach().clone().requires_grad_(True)
    (sae.decode(acts) * state.g).sum().backward()
    expected = acts.grad * state.acts
    assert torch.allclose(state.effect, expected, atol=1e-5)
    assert int((state.acts != 0).sum(-1).max()) <= 8  # TopK's encoder ran (k = 8)
