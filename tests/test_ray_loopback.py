"""A Ray cluster that lister-tui starts itself listens on 127.0.0.1 only (no socket on a wildcard
address) and has no dashboard unless asked."""

from __future__ import annotations

import pytest

from lister_tui.core.sweep.ray_cluster import LOOPBACK_ENV, RayOptions, init_ray

WILDCARDS = {"0.0.0.0", "::", ""}


def _listening(pids: set[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every listening TCP socket of ``pids``."""
    psutil = pytest.importorskip("psutil")
    out = []
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.pid in pids:
            out.append((c.laddr.ip, c.laddr.port, c.pid))
    return out


@pytest.mark.ray
def test_a_cluster_started_here_listens_on_loopback_only(monkeypatch):
    ray = pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")
    if ray.is_initialized():
        pytest.skip("a Ray cluster is already connected in this process")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(LOOPBACK_ENV, raising=False)
    restore = init_ray(ray, RayOptions(init={"num_cpus": 1}))
    try:
        me = psutil.Process()
        pids = {me.pid} | {p.pid for p in me.children(recursive=True)}
        sockets = _listening(pids)
        assert sockets, "the started cluster has no listening socket"
        names = {psutil.Process(pid).name() for _, _, pid in sockets}
        assert any("gcs" in n for n in names) and any("raylet" in n for n in names), names
        wild = [s for s in sockets if s[0] in WILDCARDS]
        assert wild == [], f"listening on a wildcard address: {wild}"
        assert all(ip in ("127.0.0.1", "::1", "::ffff:127.0.0.1") for ip, _, _ in sockets), sockets
        dashboard = [s for s in sockets if s[1] == 8265]
        assert dashboard == []
        import stat
        from pathlib import Path

        temp = Path(ray._private.worker.global_worker.node.get_temp_dir_path())
        assert temp.name.startswith("lister-ray-") and stat.S_IMODE(temp.stat().st_mode) == 0o700  # not Ray's shared /tmp/ray
    finally:
        ray.shutdown()
        restore()
    import os

    assert LOOPBACK_ENV not in os.environ  # the environment is as it was
