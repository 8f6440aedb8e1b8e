"""`lister-tui models` shows the true state of a model folder: every weights shard, tokenizer and
config present and whole is "yes"; a half-downloaded snapshot is "partial", names what is missing
and keeps its `hf download` line; a load of it stops with that message, no traceback."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lister_tui.cli import app
from tests.own_models import write_model


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LISTER_TUI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("LISTER_TUI_REGISTRY", raising=False)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """A Llama-architecture folder saved in several shards (an index naming them)."""
    folder = write_model(tmp_path_factory.mktemp("own") / "sharded", "llama", max_shard_size="100KB")
    assert (folder / "model.safetensors.index.json").is_file()
    return folder


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def _registry(tmp_path, folder) -> str:
    path = tmp_path / "reg.toml"
    path.write_text(f'[models.mine]\nfolder = "{folder}"\ndtype = "float32"\n')
    return str(path)


def _row(output: str, name: str) -> list[str]:
    return next(line for line in output.splitlines() if line.startswith(name)).split()


def test_a_whole_folder_is_present_and_its_check_passes(tmp_path, sharded):
    from lister_tui.core.engine.presence import folder_problems

    assert folder_problems(sharded) == []
    reg = _registry(tmp_path, sharded)
    listing = CliRunner().invoke(app, ["models", "--registry", reg], env={"COLUMNS": "80"})
    assert listing.exit_code == 0 and _row(listing.stdout, "mine")[2] == "yes"
    check = CliRunner().invoke(app, ["models", "mine", "--check", "--registry", reg], env={"COLUMNS": "200"})
    assert check.exit_code == 0, check.output
    assert "parity  ok: largest |logit difference|" in check.stdout and "float32" in check.stdout


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("shard", "weights shards missing: 1 of"),
        ("truncate", "truncated"),
        ("tokenizer", "tokenizer: no tokenizer.json"),
        ("config", "config.json: missing"),
    ],
)
def test_each_missing_piece_is_partial_named_and_stops_a_load_before_sampling(tmp_path, sharded, damage, named):
    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.errors import ListerError
    from tests.own_models import folder_entry

    folder = _copy(sharded, tmp_path / "mine")
    shards = sorted(set(json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"].values()))
    if damage == "shard":
        (folder / shards[-1]).unlink()
    elif damage == "truncate":
        data = (folder / shards[0]).read_bytes()
        (folder / shards[0]).write_bytes(data[: len(data) // 2])
    elif damage == "tokenizer":
        (folder / "tokenizer.json").unlink()
    else:
        (folder / "config.json").unlink()
    reg = _registry(tmp_path, folder)
    listing = CliRunner().invoke(app, ["models", "--registry", reg], env={"COLUMNS": "80"})
    assert listing.exit_code == 0 and _row(listing.stdout, "mine")[2] == "partial"
    one = CliRunner().invoke(app, ["models", "mine", "--registry", reg], env={"COLUMNS": "200"})
    assert one.exit_code == 0 and named in one.stdout and "missing" in one.stdout
    with pytest.raises(ListerError, match=named.split(":")[0]):
        load_model(folder_entry(folder), device="cpu", dtype="float32")
    check = CliRunner().invoke(app, ["models", "mine", "--check", "--registry", reg], env={"COLUMNS": "200"})
    assert check.exit_code == 2 and named in check.output and "Traceback" not in check.output


def test_a_half_downloaded_hub_snapshot_is_partial_and_keeps_its_download_line(tmp_path, sharded, monkeypatch):
    import huggingface_hub.constants

    from tests.gemma_fixtures import snapshot

    hub = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    folder = snapshot(hub, "google/gemma-2-2b-it")
    for f in sharded.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    shards = sorted(set(json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"].values()))
    (folder / shards[0]).unlink()
    listing = CliRunner().invoke(app, ["models"], env={"COLUMNS": "80"})
    assert _row(listing.stdout, "gemma-2-2b-it")[1] == "partial"
    one = CliRunner().invoke(app, ["models", "gemma-2-2b-it"], env={"COLUMNS": "200"})
    assert f"weights shards missing: 1 of {len(shards)} ({shards[0]})" in one.stdout
    assert "hf download google/gemma-2-2b-it" in [line.strip() for line in one.stdout.splitlines()]
    assert "hf auth login" in one.stdout and "HF_TOKEN" in one.stdout
