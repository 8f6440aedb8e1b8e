"""The one timestamp format of manifests (sessions and sweeps): UTC, ISO 8601, to the second."""

from __future__ import annotations

from datetime import datetime, timezone


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
