"""`lister-tui organism build` runs end to end (at the reduced size) and is reproducible."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lister_tui.core.engine.loading import build_hooked_model, load_model
from lister_tui.organism import paths
from lister_tui.organism.build import BuildSettings, build_organism, deterministic_torch
from lister_tui.organism.corpus import make_corpus
from lister_tui.organism.tokenizer import train_tokenizer
from lister_tui.organism.train_model import ModelShape, ModelTrainingSettings, encode_examples, train_model


def test_reduced_build_end_to_end(tmp_path):
    out = tmp_path / "organism"
    logs: list[str] = []
    record = build_organism(out, BuildSettings.reduced(), log=logs.append)
    for name in (paths.TOKENIZER_SUBDIR, paths.MODEL_CONFIG, paths.MODEL_WEIGHTS, paths.CARD, paths.BUILD_RECORD):
        assert (out / name).exists(), name
    assert sorted(p.name for p in (out / paths.SAES_SUBDIR).iterdir()) == sorted(record["sae_quality"])
    assert len(record["sae_quality"]) == 2 * record["model_config"]["n_layers"]
    assert json.loads((out / paths.BUILD_RECORD).read_text())["training"]["steps"] == 40
    # res_0 trains with its own settings; the others with the shared ones
    tokens = {sae_id: q["training_tokens"] for sae_id, q in record["sae_quality"].items()}
    assert tokens.pop("res_0") == 16_384 and set(tokens.values()) == {8_192}
    # no temp folder left behind next to the output
    assert [p.name for p in tmp_path.iterdir()] == ["organism"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    loaded = load_model("lister-tiny", device="cpu", weights_dir=out)
    sae = loaded.load_sae("attn_1")
    assert sae.cfg.metadata.hook_name == "blocks.1.attn.hook_z"
    card = (out / paths.CARD).read_text()
    assert "| short |" in card and "| res_0 | `blocks.0.hook_resid_post` | 128 | 16,384 |" in card
    # one transcoder per layer, in SAELens's form, loadable through the entry; the card shows them
    from lister_tui.core.engine.transcoders import load_transcoders

    assert sorted(p.name for p in (out / "transcoders").iterdir()) == ["mlp_0", "mlp_1", "mlp_2", "mlp_3"]
    transcoders = load_transcoders(loaded)
    assert sorted(transcoders) == [0, 1, 2, 3] and {type(t).__name__ for t in transcoders.values()} == {"JumpReLUSkipTranscoder"}
    assert transcoders[2].cfg.d_sae == 64 and transcoders[2].cfg.metadata.hook_name_out == "blocks.2.hook_mlp_out"
    assert set(record["transcoder_quality"]) == {"tc_0", "tc_1", "tc_2", "tc_3"}
    # the stage's own machine (it may run apart from the build): one thread, whatever the build's
    assert record["transcoder_machine"]["threads"] == 1 and record["transcoder_machine"]["torch_cpu_capability"]
    assert record["replacement"]["lists"] == 100 and record["replacement"]["kl_replaced"] >= 0
    assert "| tc_2 | `blocks.2.ln2.hook_normalized` | 64 | 8,192 |" in card and "next-token KL(real ‖ replaced)" in card
    # the transcoder stage alone, on the built folder, writes what the full build wrote
    import shutil

    from lister_tui.organism.build import build_transcoders

    again = tmp_path / "again"
    shutil.copytree(out, again)
    shutil.rmtree(again / "transcoders")
    redone = build_transcoders(again, BuildSettings.reduced(), log=lambda _: None)
    for layer in range(4):
        for name in ("cfg.json", "sae_weights.safetensors"):
            rel = f"transcoders/mlp_{layer}/{name}"
            assert (again / rel).read_bytes() == (out / rel).read_bytes(), rel
    assert redone["transcoder_quality"] == record["transcoder_quality"] and redone["replacement"] == record["replacement"]
    assert redone["settings"] == json.loads(json.dumps(record["settings"]))


def test_each_sae_gets_its_own_seed_and_its_sites_overrides():
    settings = BuildSettings()
    res0, res1 = settings.sae_settings("res_0", 0), settings.sae_settings("res_1", 1)
    assert (res0.seed, res1.seed) == (0, 1)
    assert res1.training_tokens == settings.sae_training.training_tokens
    assert res0.training_tokens > res1.training_tokens and res0.l0_coefficient > res1.l0_coefficient


@pytest.mark.parametrize(
    ("by_site", "message"),
    [
        ({"res_9": {"training_tokens": 1}}, "unknown SAE site 'res_9'; valid: res_0, res_1"),
        ({"res_0": {"l0_coef": 1.0}}, "unknown setting(s) l0_coef; valid: d_sae, training_tokens"),
        ({"res_0": {"seed": 3}}, "unknown setting(s) seed"),
    ],
)
def test_bad_per_site_sae_settings_fail_before_anything_trains(by_site, message):
    with pytest.raises(ValueError) as err:
        BuildSettings(sae_training_by_site=by_site)
    assert message in str(err.value)


def test_model_training_is_reproducible_from_its_seed(tmp_path):
    examples = make_corpus(200, 0)
    tok = train_tokenizer([e.text for e in examples], tmp_path / "tok", 400)
    seqs, prompt_lens = encode_examples(tok, examples)
    shape = ModelShape(n_layers=1, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=160)
    settings = ModelTrainingSettings(steps=4, batch_size=4, warmup_steps=1)
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_hooked_model(shape.hooked_config(len(tok), 0), tok)
        train_model(model, seqs, prompt_lens, settings, tok.pad_token_id, log=lambda _: None)
        states.append(model.state_dict())
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], rtol=0, atol=0)


def test_deterministic_torch_sets_and_restores_threads_algorithms_and_random_states():
    torch.set_num_threads(1)
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    rng = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    with deterministic_torch(threads=2, seed=3):
        assert torch.get_num_threads() == 2 and torch.are_deterministic_algorithms_enabled()
        first = torch.rand(3)
        random.random(), np.random.rand()
    with deterministic_torch(threads=2, seed=3):
        assert torch.equal(torch.rand(3), first)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before
    assert torch.equal(torch.get_rng_state(), rng[0]) and random.getstate() == rng[1]
    assert np.array_equal(np.random.get_state()[1], rng[2])


# Small enough for CI (one layer, so two SAEs), big enough to meet what made builds
# differ: the embedding's gradient (16 rows x ~100 tokens x d_model 64 > 32768
# elements) takes torch's multi-threaded atomic-add path unless deterministic
# algorithms are on.
MINI_BUILD = replace(
    BuildSettings.reduced(),
    n_train_examples=400,
    n_heldout_examples=20,
    shape=replace(BuildSettings.reduced().shape, n_layers=1),
    model_training=ModelTrainingSettings(steps=4, batch_size=16, warmup_steps=1),
    sae_training=replace(BuildSettings.reduced().sae_training, training_tokens=2048),
    sae_training_by_site={"res_0": {"training_tokens": 3072}},
    sae_train_examples=64,
    card_lists_per_template=1,
)

_BUILD_IN_A_FRESH_PROCESS = """
import json, sys
from lister_tui.organism.build import BuildSettings, build_organism
from lister_tui.organism.train_model import ModelShape, ModelTrainingSettings
from lister_tui.organism.sae_training import SAETrainingSettings
from lister_tui.organism.transcoder_training import TranscoderTrainingSettings
s = json.loads(sys.argv[2])
settings = BuildSettings(**{
    **s,
    "shape": ModelShape(**s["shape"]),
    "model_training": ModelTrainingSettings(**s["model_training"]),
    "sae_training": SAETrainingSettings(**s["sae_training"]),
    "transcoder_training": TranscoderTrainingSettings(**s["transcoder_training"]),
})
build_organism(sys.argv[1], settings, log=lambda _: None)
"""


def _files(folder: Path) -> dict[str, bytes]:
    # build.json and the card hold timings and load averages, which differ by design.
    skip = {paths.BUILD_RECORD, paths.CARD}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


@pytest.mark.slow  # over a minute on 2 cores (not skipped: CI checks determinism)
def test_two_builds_in_fresh_processes_write_bit_identical_files(tmp_path):
    # Separate processes with different string-hash seeds, as two runs of
    # `lister-tui organism build` would be: set and dict orders differ between them.
    folders = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"build{hash_seed}"
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        subprocess.run(
            [sys.executable, "-c", _BUILD_IN_A_FRESH_PROCESS, str(out), json.dumps(asdict(MINI_BUILD))],
            env=env, check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        folders.append(out)
    first, second = (_files(f) for f in folders)
    assert sorted(first) == sorted(second)
    assert any(name.startswith(paths.SAES_SUBDIR) for name in first) and paths.MODEL_WEIGHTS in first
    assert "transcoders/mlp_0/sae_weights.safetensors" in first
    differing = [name for name in first if first[name] != second[name]]
    assert not differing, differing
    records = [json.loads((f / paths.BUILD_RECORD).read_text()) for f in folders]
    for key in ("sae_quality", "transcoder_quality", "replacement", "behaviour", "training"):
        if key == "training":
            records[0][key].pop("seconds"), records[1][key].pop("seconds")
        assert records[0][key] == records[1][key], key


# --- the full rebuild (minutes: run by hand, never in CI) ------------------------------

RUN_REBUILD_ENV = "LISTER_TINY_REBUILD_TEST"
GROUND_TRUTH_TESTS = ("tests/test_experiment.py", "tests/test_organism.py", "tests/test_attribution.py")
ROOT = Path(__file__).resolve().parents[1]

rebuild_test = pytest.mark.skipif(
    os.environ.get(RUN_REBUILD_ENV) != "1",
    reason=f"rebuilds lister-tiny (about 10 minutes on 2 idle cores); set {RUN_REBUILD_ENV}=1 to run",
)


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rebuild") / "lister_tiny"
    build_organism(out, BuildSettings(), log=lambda _: None)
    return out


@pytest.mark.slow
@rebuild_test
def test_rebuilt_organism_passes_the_ground_truth_tests(rebuilt):
    env = dict(os.environ, **{paths.WEIGHTS_DIR_ENV: str(rebuilt)})
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *GROUND_TRUTH_TESTS],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.slow
@rebuild_test
def test_rebuild_on_the_shipped_builds_kind_of_machine_is_bit_identical(rebuilt):
    shipped = json.loads((paths.SHIPPED_DIR / paths.BUILD_RECORD).read_text())
    rebuild = json.loads((rebuilt / paths.BUILD_RECORD).read_text())
    same_kind = {k: v for k, v in shipped["machine"].items() if k != "cpu_count"}
    here = {k: v for k, v in rebuild["machine"].items() if k != "cpu_count"}
    if (same_kind, shipped["versions"]) != (here, rebuild["versions"]):
        pytest.skip(f"the shipped build ran on {shipped['machine']} with {shipped['versions']}; this is {rebuild['machine']}, {rebuild['versions']}")
    assert shipped["settings"] == rebuild["settings"]
    shipped_files, rebuilt_files = _files(paths.SHIPPED_DIR), _files(rebuilt)
    assert sorted(shipped_files) == sorted(rebuilt_files)
    # the shipped transcoders were written by `lister-tui organism transcoders`, maybe on another kind
    # of machine than the build (build.json's transcoder_machine): compared here only when it is this kind
    tc_here = _same_kind(shipped.get("transcoder_machine"), rebuild["transcoder_machine"])
    differ = [n for n in shipped_files if shipped_files[n] != rebuilt_files[n] and (tc_here or not n.startswith("transcoders/"))]
    assert differ == []
    assert rebuild["sae_quality"] == shipped["sae_quality"] and rebuild["behaviour"] == shipped["behaviour"]
    if tc_here:
        assert rebuild["transcoder_quality"] == shipped["transcoder_quality"] and rebuild["replacement"] == shipped["replacement"]


def _same_kind(a: dict | None, b: dict) -> bool:
    return a is not None and {k: v for k, v in a.items() if k != "cpu_count"} == {k: v for k, v in b.items() if k != "cpu_count"}


@pytest.mark.slow
@rebuild_test
def test_the_transcoder_stage_writes_the_shipped_transcoders_again(tmp_path):
    """`lister-tui organism transcoders` on a copy of the shipped folder: the same transcoder files
    byte for byte and the same quality record, on the kind of machine that wrote them (minutes)."""
    import shutil

    from lister_tui.organism.build import build_transcoders, machine_record

    shipped = json.loads((paths.SHIPPED_DIR / paths.BUILD_RECORD).read_text())
    here = machine_record(1)
    if not _same_kind(shipped.get("transcoder_machine"), here):
        pytest.skip(f"the shipped transcoders were written on {shipped.get('transcoder_machine')}; this is {here}")
    copy = tmp_path / "lister_tiny"
    shutil.copytree(paths.SHIPPED_DIR, copy)
    record = build_transcoders(copy, log=lambda _: None)
    shipped_files, rewritten = _files(paths.SHIPPED_DIR / "transcoders"), _files(copy / "transcoders")
    assert sorted(shipped_files) == sorted(rewritten) and len(shipped_files) == 2 * len(shipped["transcoder_quality"])
    assert [n for n in shipped_files if shipped_files[n] != rewritten[n]] == []
    assert record["transcoder_quality"] == shipped["transcoder_quality"] and record["replacement"] == shipped["replacement"]
