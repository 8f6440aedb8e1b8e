"""Error types that carry a message a user can act on."""

from __future__ import annotations


class ListerError(ValueError):
    """Bad input: the message names the bad value and what would be valid."""


class ModelNotAvailable(ListerError):
    """A registry entry's weights are not on this machine (or are unreadable)."""


class Cancelled(Exception):
    """Long work stopped because its caller asked it to (a progress callback returned True)."""
