"""The science of lister-tui, free of any user interface.

Nothing under ``lister_tui.core`` imports textual (a test enforces it), so every
number the explorer shows can also be produced from a script or the headless CLI.
"""
