"""Sweeps in shards: on a local Ray cluster (1 and 2 workers, a killed worker, an interrupted driver),
resumed runs, and the same tables as a local run in every case.

The Ray tests start one Ray instance on this machine for the module (2 CPUs, loopback
only, no dashboard) and are marked ``ray``; they are skipped where Ray is not installed.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.cli.sweep import bare_ray
from lister_tui.core.errors import ListerError
from lister_tui.core.engine.registry import get_entry
from lister_tui.core.study.settings import SAMPLING_PRESETS
from lister_tui.core.sweep.settings import SweepSettings
from lister_tui.core.sweep.shards import ORIGINALS, plan_shards
from lister_tui.core.sweep.output import TABLE_NAMES, ShardFiles, SweepWriter

torch.set_num_threads(1)

TOPICS = ("Fruits", "Colors")
SAE = "res_0"
ARGS = ["--sae", SAE, "--topic", ",".join(TOPICS), "--samples", "2", "--max-new-tokens", "40", "--device", "cpu"]
SETTINGS = SweepSettings(
    saes=(SAE,),
    topics=TOPICS,
    samples_per_topic=2,
    sampling=replace(SAMPLING_PRESETS["code"], max_new_tokens=40),
    device="cpu",
)
ENTRY = get_entry("lister-tiny")
PLAN_IDS = [s.id for s in plan_shards(SETTINGS, ENTRY)]


def invoke(args: list[str]):
    return CliRunner().invoke(app, args)


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def assert_same_tables(folder: Path, reference: Path) -> None:
    """Every table byte for byte (CSV) and value for value (Parquet)."""
    for name in TABLE_NAMES:
        assert (folder / f"{name}.csv").read_bytes() == (reference / f"{name}.csv").read_bytes(), name
        pd.testing.assert_frame_equal(
            pd.read_parquet(folder / f"{name}.parquet"),
            pd.read_parquet(reference / f"{name}.parquet"),
            check_exact=True,
        )


def shard_files(folder: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted((folder / "shards").glob("*.json"))}


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Path:
    """The reference: the same sweep run in this process."""
    out = tmp_path_factory.mktemp("local") / "sweep"
    result = invoke(["sweep", *ARGS, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


# --- shards in this process --------------------------------------------------------------


def test_the_plan_depends_on_the_settings_only():
    ids = PLAN_IDS
    assert ids[0] == "originals.short"
    # batched conditions span every topic; an SAE's ablation is one shard per topic
    assert ids[1:] == [
        "base.short",
        "ablate_res_0.short.Fruits",
        "ablate_res_0.short.Colors",
        "ban_blank+end.short",
        "ban_end.short",
        "steer_layer_0_x8.short",
    ]
    assert [s.id for s in plan_shards(SETTINGS, ENTRY)] == ids


def test_a_local_run_keeps_every_finished_shard_and_records_where_it_ran(local):
    saved = shard_files(local)
    assert sorted(saved) == sorted(PLAN_IDS)
    m = manifest(local)
    assert m["complete"] is True and list(m["shards"]) == PLAN_IDS
    for shard in m["shards"].values():
        assert shard["done"] and shard["attempts"] == 1 and shard["worker"]["pid"] == os.getpid()
        assert shard["seconds"] > 0 and shard["run"] == m["runs"][0]["run"]
    assert m["progress"]["shards_done"] == m["progress"]["shards_total"] == len(PLAN_IDS)


def ctrl_c_after_three_shards(monkeypatch) -> list[str]:
    """Make the driver raise KeyboardInterrupt when saving the fourth finished shard; returns the ids saved."""
    real = ShardFiles.save
    saves: list[str] = []

    def save(self, shard, output, meta):
        if len(saves) == 3:
            raise KeyboardInterrupt
        saves.append(shard.id)
        real(self, shard, output, meta)

    monkeypatch.setattr(ShardFiles, "save", save)
    return saves


def test_an_interrupted_local_sweep_resumes_with_only_its_missing_shards(local, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    real, saves = ShardFiles.save, ctrl_c_after_three_shards(monkeypatch)
    result = invoke(["sweep", *ARGS, "--out", str(out)])
    assert result.exit_code == 130, result.output
    assert f"lister-tui sweep --resume {out}" in " ".join(result.output.split())
    first = shard_files(out)
    assert sorted(first) == sorted(saves) == sorted(PLAN_IDS[:3])
    assert manifest(out)["complete"] is False and manifest(out)["status"] == "interrupted"

    monkeypatch.setattr(ShardFiles, "save", real)
    result = invoke(["sweep", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    m = manifest(out)
    assert m["complete"] is True and [r["resumed"] for r in m["runs"]] == [False, True]
    second = m["runs"][1]["run"]
    assert sorted(i for i, s in m["shards"].items() if s["run"] == second) == sorted(PLAN_IDS[3:])
    assert {i: shard_files(out)[i] for i in first} == first  # the first run's shards were not run again
    assert_same_tables(out, local)


def test_resume_refuses_a_setting_that_differs_and_names_it(local, tmp_path):
    out = tmp_path / "copy"
    out.mkdir()
    (out / "manifest.json").write_bytes((local / "manifest.json").read_bytes())
    result = invoke(["sweep", "--resume", str(out), "--topic", "Fruits"])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert (
        "cannot resume the sweep" in said and "topics (the sweep has ['Fruits', 'Colors'], this run ['Fruits'])" in said
    )
    # the settings the sweep recorded are accepted as they are
    settings = SweepSettings.from_dict(manifest(local)["settings"])
    assert settings.to_dict(ENTRY) == manifest(local)["settings"]
    with pytest.raises(ListerError, match="samples_per_topic"):
        SweepWriter(local).resume({}, replace(settings, samples_per_topic=3))


def test_resume_without_a_sweep_is_a_clear_error(tmp_path):
    result = invoke(["sweep", "--resume", str(tmp_path)])
    assert result.exit_code == 2
    assert "no sweep to resume" in result.output and "Traceback" not in result.output


def test_without_ray_installed_the_ray_option_says_how_to_install_it(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    out = tmp_path / "out"
    result = invoke(["sweep", *ARGS, "--ray=", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "pip install 'lister-tui[ray]'" in result.output and "Traceback" not in result.output


def test_an_address_where_nothing_listens_fails_in_seconds_with_what_to_do(tmp_path):
    pytest.importorskip("ray")
    import socket
    import time

    with socket.socket() as probe:  # a free loopback port, closed again: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    result = invoke(["sweep", *ARGS, "--ray", f"127.0.0.1:{port}", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert time.monotonic() - start < 30  # ray.init alone retries for minutes
    assert f"nothing answers at Ray address '127.0.0.1:{port}'" in result.output
    assert f"ray start --head --port={port}" in result.output and "Traceback" not in result.output


def test_ray_alone_means_the_default_cluster():
    assert bare_ray(["sweep", "--ray"]) == ["sweep", "--ray="]
    assert bare_ray(["sweep", "--ray", "--topic", "Fruits"]) == ["sweep", "--ray=", "--topic", "Fruits"]
    assert bare_ray(["sweep", "--ray", "head:6379"]) == ["sweep", "--ray", "head:6379"]


def test_worker_options_need_ray_and_a_cluster_that_holds_them():
    from lister_tui.core.sweep.ray_cluster import RayOptions, worker_shape

    result = invoke(["sweep", *ARGS, "--workers", "2"])
    assert result.exit_code == 2 and "add --ray" in result.output
    cpus = {"CPU": 2.0}
    assert worker_shape(cpus, SETTINGS, RayOptions()) == (2, 1.0, 0.0)
    assert worker_shape({"CPU": 16.0, "GPU": 4.0}, replace(SETTINGS, device="auto"), RayOptions()) == (4, 1.0, 1.0)
    assert worker_shape({"CPU": 16.0, "GPU": 4.0}, SETTINGS, RayOptions(gpus_per_worker=0.5)) == (8, 1.0, 0.5)
    with pytest.raises(ListerError, match="room for 2 workers"):
        worker_shape(cpus, SETTINGS, RayOptions(workers=3))
    with pytest.raises(ListerError, match="not enough for one worker"):
        worker_shape(cpus, SETTINGS, RayOptions(gpus_per_worker=1))


def test_a_workers_error_is_reported_in_one_line():
    from lister_tui.core.sweep.ray_cluster import _reason

    died = RuntimeError(
        "The actor died because of an error raised in its creation task\nTraceback (most recent call last):\n"
        "  File ...\nlister_tui.core.errors.ListerError: steering layer 9 is out of range; valid: 0..3"
    )
    assert _reason(died) == "steering layer 9 is out of range; valid: 0..3"
    assert (
        _reason(RuntimeError("boom\ntorch.OutOfMemoryError: CUDA out of memory"))
        == "OutOfMemoryError: CUDA out of memory"
    )


# --- on a local Ray cluster --------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as mp:
        # Ray's own switch for a single-machine instance on 127.0.0.1 (nothing listens outside)
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.mark.ray
@pytest.mark.parametrize("workers", [1, 2])
def test_ray_workers_write_the_tables_of_a_local_run(ray_cluster, local, tmp_path, workers):
    out = tmp_path / "sweep"
    result = invoke(["sweep", *ARGS, "--ray=", "--workers", str(workers), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert_same_tables(out, local)
    m = manifest(out)
    assert m["complete"] is True and m["runtime"]["mode"] == "ray"
    pids = {w["pid"] for w in m["runtime"]["ray"]["workers"]}
    assert len(pids) == workers and os.getpid() not in pids
    assert {s["worker"]["pid"] for s in m["shards"].values()} <= pids
    assert all(s["attempts"] == 1 and s["worker"]["actor_id"] for s in m["shards"].values())


@pytest.mark.ray
def test_a_worker_killed_mid_shard_has_its_shard_run_again(ray_cluster, local, tmp_path):
    from lister_tui.core.sweep.ray_cluster import KILL_ONCE_ENV, RayOptions, run_sweep_ray

    out = tmp_path / "sweep"
    victim = "ablate_res_0.short.Fruits"
    marker = tmp_path / "killed"
    writer = SweepWriter(out)
    options = RayOptions(workers=2, worker_env={KILL_ONCE_ENV: f"{victim}|{marker}"})
    result = run_sweep_ray(
        SETTINGS, ENTRY, options, store=writer.shards, on_ready=lambda info, rt: writer.start(info, SETTINGS, rt),
        on_checkpoint=writer.write,
    )  # fmt: skip
    assert marker.exists()  # the worker did kill itself, after the shard's first sample
    assert result.complete
    assert_same_tables(out, local)
    shard = manifest(out)["shards"][victim]
    assert shard["attempts"] == 2 and len(shard["failures"]) == 1
    dead = shard["failures"][0]["worker"]["pid"]
    assert dead != shard["worker"]["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(dead, 0)
    assert all(s["attempts"] == 1 for i, s in manifest(out)["shards"].items() if i != victim)


@pytest.mark.ray
def test_an_interrupted_ray_sweep_resumes_with_only_its_missing_shards(ray_cluster, local, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    real, saves = ShardFiles.save, ctrl_c_after_three_shards(monkeypatch)
    result = invoke(["sweep", *ARGS, "--ray=", "--workers", "2", "--out", str(out)])
    assert result.exit_code == 130, result.output
    first = shard_files(out)
    assert sorted(first) == sorted(saves) and len(first) == 3 and "originals.short" in first
    assert manifest(out)["status"] == "interrupted"

    monkeypatch.setattr(ShardFiles, "save", real)
    result = invoke(["sweep", "--resume", str(out), "--ray="])
    assert result.exit_code == 0, result.output
    m = manifest(out)
    second = m["runs"][1]["run"]
    ran_again = sorted(i for i, s in m["shards"].items() if s["run"] == second)
    assert ran_again == sorted(set(PLAN_IDS) - set(first))
    assert {i: shard_files(out)[i] for i in first} == first
    assert ORIGINALS not in " ".join(ran_again)  # the lists were not sampled again
    assert_same_tables(out, local)
