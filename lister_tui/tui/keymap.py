"""Every key binding of the explorer, with an id so that users can remap it.

``App.set_keymap({"lister.regenerate": "f5"})`` rebinds by id. The command palette
and the help screen read the same table, so every action is reachable without a key.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class KeySpec:
    id: str
    key: str
    action: str
    title: str  # short, for the footer
    help: str  # one line, for the help screen and the command palette
    show: bool = False  # in the footer
    palette: bool = True  # offered by the command palette
    key_display: str | None = None
    group: str | None = None  # keys of one group show together in the footer, under this word


# The focus keys: shown in the footer (as one group, so they fit 80 columns), since the arrow
# keys act on the focused pane and a new user must know how to pick a list.
FOCUS_GROUP = "focus"


APP_KEYS: tuple[KeySpec, ...] = (
    KeySpec("lister.help", "question_mark,f1", "help", "Help", "Show keys, markers and what each pane means", True, key_display="?"),
    KeySpec("lister.quit", "q", "quit", "Quit", "Quit the explorer (the session is saved first)", False),
    KeySpec("lister.save_as", "ctrl+s", "save_as", "Save as", "Save the exploration as a new named session (autosave goes on there)"),
    KeySpec("lister.open_session", "ctrl+o", "open_session", "Open", "Open a saved session (recent first) or a sweep's folder"),
    KeySpec("lister.export", "E", "export", "Export", "Export the tables (generations, attributions, ablations, per-SAE) as CSV, Parquet, Markdown or LaTeX"),
    KeySpec("lister.save_now", "ctrl+w", "save_now", "Save now", "Save the session now (it is also saved after each change)"),
)

MAIN_KEYS: tuple[KeySpec, ...] = (
    KeySpec("lister.generate", "g", "generate", "Generate", "Generate samples: templates x topics x seeds (a dialog)", True),
    KeySpec("lister.attribute", "a", "attribute", "Attribute", "Attribute the metric at the attribution position to every SAE's features (this sample)", True),
    KeySpec("lister.attribute_ig", "I", "attribute_ig", "Attr. IG", "Attribute this sample with integrated gradients (10 passes per SAE; sees features that the model reads through a saturated switch, which activation x gradient misses)"),
    KeySpec("lister.attribute_batch", "A", "attribute_batch", "Attr. batch", "Attribute every sample of the batch (dataset ranking, expression matrix)"),
    KeySpec("lister.toggle_feature", "space", "toggle_feature", "Toggle", "Switch the highlighted feature off/on for the ablation", True, key_display="␣"),
    KeySpec("lister.toggle_mode", "e", "toggle_mode", "Pos/every", "Ablate the highlighted feature at its position or at every position"),
    KeySpec("lister.cycle_kind", "k", "cycle_kind", "Kind", "How the highlighted chosen feature is changed: zero → scale → clamp → steer (its value in the Interventions tab)"),
    KeySpec("lister.clamp_relative", "v", "toggle_relative", "Rel. clamp", "The highlighted clamp: an absolute value, or k × the feature's maximum activation from its card (found in the background)"),
    KeySpec("lister.value_down", "left_square_bracket", "step_value(-1)", "Value−", "Lower the highlighted feature's scale, clamp or steer value by a step", key_display="["),
    KeySpec("lister.value_up", "right_square_bracket", "step_value(1)", "Value+", "Raise the highlighted feature's scale, clamp or steer value by a step", key_display="]"),
    KeySpec("lister.top_k", "K", "top_k", "Top-5", "Add the study's top-5 pairs of the selected SAE (0 < pos < attribution position)"),
    KeySpec("lister.clear_ablation", "c", "clear_ablation", "Clear", "Switch every ablated feature back on"),
    KeySpec("lister.regenerate", "r", "regenerate", "Regenerate", "Regenerate with the same seed under the ablation (streams tokens)", True),
    KeySpec("lister.regen_from", "R", "regen_from", "From", "Regenerate from the attribution position (study) or from the prompt"),
    KeySpec("lister.live", "l", "live", "Live", "Live mode: every toggle regenerates at once (a new toggle cancels a stale run)"),
    KeySpec("lister.cancel", "escape", "cancel", "Cancel", "Cancel the running regeneration or generation", palette=True),
    KeySpec("lister.compare", "d", "compare", "Compare", "Show base and ablated regenerations side by side"),
    KeySpec("lister.metric_colour", "m", "metric_colour", "Metric colour", "Colour tokens by the metric instead of alternating backgrounds"),
    KeySpec("lister.prompt", "P", "show_prompt", "Prompt", "Show or hide the prompt tokens"),
    KeySpec("lister.ranking", "t", "ranking", "Sample/dataset", "Features table: this sample's pairs or the batch's dataset ranking"),
    KeySpec("lister.density", "D", "density", "Density", "Features table: plain ranking, dense features flagged (d), or down-weighted by their density over the cards' corpus (found once, cached)"),
    KeySpec("lister.sae", "s", "next_sae", "SAE", "Features table: next SAE filter (all, then each SAE)"),
    KeySpec("lister.sort", "o", "sort", "Sort", "Features table: sort by the next column"),
    KeySpec("lister.filter", "slash", "filter", "Filter", "Features table: filter rows (SAE, feature, token, pos:N)", key_display="/"),
    KeySpec("lister.feature_card", "enter", "feature_card", "Card", "Open the highlighted feature's card: top contexts, density, logit effects, label (also enter on a row of the features table or the ablation list)"),
    KeySpec("lister.copy_link", "y", "copy_link", "Copy link", "Copy the highlighted feature's Neuronpedia link (or its id) to the clipboard (OSC 52)"),
    KeySpec("lister.copy_text", "Y", "copy_text", "Copy text", "Copy the sample's real text to the clipboard"),
    KeySpec("lister.matrix", "x", "matrix", "Matrix", "Feature expression matrix: features x samples, clustered, per SAE"),
    KeySpec("lister.experiment", "X", "experiment", "Experiment", "Batch experiment: the current interventions over a scope of lists (every list, one template, this list) × N seeds (a dialog; 4 by default) vs base and a random control (n, means, 95% intervals, p)"),
    KeySpec("lister.batch", "B", "batch", "Batch", "Batch view: items per list per template, base vs ablated (and the sweep's Δitems per condition)"),
    KeySpec("lister.circuit", "C", "app.circuit", "Circuit", "Circuit of this sample: how the features connect across SAEs, and how faithful it is (a screen)"),
    KeySpec("lister.graph", "G", "app.graph", "Graph", "Attribution graph of this sample: transcoder and attention features, errors, tokens, exact linear edges to the metric (a screen)"),
    KeySpec("lister.sidebar", "b", "sidebar", "Samples", "Show or hide the sample browser"),
    KeySpec("lister.focus_samples", "S", "focus_samples", "Samples list", "Focus the sample browser (arrow keys pick a list)", True, group=FOCUS_GROUP),
    KeySpec("lister.focus_tokens", "T", "focus_tokens", "Tokens", "Focus the token view (arrow keys move the token cursor)", True, group=FOCUS_GROUP),
    KeySpec("lister.focus_features", "F", "focus_features", "Features list", "Focus the features table", True, group=FOCUS_GROUP),
    KeySpec("lister.tab_features", "1", "tab('features')", "Features tab", "Show the features tab", True, group=FOCUS_GROUP),
    KeySpec("lister.tab_ablation", "2", "tab('ablation')", "Interventions tab", "Show the Interventions tab (chosen features, kind and value, the last draw's deltas)", True, group=FOCUS_GROUP),
    KeySpec("lister.remove_sample", "delete", "remove_sample", "Remove", "Remove the selected sample (asks first; u brings it back, even after a save)"),
    KeySpec("lister.undo_remove", "u", "undo_remove", "Undo remove", "Bring back the last removed sample with its attributions and runs"),
    KeySpec("lister.note", "n", "note", "Note", "Write a note on this sample (saved with the session)"),
    KeySpec("lister.session_notes", "N", "session_notes", "Session notes", "Write the session's own notes"),
    KeySpec("lister.messages", "M", "app.messages", "Messages", "Every message shown so far, newest first (the message line under the panes shows each for a few seconds)"),
)

TOKEN_KEYS: tuple[KeySpec, ...] = (
    KeySpec("lister.tokens.left", "left,h", "move(-1)", "Prev token", "Token cursor: previous token", palette=False),
    KeySpec("lister.tokens.right", "right", "move(1)", "Next token", "Token cursor: next token", palette=False),
    KeySpec("lister.tokens.up", "up", "line(-1)", "Line up", "Token cursor: line above", palette=False),
    KeySpec("lister.tokens.down", "down", "line(1)", "Line down", "Token cursor: line below", palette=False),
    KeySpec("lister.tokens.home", "home", "jump('start')", "First", "Token cursor: first token", palette=False),
    KeySpec("lister.tokens.end", "end", "jump('end')", "Last", "Token cursor: last token", palette=False),
    KeySpec("lister.tokens.attr", "full_stop", "jump('attribution')", "Attribution pos", "Token cursor: the attribution position", palette=False, key_display="."),
)

MATRIX_KEYS: tuple[KeySpec, ...] = (
    KeySpec("lister.matrix.close", "escape,x", "close", "Close", "Close the expression matrix", True, palette=False),
    KeySpec("lister.matrix.prev_sae", "left_square_bracket", "sae(-1)", "Prev SAE", "Previous SAE", True, palette=False, key_display="["),
    KeySpec("lister.matrix.next_sae", "right_square_bracket", "sae(1)", "Next SAE", "Next SAE", True, palette=False, key_display="]"),
    KeySpec("lister.matrix.left", "left", "move(0,-1)", "Left", "Previous sample", palette=False),
    KeySpec("lister.matrix.right", "right", "move(0,1)", "Right", "Next sample", palette=False),
    KeySpec("lister.matrix.up", "up", "move(-1,0)", "Up", "Previous feature", palette=False),
    KeySpec("lister.matrix.down", "down", "move(1,0)", "Down", "Next feature", palette=False),
    KeySpec("lister.matrix.card", "enter", "feature_card", "Card", "Open the card of the feature under the cursor (this column's sample in its strip)", True, palette=False),
    KeySpec("lister.matrix.open", "o", "open_sample", "Open", "Open the sample under the cursor in the main view", True, palette=False),
    KeySpec("lister.matrix.group", "g", "group", "Group", "Group the columns by template (clustered within), or back to the clustered order", True, palette=False),
)

BATCH_KEYS: tuple[KeySpec, ...] = (
    KeySpec("lister.batch.close", "escape,q,B", "close", "Close", "Close the batch view", True, palette=False),
    KeySpec("lister.batch.refresh", "f5", "refresh", "Refresh", "Count again (after new samples or runs)", True, palette=False),
)

EXPERIMENT_KEYS: tuple[KeySpec, ...] = (
    KeySpec("lister.experiment.close", "escape,q", "close", "Close", "Stop the batch experiment (what ran is kept in the session) and close", True, palette=False),
)

CARD_KEYS: tuple[KeySpec, ...] = (
    KeySpec("lister.card.close", "escape,q", "close", "Close", "Close the feature card (cancels a running corpus pass)", True, palette=False),
    KeySpec("lister.card.toggle", "space", "toggle", "Toggle", "Switch the feature off/on in this sample's ablation", True, palette=False, key_display="␣"),
    KeySpec("lister.card.label", "l", "label", "Label", "Write the feature's label (a one-line name, kept in the session)", True, palette=False),
    KeySpec("lister.card.copy", "y", "copy_link", "Copy link", "Copy the feature's Neuronpedia link (or its id)", True, palette=False),
)

CIRCUIT_KEYS: tuple[KeySpec, ...] = (
    KeySpec("lister.circuit.close", "escape,q", "close", "Close", "Close the circuit view", True, palette=False),
    KeySpec("lister.circuit.left", "left", "move(0,-1)", "Left", "Previous node in this row (one column if none)", palette=False),
    KeySpec("lister.circuit.right", "right", "move(0,1)", "Right", "Next node in this row (one column if none)", palette=False),
    KeySpec("lister.circuit.up", "up", "move(-1,0)", "Up", "Site above (later in the model)", palette=False),
    KeySpec("lister.circuit.down", "down", "move(1,0)", "Down", "Site below (earlier in the model)", palette=False),
    KeySpec("lister.circuit.next_node", "tab", "cycle(1)", "Next node", "Next node in the same cell", palette=False),
    KeySpec("lister.circuit.zoom_in", "plus,equals_sign", "zoom(-2)", "Zoom in", "Fewer, wider position columns", True, palette=False, key_display="+"),
    KeySpec("lister.circuit.zoom_out", "minus", "zoom(2)", "Zoom out", "More, narrower position columns", True, palette=False, key_display="-"),
    KeySpec("lister.circuit.all_positions", "p", "all_positions", "All pos", "Show every token position, or only those with nodes", palette=False),
    KeySpec("lister.circuit.view", "v", "next_view", "View", "Switch between the grid, the outline from the metric and the faithfulness curve", True, palette=False),
    KeySpec("lister.circuit.toggle", "space", "toggle_node", "Ablate", "Toggle the selected feature node into the ablation", True, palette=False, key_display="␣"),
    KeySpec("lister.circuit.regenerate", "r", "regenerate", "Regenerate", "Regenerate the list under the ablation (same seed)", True, palette=False),
    KeySpec("lister.circuit.card", "enter", "open_card", "Card", "Open the selected feature node's card (its label shows here once given)", True, palette=False),
    KeySpec("lister.circuit.cancel", "c", "cancel", "Cancel", "Stop the circuit computation", palette=False),
    KeySpec("lister.circuit.graph", "G", "graph", "Graph", "Open this sample's attribution graph (transcoders, attention features)", palette=False),
)

# keys of one group show together in the graph screen's footer
NODE_THRESHOLD_GROUP = "node"
EDGE_THRESHOLD_GROUP = "edge"

GRAPH_KEYS: tuple[KeySpec, ...] = (
    KeySpec("lister.graph.close", "escape,q", "close", "Close", "Cancel a running graph (escape), else close the graph view", True, palette=False, key_display="esc"),
    KeySpec("lister.graph.cancel", "c", "cancel", "Cancel", "Stop the graph computation (within a backward pass)", palette=False),
    KeySpec("lister.graph.left", "left", "move(0,-1)", "Left", "Previous node in this row (one column if none)", palette=False),
    KeySpec("lister.graph.right", "right", "move(0,1)", "Right", "Next node in this row (one column if none)", palette=False),
    KeySpec("lister.graph.up", "up", "move(-1,0)", "Up", "Row above (later in the model)", palette=False),
    KeySpec("lister.graph.down", "down", "move(1,0)", "Down", "Row below (earlier in the model)", palette=False),
    KeySpec("lister.graph.next_node", "tab", "cycle(1)", "Next node", "Next node in the same cell", palette=False),
    KeySpec("lister.graph.zoom_in", "plus,equals_sign", "zoom(-2)", "Zoom in", "Fewer, wider position columns", palette=False, key_display="+"),
    KeySpec("lister.graph.zoom_out", "minus", "zoom(2)", "Zoom out", "More, narrower position columns", palette=False, key_display="-"),
    KeySpec("lister.graph.all_positions", "p", "all_positions", "All pos", "Show every token position, or only those with nodes", palette=False),
    KeySpec("lister.graph.view", "v", "next_view", "View", "Switch between the grid and the outline from the target", True, palette=False),
    KeySpec("lister.graph.node_down", "left_square_bracket", "node_threshold(-1)", "−", "Node threshold down: keep fewer nodes (a smaller share of the influence)", True, palette=False, key_display="[", group=NODE_THRESHOLD_GROUP),
    KeySpec("lister.graph.node_up", "right_square_bracket", "node_threshold(1)", "+", "Node threshold up: keep more nodes", True, palette=False, key_display="]", group=NODE_THRESHOLD_GROUP),
    KeySpec("lister.graph.edge_down", "left_curly_bracket", "edge_threshold(-1)", "−", "Edge threshold down: keep fewer edges", True, palette=False, key_display="{", group=EDGE_THRESHOLD_GROUP),
    KeySpec("lister.graph.edge_up", "right_curly_bracket", "edge_threshold(1)", "+", "Edge threshold up: keep more edges", True, palette=False, key_display="}", group=EDGE_THRESHOLD_GROUP),
    KeySpec("lister.graph.toggle", "space", "toggle_node", "Interv.", "Put the selected feature node into the sample's interventions (zeroed at its position), or take it out", True, palette=False, key_display="␣"),
    KeySpec("lister.graph.regenerate", "r", "regenerate", "Regen", "Regenerate the list under the sample's interventions (one draw, same seed)", True, palette=False),
    KeySpec("lister.graph.card", "enter", "open_card", "Card", "Open the selected feature node's card (transcoder and attention features)", True, palette=False, key_display="⏎"),
    KeySpec("lister.graph.check", "k", "check_node", "Check", "Zero the selected node: the graph's Δ of the metric beside the replacement model's and the real model's", True, palette=False),
    KeySpec("lister.graph.heads", "h", "head_view", "Heads", "Head view of the selected node's strongest edge between positions: the heads carrying it and their frozen attention rows", palette=False),
    KeySpec("lister.graph.mark", "m", "mark", "Mark", "Mark the selected feature node (underlined) to group it with others (g)", palette=False),
    KeySpec("lister.graph.group", "g", "group", "Group", "Group the marked feature nodes into a supernode (asks its name); drawn as one node ∑", palette=False),
    KeySpec("lister.graph.auto_group", "A", "auto_group", "Auto groups", "Automatic supernodes on/off: one feature at several positions, features sharing a label", palette=False),
    KeySpec("lister.graph.ungroup", "u", "ungroup", "Ungroup", "Take the selected supernode (one of yours) apart", palette=False),
    KeySpec("lister.graph.save", "S", "save_graph", "Save graph", "Keep this graph (as pruned now, with head shares, the top 5 checks and your supernodes) in the session's graphs", palette=False),
    KeySpec("lister.graph.attention", "a", "toggle_attention", "Attn feats", "Attention features as nodes on/off (off: attention frozen without features, as circuit-tracer)", palette=False),
)


def bindings(specs: tuple[KeySpec, ...]) -> list[Binding]:
    groups = {s.group: Binding.Group(s.group, compact=False) for s in specs if s.group is not None}
    return [
        Binding(s.key, s.action, s.title, show=s.show, key_display=s.key_display, id=s.id, group=groups.get(s.group))
        for s in specs
    ]


def key_label(spec: KeySpec, keymap: dict[str, str] | None = None) -> str:
    key = (keymap or {}).get(spec.id, spec.key)
    if spec.key_display and spec.id not in (keymap or {}):
        return spec.key_display
    return key.replace("question_mark", "?").replace("slash", "/").replace("space", "␣").replace("full_stop", ".")
