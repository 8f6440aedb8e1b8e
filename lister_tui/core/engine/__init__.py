"""What runs the model: the registry and loading, prompts, sampling, the list structure,
the end-of-list metric, attribution and ablation.

Imports only :mod:`lister_tui.core.errors`, :mod:`lister_tui.core.files` and the engine
itself (and the organism's shipped paths); the study, sessions and sweeps build on it.
"""
