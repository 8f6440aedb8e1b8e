"""Circuits: feature-to-feature attribution across SAEs (Marks et al., 2024, arXiv 2403.19647).

- :mod:`.graph`: nodes, edges, settings, which sites feed which;
- :mod:`.effects`: node effects and batched edge effects on one sample;
- :mod:`.build`: the top nodes per site and the edges between them (position or feature level);
- :mod:`.ablate`: faithfulness and completeness by real ablations;
- :mod:`.report`: which sites are worth loading.
"""

from lister_tui.core.study.circuits.ablate import add_faithfulness, log_grid
from lister_tui.core.study.circuits.build import Built, CircuitCancelled, build_circuit
from lister_tui.core.study.circuits.graph import (
    EMBED,
    METRIC,
    Circuit,
    CircuitSettings,
    Edge,
    FaithfulnessPoint,
    Node,
    upstream_sites,
)

__all__ = [
    "EMBED",
    "METRIC",
    "Built",
    "Circuit",
    "CircuitCancelled",
    "CircuitSettings",
    "Edge",
    "FaithfulnessPoint",
    "Node",
    "add_faithfulness",
    "build_circuit",
    "find_circuit",
    "log_grid",
    "upstream_sites",
]


def find_circuit(loaded, samples, settings, *, faithfulness: bool = True, on_progress=None, cancelled=None) -> Built:
    """Build a circuit and (by default) measure its faithfulness curve and completeness."""
    built = build_circuit(loaded, samples, settings, on_progress=on_progress, cancelled=cancelled)
    if faithfulness:
        add_faithfulness(loaded, built, on_progress=on_progress, cancelled=cancelled)
    return built
