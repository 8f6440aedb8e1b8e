"""The main screen's panes: each renders what it is given and posts what the user asked for.

- :class:`TokensPane`: the sample's tokens, and the ablated regeneration beside them in
  compare mode (keeps the two token cursors together);
- :class:`InspectorPane`: the metric strip and the token under the cursor;
- :class:`FeaturesPane`: the features table with its header and filter;
- the sample browser and the ablation panel are single widgets:
  :class:`~lister_tui.tui.widgets.SampleTable`, :class:`~lister_tui.tui.widgets.AblationPanel`.

None of them reads the workspace or runs a worker: the screen hands them what
:mod:`lister_tui.tui.explorer.views` computed.
"""

from lister_tui.tui.panes.features import FeaturesPane
from lister_tui.tui.panes.inspector import InspectorPane
from lister_tui.tui.panes.tokens import TokensPane

__all__ = ["FeaturesPane", "InspectorPane", "TokensPane"]
