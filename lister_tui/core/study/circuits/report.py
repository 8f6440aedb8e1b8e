"""Which sites are worth loading: per site, what its SAE costs and what it adds to a circuit.

The study's first future-work item ("selecting layers based on memory versus circuit
faithfulness"): for each site, its SAE's memory, its share of the circuit's nodes, its
share of the total |node effect| over every candidate node of every site, its error
node's share of its own |effect| (what its features miss), and, when a sweep has been
run, the change in list length that zeroing its top pairs caused there.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from lister_tui.core.study.circuits.graph import Circuit

COLUMNS = [
    "site",
    "sae_memory_bytes",
    "circuit_nodes",
    "circuit_node_share",
    "effect_share",
    "error_share",
    "sweep_n_items_change",
]


def sae_memory(sae) -> int:
    """Bytes of an SAE's parameters (what loading it costs on the device)."""
    return sum(p.numel() * p.element_size() for p in sae.parameters())


def site_report(
    circuit: Circuit,
    memory: Mapping[str, int],
    sweep_effects: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One row per site of the circuit, in model order (the circuit's settings' order of sites).

    A site missing from ``memory`` (its SAE not loaded) has no memory figure (None), never 0."""
    counted = [n for n in circuit.nodes if n.kind in ("feature", "error")]
    grand = sum(t["features"] + t["error"] for t in circuit.site_totals.values())
    rows = []
    for site in circuit.site_totals:
        totals = circuit.site_totals[site]
        own = totals["features"] + totals["error"]
        n_here = sum(1 for n in counted if n.site == site)
        rows.append(
            {
                "site": site,
                "sae_memory_bytes": int(memory[site]) if site in memory else None,
                "circuit_nodes": n_here,
                "circuit_node_share": n_here / len(counted) if counted else 0.0,
                "effect_share": own / grand if grand else 0.0,
                "error_share": totals["error"] / own if own else 0.0,
                "sweep_n_items_change": None if sweep_effects is None else sweep_effects.get(site),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)
