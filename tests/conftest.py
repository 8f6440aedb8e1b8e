"""Shared fixtures: the shipped lister-tiny, loaded once per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny():
    from lister_tui.core.engine.loading import load_model

    return load_model("lister-tiny", device="cpu")
