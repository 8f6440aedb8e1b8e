"""Files every part of lister-tui writes or reads: atomic writes, the manifests' clock,
where things live (sessions, config, themes) and the user's settings file.

Imports nothing else of lister-tui but :mod:`lister_tui.core.errors`.
"""
