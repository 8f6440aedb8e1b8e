"""`lister-tui organism build`: corpus -> tokenizer -> model -> SAEs -> transcoders -> card.

Every step is seeded and the build runs under ``deterministic_torch``: a fixed
torch thread count and ``torch.use_deterministic_algorithms(True)``. Without the
latter, the backward pass of TransformerLens's embedding lookup (``W_E[tokens]``,
an ``index_put_`` with ``accumulate=True``) adds float gradients with atomic adds
from several threads in whatever order the threads arrive, so two builds on the
same machine differed from the first step on (``embed.W_E``'s gradient by ~1e-8,
the trained model by up to 2e-4). With it, builds with the same settings, thread
count, CPU instruction set and versions write bit-identical model, SAE and
tokenizer files (tests/test_build.py). The transcoder stage reads only the
model, tokenizer, corpus and seed from the folder, so ``build_transcoders`` (``lister-tui
organism transcoders``) run on a built folder writes what a full build writes. The full build trains in about 10 minutes on
2 idle CPU cores; the ``reduced`` settings exercise the same code in about a minute.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lister_tui.organism import paths
from lister_tui.organism.corpus import SPECIAL_TOKENS, make_corpus
from lister_tui.organism.sae_training import SAETrainingSettings, evaluate_sae, train_sae
from lister_tui.organism.train_model import ModelShape, ModelTrainingSettings, encode_examples, train_model
from lister_tui.organism.transcoder_training import TranscoderTrainingSettings


# Layer 0's attention sees only its own token (window 1), so res_0 is a function of
# (token, position): a finite dictionary of vectors. Trained 20 times longer with a
# stronger L0 penalty, its SAE learns token-level features: a prompt token's vector
# carried by a handful of features (L0 about 3) instead of ~30 small ones, so a few
# (position, feature) pairs can hold what the " short" token says.
RES0_SAE_OVERRIDES = {"training_tokens": 8_000_000, "l0_coefficient": 1.0}


@dataclass(frozen=True)
class BuildSettings:
    seed: int = 0
    n_train_examples: int = 30_000
    n_heldout_examples: int = 600
    vocab_size: int = 2048
    shape: ModelShape = field(default_factory=ModelShape)
    model_training: ModelTrainingSettings = field(default_factory=ModelTrainingSettings)
    sae_training: SAETrainingSettings = field(default_factory=SAETrainingSettings)
    # Per-site changes to ``sae_training`` (site id -> field -> value).
    sae_training_by_site: dict[str, dict] = field(default_factory=lambda: {"res_0": dict(RES0_SAE_OVERRIDES)})
    sae_train_examples: int = 8_000
    transcoder_training: TranscoderTrainingSettings = field(default_factory=TranscoderTrainingSettings)
    card_lists_per_template: int = 30
    threads: int = 2

    def __post_init__(self) -> None:
        # Checked here, not when the SAEs' turn comes: a typo would otherwise surface
        # after the model has trained, or a misspelt site be silently left at the defaults.
        from lister_tui.core.engine.registry import get_entry

        sites = [s.id for s in get_entry("lister-tiny").sites]
        fields = [f.name for f in dataclasses.fields(SAETrainingSettings) if f.name != "seed"]
        for site_id, changes in self.sae_training_by_site.items():
            if site_id not in sites:
                raise ValueError(f"sae_training_by_site: unknown SAE site {site_id!r}; valid: {', '.join(sites)}")
            unknown = sorted(set(changes) - set(fields))
            if unknown:
                raise ValueError(
                    f"sae_training_by_site[{site_id!r}]: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(fields)}"
                )

    def sae_settings(self, site_id: str, index: int) -> SAETrainingSettings:
        """The training settings of one SAE: the shared ones, this site's changes, its own seed."""
        return replace(self.sae_training, **self.sae_training_by_site.get(site_id, {}), seed=self.seed + index)

    @classmethod
    def reduced(cls) -> "BuildSettings":
        """The same pipeline at a size that runs in well under a minute."""
        return cls(
            n_train_examples=1_500,
            n_heldout_examples=100,
            vocab_size=1024,
            shape=ModelShape(d_model=64, n_heads=4, d_head=16, d_mlp=128),
            model_training=ModelTrainingSettings(steps=40, batch_size=16, warmup_steps=5),
            sae_training=SAETrainingSettings(d_sae=128, training_tokens=8_192, batch_size_tokens=512),
            sae_training_by_site={"res_0": {"training_tokens": 16_384}},
            sae_train_examples=300,
            transcoder_training=TranscoderTrainingSettings(d_sae=64, training_tokens=8_192, batch_size_tokens=512, train_examples=200),
            card_lists_per_template=4,
        )


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformer-lens", "sae-lens", "tokenizers", "transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


