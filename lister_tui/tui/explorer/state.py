"""What the explorer is showing, as plain data: no widgets, no workers."""

from __future__ import annotations

from dataclasses import dataclass

from lister_tui.tui.widgets.feature_table import SORT_KEYS

TOP_K = 5  # the post's k for the study's top-k ablation and the dataset ranking
# the features table's density option (D): as ranked, dense features flagged, or down-weighted
DENSITY_VIEWS: tuple[str, ...] = ("plain", "flag", "downweight")


@dataclass
class ExplorerState:
    """The main screen's state; the controller changes it, the views read it."""

    current: str | None = None  # the selected sample's key
    compare: bool = True  # the compare mode (d): a run's base and ablated regenerations side by side
    run_hidden: bool = False  # c cleared the view: the latest run's deltas and tokens are not shown
    live: bool = False  # every toggle regenerates at once
    from_attr: bool = True  # regenerate from the attribution position (the study's choice), else from the prompt
    dataset_mode: bool = False  # features table: the batch's dataset ranking instead of this sample's pairs
    sae_filter: int = 0  # 0: every SAE, i: the i-th SAE of the entry
    sort_index: int = 0  # into SORT_KEYS
    run_id: int = 0  # the newest regeneration; steps and results of older ones are stale
    streaming: tuple[int, ...] | None = None  # the running regeneration's tokens so far
    stream_prefix: int | None = None  # where the streaming regeneration started
    regen_state: str = ""  # "regenerating…", "cancelled", "regeneration failed", …
    busy: str = ""  # what a generate or attribute worker is doing
    pending_matrix: bool = False  # open the matrix once the batch is attributed
    density_view: str = "plain"  # one of DENSITY_VIEWS

    @property
    def sort_key(self) -> str:
        return SORT_KEYS[self.sort_index]

    def regen_from_text(self, short: bool = False) -> str:
        if short:
            return "attr pos" if self.from_attr else "prompt"
        return "attribution pos" if self.from_attr else "prompt"
