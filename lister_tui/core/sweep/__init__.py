"""The study, headless: settings, shard planning and the shard runner, the tables, the
output folder and the Ray backend.

Imports the engine and the study; never sessions or a UI.
"""
