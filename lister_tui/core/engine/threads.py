"""Torch's CPU thread count for the headless commands (`lister-tui sweep`, `lister-tui replay`)."""

from __future__ import annotations

import torch

from lister_tui.core.errors import ListerError
from lister_tui.core.limits import MAX_THREADS
from lister_tui.core.engine.loading import LoadedModel




def check_threads(threads: int | None) -> None:
    """Refuse a ``--threads`` value torch cannot use, before any model is loaded or file written."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS):
        raise ListerError(
            f"threads must be in [1, {MAX_THREADS}] (4 per CPU core of this machine), got {threads!r}; leave --threads out for the default"
        )


def configure_torch_threads(loaded: LoadedModel, threads: int | None = None) -> int:
    """Torch's CPU threads: ``threads``, else 1 for a shipped model on CPU; returns the count.

    A small model's matmuls gain nothing from more threads, and on busy cores torch's
    spinning worker threads make every step many times slower. Every process of one
    sweep uses the same count, so that its floats are computed the same way.
    """
    if loaded.device == "cpu" and (threads is not None or loaded.entry.source == "shipped"):
        torch.set_num_threads(threads or 1)
    return torch.get_num_threads()
