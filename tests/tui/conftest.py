"""Fixtures of the explorer tests: a small, fixed batch on the shipped lister-tiny."""

from __future__ import annotations

import pytest
import torch

from lister_tui.tui.screens.generate import GenerateRequest

# Two short-template topics, two seeds each: small, fast, and every list has items.
SMALL = GenerateRequest(("short",), ("Fruits", "Countries"), 2, 0, "code")


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def make_app(tiny):
    from lister_tui.tui.app import ListerApp

    def make(request: GenerateRequest | None = SMALL, **kw):
        return ListerApp(tiny, initial=request, **kw)

    return make


async def settle(app, pilot) -> None:
    """Wait for every worker and the messages they posted."""
    from textual.worker import WorkerCancelled

    for _ in range(3):
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:
            pass  # a stale run, cancelled on purpose
        await pilot.pause()
