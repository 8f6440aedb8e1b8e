"""An SAE first loaded under inference mode still serves attribution (it is cached for both).

Regenerating under an ablation runs inside ``torch.inference_mode`` and caches the SAEs it
needs; if their weights were made there, they would be inference tensors, and the next
attribution through the cached SAE's weights (``a`` with integrated gradients, a circuit)
would fail with "Inference tensors cannot be saved for backward".
"""

from __future__ import annotations

import torch

from lister_tui.core.engine.generation import sample_lists
from lister_tui.core.engine.loading import load_model
from lister_tui.core.engine.prompts import build_prompts
from lister_tui.core.study.experiment import attribute_lists
from lister_tui.core.study.settings import SAMPLING_PRESETS


def test_an_sae_cached_under_inference_mode_can_be_attributed_through():
    loaded = load_model("lister-tiny", device="cpu")  # its own: the cache is what is tested
    with torch.inference_mode():
        sae = loaded.load_sae("res_1", cache=True)
    samples = sample_lists(loaded, build_prompts(["short"], ["Animals"], samples_per_topic=1, base_seed=0), SAMPLING_PRESETS["code"])
    result = attribute_lists(loaded, samples, ["res_1"], method="ig", ig_steps=4)
    attributed = result["res_1"]
    assert attributed.top[0] and all(abs(p.attribution) > 0 for p in attributed.top[0][:3])
    assert torch.isfinite(torch.as_tensor(attributed.feature_total)).all()
    assert not any(p.is_inference() for p in sae.parameters())
    assert loaded.cached_sae("res_1") is sae  # the cached one was used, not a fresh copy