@contextlib.contextmanager
def deterministic_torch(threads: int, seed: int) -> Iterator[None]:
    """Run the block with ``threads`` torch threads, deterministic algorithms and seeded RNGs; restore all after.

    The thread count is fixed because it can enter the result, not only the speed
    (a kernel may split a reduction per thread, as the atomic-add path above does). The host's settings and random states come back
    afterwards, so building (or a test that builds) leaves the process as it found it.
    """
    saved_threads = torch.get_num_threads()
    saved_deterministic = torch.are_deterministic_algorithms_enabled()
    saved_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    saved_random, saved_numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(True)
            torch.manual_seed(seed)
            yield
        finally:
            torch.use_deterministic_algorithms(saved_deterministic, warn_only=saved_warn_only)
            torch.set_num_threads(saved_threads)
            random.setstate(saved_random)
            np.random.set_state(saved_numpy)


def cpu_model() -> str:
    """The CPU's model name (for build records and benchmark reports)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_record(threads: int) -> dict:
    """What a bit-identical rebuild must match: CPU, instruction set torch dispatches to, threads."""
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": threads,
    }


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def build_organism(
    out_dir: Path, settings: BuildSettings = BuildSettings(), log: Callable[[str], None] = print
) -> dict:
    """Build every file of lister-tiny into ``out_dir`` (replaced atomically) and return the build record."""
    with deterministic_torch(settings.threads, settings.seed):
        return _build(Path(out_dir), settings, log)


def _build(out_dir: Path, settings: BuildSettings, log: Callable[[str], None]) -> dict:
    from lister_tui.core.engine.loading import build_hooked_model
    from lister_tui.organism.tokenizer import train_tokenizer

    t_start = time.time()
    # Timings mean little without the machine's load: other jobs on the same cores
    # stretch them (1-, 5- and 15-minute load averages).
    load_at_start = _load_average()
    # Build into a sibling temp folder and swap it in at the end, so an interrupted
    # build never leaves a half-written organism behind.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir.parent))
    try:
        log("corpus")
        train = make_corpus(settings.n_train_examples, settings.seed)
        heldout = make_corpus(settings.n_heldout_examples, settings.seed + 1)

        log("tokenizer")
        tokenizer = train_tokenizer([e.text for e in train], work / paths.TOKENIZER_SUBDIR, settings.vocab_size)
        for word in (" short", " long"):
            assert len(tokenizer.encode(word, add_special_tokens=False)) == 1, word

        log("model")
        cfg = settings.shape.hooked_config(len(tokenizer), settings.seed)
        model = build_hooked_model(cfg, tokenizer)
        seqs, prompt_lens = encode_examples(tokenizer, train)
        record = train_model(model, seqs, prompt_lens, settings.model_training, tokenizer.pad_token_id, log=log)
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(work / paths.MODEL_WEIGHTS))
        (work / paths.MODEL_CONFIG).write_text(json.dumps(cfg, indent=2))

        log("SAEs")
        pad = tokenizer.pad_token_id
        special = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
        sae_seqs = seqs[: settings.sae_train_examples]
        heldout_seqs, _ = encode_examples(tokenizer, heldout)
        sae_quality = {}
        sae_seconds = {}
        from lister_tui.core.engine.registry import get_entry
        from sae_lens import SAE

        for i, site in enumerate(get_entry("lister-tiny").sites):
            if site.layer >= settings.shape.n_layers:
                continue
            t0 = time.time()
            sae_dir = work / paths.SAES_SUBDIR / site.id
            sae_settings = settings.sae_settings(site.id, i)
            train_sae(
                model,
                sae_seqs,
                site.hook_name,
                sae_dir,
                sae_settings,
                pad_token_id=pad,
                context_size=settings.shape.n_ctx,
                exclude_token_ids=special,
            )
            sae = SAE.load_from_disk(str(sae_dir))
            q = evaluate_sae(model, sae, heldout_seqs, site.hook_name, pad_token_id=pad, exclude_token_ids=special)
            sae_quality[site.id] = {**asdict(q), "d_sae": sae_settings.d_sae, "training_tokens": sae_settings.training_tokens}
            sae_seconds[site.id] = round(time.time() - t0, 1)
            log(f"  {site.id}: L0 {q.l0:.1f}  explained variance {q.explained_variance:.3f}  {sae_seconds[site.id]}s")

        log("transcoders")
        from lister_tui.core.engine.transcoders import SHIPPED_SUBDIR

        transcoder_record = transcoder_stage(work, work / SHIPPED_SUBDIR, settings, log)

        build = {
            "settings": asdict(settings),
            "model_config": cfg,
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "training": {"steps": record.steps, "seconds": round(record.seconds, 1), "final_loss": record.final_loss},
            "sae_quality": sae_quality,
            "sae_seconds": sae_seconds,
            **transcoder_record,
            "versions": _versions(),
            "machine": machine_record(settings.threads),
            "load_average": {"start": load_at_start},
        }
        (work / paths.BUILD_RECORD).write_text(json.dumps(build, indent=2))

        log("card")
        from lister_tui.organism.card import behaviour_stats, render_card

        build["behaviour"] = behaviour_stats(work, settings.card_lists_per_template, settings.seed)
        build["total_seconds"] = round(time.time() - t_start, 1)
        build["load_average"]["end"] = _load_average()
        (work / paths.BUILD_RECORD).write_text(json.dumps(build, indent=2))
        (work / paths.CARD).write_text(render_card(build))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        work.rename(out_dir)
        log(f"built {out_dir} in {build['total_seconds']:.0f}s")
        return build
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


# --- the transcoder stage -----------------------------------------------------------


def transcoder_stage(folder: Path, out: Path, settings: BuildSettings, log: Callable[[str], None]) -> dict:
    """Train, save (under ``out/mlp_L``) and evaluate one transcoder per layer of the model in ``folder``.

    Reads the model, tokenizer and nothing else from ``folder``; the corpus comes from
    the seed. Returns the build record's transcoder part: per-layer quality and
    seconds, and the replacement model's fidelity on the held-out lists.
    """
    # One torch thread, whatever the build's: the stage's bytes then do not depend on the
    # thread count, and on a busy machine a second thread mostly waits for the first.
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _transcoder_stage(folder, out, settings, log)
    finally:
        torch.set_num_threads(saved_threads)


def _transcoder_stage(folder: Path, out: Path, settings: BuildSettings, log: Callable[[str], None]) -> dict:
    from sae_lens import SAE

    from lister_tui.core.engine.loading import load_model
    from lister_tui.organism.transcoder_training import (
        evaluate_transcoder,
        gather_pairs,
        replacement_fidelity,
        train_transcoder,
    )

    loaded = load_model("lister-tiny", device="cpu", weights_dir=folder)
    model, tokenizer = loaded.model, loaded.tokenizer
    tc_settings = settings.transcoder_training
    train = make_corpus(settings.n_train_examples, settings.seed)[: tc_settings.train_examples]
    heldout = make_corpus(settings.n_heldout_examples, settings.seed + 1)
    seqs, _ = encode_examples(tokenizer, train)
    heldout_seqs, heldout_prompt_lens = encode_examples(tokenizer, heldout)
    pad = tokenizer.pad_token_id
    special = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    quality: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    transcoders = {}
    for layer in range(model.cfg.n_layers):
        t0 = time.time()
        layer_settings = replace(tc_settings, seed=settings.seed + layer)
        x, y = gather_pairs(model, seqs, layer, pad_token_id=pad, exclude_token_ids=special)
        train_transcoder(x, y, layer_settings, out / f"mlp_{layer}", layer=layer, log=log)
        del x, y
        tc = SAE.load_from_disk(str(out / f"mlp_{layer}"))
        tc.eval()
        hx, hy = gather_pairs(model, heldout_seqs, layer, pad_token_id=pad, exclude_token_ids=special)
        q = evaluate_transcoder(tc, hx, hy)
        transcoders[layer] = tc
        site = f"tc_{layer}"
        quality[site] = {**asdict(q), "d_sae": tc_settings.d_sae, "training_tokens": tc_settings.training_tokens}
        seconds[site] = round(time.time() - t0, 1)
        log(f"  {site}: L0 {q.l0:.1f}  explained variance {q.explained_variance:.3f}  {seconds[site]}s")
    fidelity = replacement_fidelity(
        model,
        transcoders,
        heldout_seqs,
        heldout_prompt_lens,
        blank_id=loaded.ids.blank,
        newline_id=loaded.ids.newline,
        pad_token_id=pad,
    )
    log(f"  replacement model: KL {fidelity['kl_replaced']:.4f} nats, metric |diff| {fidelity['metric_abs_diff']:.3f}")
    # the stage's own machine: `lister-tui organism transcoders` may run elsewhere than the build
    return {"transcoder_quality": quality, "transcoder_seconds": seconds, "replacement": fidelity,
            "transcoder_machine": machine_record(torch.get_num_threads())}


def build_transcoders(folder: Path, settings: BuildSettings = BuildSettings(), log: Callable[[str], None] = print) -> dict:
    """Run only the transcoder stage on a built folder: replace its transcoders, update its record and card.

    The stage depends only on the model, the corpus and the seed, so this writes the
    files a full build with ``settings`` writes.
    """
    from lister_tui.core.engine.transcoders import SHIPPED_SUBDIR
    from lister_tui.organism.card import render_card

    folder = Path(folder)
    record_path = folder / paths.BUILD_RECORD
    if not record_path.is_file():
        raise FileNotFoundError(f"{record_path} is missing: build the organism first (`lister-tui organism build`)")
    build = json.loads(record_path.read_text())
    staging = Path(tempfile.mkdtemp(prefix=".transcoders-", dir=folder))
    try:
        with deterministic_torch(settings.threads, settings.seed):
            record = transcoder_stage(folder, staging, settings, log)
        target = folder / SHIPPED_SUBDIR
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        target.chmod(0o755)  # mkdtemp's folder is private
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    # The recorded settings, with this stage's in the place a full build gives them.
    recorded = build["settings"]
    build["settings"] = {k: (v if k == "transcoder_training" else recorded.get(k, v)) for k, v in asdict(settings).items()}
    build.update(record)
    (folder / paths.BUILD_RECORD).write_text(json.dumps(build, indent=2))
    (folder / paths.CARD).write_text(render_card(build))
    return build
