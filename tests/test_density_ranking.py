"""Density-aware feature ranking: densities equal the cards', and dense features are flagged or down-weighted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lister_tui.core.errors import ListerError
from lister_tui.core.study.features import density_aware, feature_densities


def test_dense_features_are_flagged_or_ranked_down():
    ranking = pd.DataFrame({"sae": "res_0", "feature": [4, 1, 2], "attribution_sum": [3.0, 2.0, 1.0]})
    density = np.array([0.0, 0.001, 0.002, 0.0, 0.5])  # feature 4 fires on half the tokens
    flagged = density_aware(ranking, density, max_density=0.01)
    assert list(flagged["feature"]) == [4, 1, 2]  # the order is kept
    assert list(flagged["dense"]) == [True, False, False]
    down = density_aware(ranking, density, max_density=0.01, mode="downweight")
    assert list(down["feature"]) == [1, 2, 4]
    assert down.loc[down["feature"] == 4, "score_density_adjusted"].item() == pytest.approx(3.0 * 0.01 / 0.5)
    with pytest.raises(ListerError, match="valid: flag, downweight"):
        density_aware(ranking, density, mode="hide")
    with pytest.raises(ListerError, match=r"in \(0, 1\]"):
        density_aware(ranking, density, max_density=0)


def test_densities_are_the_cards_density(tiny, tmp_path):
    from lister_tui.core.study.cards import feature_card
    from lister_tui.core.study.corpus import Corpus, corpus_activations, reference_part

    part = reference_part(tiny, n_tokens=3000)
    density = feature_densities([corpus_activations(tiny, "res_0", part, cache=tmp_path)])
    assert density.shape == (tiny.load_sae("res_0", cache=True).cfg.d_sae,) and 0 <= density.min() and density.max() <= 1
    for feature in (int(np.argmax(density)), int(np.argsort(density)[len(density) // 2])):
        card = feature_card(tiny, "res_0", feature, Corpus((part,)), cache=tmp_path)
        assert density[feature] == pytest.approx(card.density)
