"""Widgets of the explorer, re-exported by screen area."""

from lister_tui.tui.widgets.ablation_panel import AblationPanel, ChoiceTable
from lister_tui.tui.widgets.feature_table import FeatureRow, FeatureTable
from lister_tui.tui.widgets.heatmap import Heatmap
from lister_tui.tui.widgets.metric_strip import Curve, MetricStrip
from lister_tui.tui.widgets.sample_table import SampleTable
from lister_tui.tui.widgets.token_view import TokenDoc, TokenView, visible

__all__ = [
    "AblationPanel",
    "ChoiceTable",
    "Curve",
    "FeatureRow",
    "FeatureTable",
    "Heatmap",
    "MetricStrip",
    "SampleTable",
    "TokenDoc",
    "TokenView",
    "visible",
]
