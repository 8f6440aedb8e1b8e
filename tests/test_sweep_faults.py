"""A sweep's faults: tampered shards are refused by --resume (named), and any failure or a second
Ctrl-C leaves the manifest saying failed or interrupted, with the reason and the --resume hint."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from lister_tui.cli import app

TINY = ["sweep", "--sae", "res_0", "--topic", "Fruits", "--samples", "1", "--device", "cpu", "--max-new-tokens", "40",
        "--no-restricted", "--no-steering", "--no-faithfulness"]  # fmt: skip


def invoke(args):
    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "out"
    result = invoke([*TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_resume_accepts_its_own_shards(finished, tmp_path):
    out = _copy(finished, tmp_path / "again")
    result = invoke(["sweep", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_resume_refuses_an_edited_shard_and_names_it(finished, tmp_path):
    out = _copy(finished, tmp_path / "edited")
    shard = out / "shards" / "ablate_res_0.short.Fruits.json"  # res_0's ablation of Fruits: its rows go into by_condition
    text = shard.read_text()
    m = re.search(r'"n_items": (\d+)', text)
    assert m, text[:300]
    shard.write_text(text[: m.start(1)] + str(int(m.group(1)) + 33) + text[m.end(1) :])
    before = (out / "by_condition.csv").read_bytes()
    result = invoke(["sweep", "--resume", str(out)])
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())
    assert shard.name in flat and "does not match its checksum" in flat and "Traceback" not in result.output
    assert (out / "by_condition.csv").read_bytes() == before  # the tables did not take the edited numbers
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "checksum" in manifest["error"]


def test_a_second_ctrl_c_while_recording_the_first_still_marks_the_manifest(tmp_path, monkeypatch):
    import lister_tui.core.sweep.output as output
    import lister_tui.core.sweep.shards as shards

    real_regenerate, real_write = shards.regenerate, output.SweepWriter.write

    def interrupted(*args, **kwargs):
        if kwargs.get("ablation") is not None:
            raise KeyboardInterrupt
        return real_regenerate(*args, **kwargs)

    def second_ctrl_c(self, result, status=None, error=None):
        if status == "interrupted":
            raise KeyboardInterrupt  # the user pressed Ctrl-C again while the tables were written
        return real_write(self, result, status, error)

    monkeypatch.setattr(shards, "regenerate", interrupted)
    monkeypatch.setattr(output.SweepWriter, "write", second_ctrl_c)
    out = tmp_path / "out"
    result = invoke([*TINY, "--out", str(out)])
    assert result.exit_code == 130, result.output
    assert f"--resume {out}" in " ".join(result.output.split())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["complete"] is False and "Ctrl-C" in manifest["error"]


def test_a_library_fault_is_recorded_with_its_reason_and_the_resume_hint(tmp_path, monkeypatch):
    import lister_tui.core.sweep.shards as shards

    def fault(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(shards, "regenerate", fault)
    out = tmp_path / "out"
    result = invoke([*TINY, "--out", str(out)])
    flat = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "illegal memory access" in flat and f"--resume {out}" in flat
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "RuntimeError" in manifest["error"]


def _left_running(out, pid):
    import socket

    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(status="running", complete=False, finished=None)
    manifest["runs"][-1].update(pid=pid, host=socket.gethostname())
    path.write_text(json.dumps(manifest))
    return path.read_bytes()


def test_a_manifest_left_running_by_a_killed_process_is_named_and_resumed(finished, tmp_path):
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid now names no process
    out = _copy(finished, tmp_path / "killed")
    _left_running(out, gone.pid)
    result = invoke(["sweep", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert f"process {gone.pid}" in flat and "stopped without recording why" in flat
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["runs"][-1]["resumed"] is True


def test_a_sweep_being_written_is_neither_resumed_nor_overwritten(finished, tmp_path):
    import subprocess
    import sys

    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        out = _copy(finished, tmp_path / "live")
        before = _left_running(out, writer.pid)
        for args in (["sweep", "--resume", str(out)], [*TINY, "--out", str(out), "--overwrite"]):
            result = invoke(args)
            assert result.exit_code == 2, result.output
            flat = " ".join(result.output.split())
            assert f"process {writer.pid}" in flat and "is being written" in flat and "Traceback" not in result.output
            assert (out / "manifest.json").read_bytes() == before  # nothing written over the live run
    finally:
        writer.kill()
        writer.wait()
