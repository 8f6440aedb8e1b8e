"""What the study does with the engine: its sampling presets, the attribute → top-k →
ablate → regenerate procedure, the baselines, feature rankings and the expression
matrix, and the faithfulness check.

Imports the engine, never sessions, sweeps or a UI.
"""
