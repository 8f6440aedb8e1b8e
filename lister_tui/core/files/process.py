"""Which process writes a folder: recorded in a manifest, asked of the machine later.

A process killed outright (``kill -9``, the machine going down) records nothing, so a
manifest it left says "running" forever; its ``pid`` and ``host`` tell that apart from a
folder another process is writing now.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def this_process() -> dict:
    """``{"pid", "host"}`` of the running process, as a manifest's run records it."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True  # it exists (another user's), or the number cannot be asked about: assume alive
    return True


def writer_state(manifest: Mapping) -> tuple[str, str]:
    """Whether a manifest that says "running" is being written now: ("live" | "stale" | "", a sentence).

    "live": its last run's process is alive on this machine (another sweep writes the folder);
    "stale": that process is gone (killed, or the machine went down) without recording a stop.
    "" when the manifest does not say running, or its last run was on another host or
    records no process (a sweep from before these fields): nothing can be told."""
    if manifest.get("status") != "running":
        return "", ""
    runs = manifest.get("runs")
    last = runs[-1] if isinstance(runs, list) and runs and isinstance(runs[-1], dict) else {}
    pid, host = last.get("pid"), last.get("host")
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2**31 or host != socket.gethostname():
        return "", ""
    started = str(last.get("started"))[:40]
    if pid != os.getpid() and _alive(pid):
        return "live", f"process {pid} (started {started}) is writing it now"
    return "stale", f"its last run (process {pid}, started {started}) stopped without recording why (killed, or the machine went down)"
