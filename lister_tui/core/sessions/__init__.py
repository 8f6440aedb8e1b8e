"""An exploration and its life on disk: the workspace data model, the session format
(tables, versions, migrations), the store (atomic, locked writes), opening (read-only
when the model is absent), replay and export.

Imports the engine and the study; never sweeps' runner or a UI.
"""
