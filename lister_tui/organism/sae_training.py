"""Train sparse autoencoders on lister-tiny's activations with sae-lens's own trainer.

Architecture: JumpReLU (as in Gemma Scope), trained by sae-lens's
``LanguageModelSAETrainingRunner`` with DeepMind's "step" L0 penalty.

Long because training, evaluation and the canonical on-disk form of one SAE belong
together: each step depends on the scale conventions explained below.

Why the training uses ``normalize_activations="expected_average_only_in"``:
JumpReLU's threshold and its straight-through bandwidth are absolute numbers, and
Adam moves the threshold by about ``lr`` per step, so the same hyperparameters
only work across hooks (``hook_resid_post`` grows with depth, ``attn.hook_z`` is
much smaller) and across random and trained models if the SAE sees activations of
a fixed scale (mean norm sqrt(d_in)). sae-lens folds that scale into ``W_enc``,
``W_dec`` and ``b_dec`` at the end of ``SAETrainer.fit`` and resets the config to
``normalize_activations="none"``, so the saved SAE applies no normalisation at
inference: its decode is exactly ``acts @ W_dec + b_dec`` on raw activations.

Tokens whose id is in ``exclude_token_ids`` or is the pad id are dropped from the
training activations by sae-lens's ``exclude_special_tokens`` option (it filters by
token id after the forward pass), and from the evaluation by an explicit mask.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from sae_lens import (
    SAE,
    HookedSAETransformer,
    JumpReLUTrainingSAEConfig,
    LanguageModelSAERunnerConfig,
    LanguageModelSAETrainingRunner,
    LoggingConfig,
)
from sae_lens.util import extract_stop_at_layer_from_tlens_hook_name

__all__ = ["SAEQuality", "SAETrainingSettings", "evaluate_sae", "train_sae"]


@dataclass(frozen=True)
class SAETrainingSettings:
    """Hyperparameters of one JumpReLU SAE; defaults are tuned for lister-tiny on 2 CPU cores."""

    d_sae: int = 512
    training_tokens: int = 400_000
    lr: float = 4e-3
    # Weight of the L0 penalty, in units of the MSE of activations scaled to mean norm sqrt(d_in).
    l0_coefficient: float = 0.15
    batch_size_tokens: int = 1024
    # Initial threshold and STE bandwidth, also in those scaled units.
    jumprelu_init_threshold: float = 0.05
    jumprelu_bandwidth: float = 0.1
    seed: int = 0


@dataclass(frozen=True)
class SAEQuality:
    """Reconstruction quality of an SAE on a set of held-out tokens."""

    l0: float  # mean number of active features per token
    explained_variance: float  # 1 - sum||x - x_hat||^2 / sum||x - mean(x)||^2 over tokens
    dead_fraction: float  # features never active on the evaluation tokens


class _Runner(LanguageModelSAETrainingRunner):
    """The sae-lens runner, minus its process-wide SIGINT/SIGTERM handlers.

    The stock method installs handlers that it never removes (and ``signal.signal``
    fails outside the main thread); a library call must not change how the host
    application reacts to Ctrl-C.
    """

    def run_trainer_with_interruption_handling(self, trainer: Any) -> Any:
        return trainer.fit()


def _hook_d_in(model: HookedSAETransformer, hook_name: str) -> int:
    cfg = model.cfg
    if hook_name.endswith("attn.hook_z"):
        return cfg.n_heads * cfg.d_head
    if hook_name.endswith("hook_resid_post") or hook_name.endswith("hook_resid_pre"):
        return cfg.d_model
    raise ValueError(f"unsupported hook for SAE training: {hook_name!r}")


def _check_no_saes_attached(model: HookedSAETransformer) -> None:
    # Spliced SAEs would change the activations the new SAE learns from.
    attached = getattr(model, "_acts_to_saes", {})
    if attached:
        raise ValueError(f"model has SAEs attached at {sorted(attached)}; call model.reset_saes() first")


def _excluded_ids(pad_token_id: int, exclude_token_ids: list[int]) -> list[int]:
    return sorted({int(pad_token_id), *(int(t) for t in exclude_token_ids)})


@contextlib.contextmanager
def _quiet_sae_lens() -> Iterator[None]:
    """Silence sae-lens's progress bars, info logs and dataset-size warnings for one call."""
    # tqdm reads its TQDM_* environment defaults at import, so the bars are
    # switched off by patching the names the trainer and scaler modules look up.
    import sae_lens.training.activation_scaler as scaler_mod
    import sae_lens.training.sae_trainer as trainer_mod

    saved_tqdm = (trainer_mod.tqdm, scaler_mod.tqdm)
    sae_lens_logger = logging.getLogger("sae_lens")
    saved_level = sae_lens_logger.level
    try:
        trainer_mod.tqdm = functools.partial(saved_tqdm[0], disable=True)  # type: ignore[assignment]
        scaler_mod.tqdm = functools.partial(saved_tqdm[1], disable=True)  # type: ignore[assignment]
        # The hook_z path logs a harmless "Error during view operation" at ERROR
        # level on every batch before falling back to reshape.
        sae_lens_logger.setLevel(logging.CRITICAL)
        with warnings.catch_warnings():
            # "fewer samples than training tokens" and "new epoch" are expected:
            # the corpus is small and cycled through several times.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        trainer_mod.tqdm, scaler_mod.tqdm = saved_tqdm  # type: ignore[assignment]
        sae_lens_logger.setLevel(saved_level)


class _PadTrimmingModel:
    """Stands in for the model inside sae-lens's ActivationsStore, skipping all-pad tail columns.

    The store runs the model on whole rows of ``context_size`` tokens, so every pad
    position costs a full forward pass although its activations are then filtered
    out. Under causal attention trailing pads cannot change any earlier position, so
    the forward runs on the batch cut after its last non-pad column, and the cut
    columns come back as zeros (they are pad positions, dropped by
    ``exclude_special_tokens``). Rows are grouped by length in ``_batched_rows`` so
    that a batch has little padding left to cut.
    """

    def __init__(self, model: HookedSAETransformer, pad_token_id: int) -> None:
        self.model = model
        self.pad_token_id = pad_token_id
        self.cfg = model.cfg
        self.tokenizer = model.tokenizer

    @property
    def W_E(self) -> torch.Tensor:  # the store reads the input device from W_E
        return self.model.W_E

    def run_with_cache(
        self, tokens: torch.Tensor, *, names_filter: list[str], **kwargs: Any
    ) -> tuple[None, dict[str, torch.Tensor]]:
        non_pad = (tokens != self.pad_token_id).any(0).nonzero()
        width = int(non_pad.max().item()) + 1 if non_pad.numel() else 1
        _, cache = self.model.run_with_cache(tokens[:, :width], names_filter=names_filter, **kwargs)
        full: dict[str, torch.Tensor] = {}
        for name in names_filter:
            acts = cache[name]
            # A fresh contiguous tensor also lets the store view hook_z as (.., n_heads*d_head).
            out = acts.new_zeros((tokens.shape[0], tokens.shape[1], *acts.shape[2:]))
            out[:, :width] = acts
            full[name] = out
        return None, full


def _batched_rows(
    sequences: list[list[int]], pad_token_id: int, context_size: int, rows_per_batch: int, seed: int
) -> Dataset:
    """Pad each sequence to ``context_size`` and order the rows in length-homogeneous LLM batches."""
    seqs: list[list[int]] = []
    for seq in sequences:
        if not seq:
            continue
        if len(seq) > context_size:
            raise ValueError(f"sequence of length {len(seq)} exceeds context_size {context_size}")
        seqs.append(list(seq))
    if not seqs:
        raise ValueError("no non-empty sequences to train on")
    rng = random.Random(seed)
    # Top up with random repeats so every LLM batch is full: the store drops a
    # partial batch at the end of each epoch (callers keep rows_per_batch <= len(seqs)).
    seqs += rng.sample(seqs, -len(seqs) % rows_per_batch)
    rng.shuffle(seqs)  # random tie-break among equal lengths
    seqs.sort(key=len)
    batches = [seqs[i : i + rows_per_batch] for i in range(0, len(seqs), rows_per_batch)]
    # The store reads rows in order, one LLM batch per rows_per_batch rows, so
    # shuffling whole batches keeps each batch's rows together (and short) while
    # the stream mixes lengths and topics; the token-level mixing buffer does the rest.
    rng.shuffle(batches)
    rows = [s + [pad_token_id] * (context_size - len(s)) for batch in batches for s in batch]
    # sae-lens's ActivationsStore accepts a "tokens" or an "input_ids" column.
    return Dataset.from_dict({"input_ids": rows})


# Folders of the training run that are gone once it ends; their random names
# (tempfile's, and a random suffix sae-lens appends) would differ in every build.
_TEMPORARY_PATH_KEYS = ("checkpoint_path", "output_path")


def _canonicalise_configs(sae_dir: Path) -> None:
    """Rewrite sae-lens's JSON configs so that the same training writes the same bytes.

    sae-lens builds cfg.json's keys by iterating over a ``set`` of field names, so
    their order follows Python's per-process string hashing (PYTHONHASHSEED): sorted
    keys make it one order. runner_cfg.json records the run's temporary folders,
    which are dropped (set to null). Loading reads neither order nor those paths.
    """
    for name in ("cfg.json", "runner_cfg.json"):
        path = sae_dir / name
        if not path.exists():
            continue
        cfg = json.loads(path.read_text())
        for key in _TEMPORARY_PATH_KEYS:
            if key in cfg:
                cfg[key] = None
        path.write_text(json.dumps(cfg, sort_keys=True))


@torch.no_grad()
def _init_b_dec_to_mean(runner: LanguageModelSAETrainingRunner, n_batches: int) -> None:
    """Start the decoder bias at the activations' mean, in the trainer's normalised units.

    sae-lens 6 starts ``b_dec`` at zero. Activations with a large common offset
    (attention outputs averaging values, the residual stream's constant part) then
    give every feature a pre-activation dominated by its projection on the mean:
    the features facing away never fire, never get a gradient and stay dead (a
    third to four fifths of them at ``attn.hook_z`` in our runs).
    """
    x = torch.cat([next(runner.activations_store) for _ in range(n_batches)]).float()
    # The trainer will scale inputs by sqrt(d_in) / mean norm ("expected_average_only_in").
    scale = x.shape[1] ** 0.5 / x.norm(dim=-1).mean().clamp(min=1e-12)
    runner.sae.b_dec.data.copy_((x.mean(0) * scale).to(runner.sae.b_dec.dtype))


def train_sae(
    model: HookedSAETransformer,
    sequences: list[list[int]],
    hook_name: str,
    out_dir: Path,
    settings: SAETrainingSettings,
    *,
    pad_token_id: int,
    context_size: int,
    exclude_token_ids: list[int],
    device: str = "cpu",
) -> None:
    """Train one JumpReLU SAE on ``hook_name`` and save it to ``out_dir`` in sae-lens's disk format."""
    _check_no_saes_attached(model)
    out_dir = Path(out_dir)
    d_in = _hook_d_in(model, hook_name)
    excluded = set(_excluded_ids(pad_token_id, exclude_token_ids))
    if not any(tok not in excluded for seq in sequences for tok in seq):
        # sae-lens would loop forever waiting for its buffer to fill.
        raise ValueError("no trainable tokens: every token is padding or excluded")
    n_seqs = sum(1 for seq in sequences if seq)
    store_prompts = max(1, min(16, n_seqs))
    dataset = _batched_rows(sequences, pad_token_id, context_size, store_prompts, settings.seed)
    n_steps = max(1, settings.training_tokens // settings.batch_size_tokens)

    sae_cfg = JumpReLUTrainingSAEConfig(
        d_in=d_in,
        d_sae=settings.d_sae,
        dtype="float32",
        device=device,
        normalize_activations="expected_average_only_in",  # folded away at the end; see module docstring
        reshape_activations="hook_z" if hook_name.endswith("hook_z") else "none",
        jumprelu_init_threshold=settings.jumprelu_init_threshold,
        jumprelu_bandwidth=settings.jumprelu_bandwidth,
        jumprelu_sparsity_loss_mode="step",
        l0_coefficient=settings.l0_coefficient,
        # Let the dictionary learn to reconstruct before sparsity bites.
        l0_warm_up_steps=max(1, n_steps // 5),
    )

    with tempfile.TemporaryDirectory(prefix="sae_training_") as tmp:
        tmp_path = Path(tmp)
        staging = tmp_path / "sae"
        runner_cfg = LanguageModelSAERunnerConfig(
            sae=sae_cfg,
            model_name=str(getattr(model.cfg, "model_name", "custom")),
            model_class_name="HookedTransformer",
            hook_name=hook_name,
            dataset_path="",
            is_dataset_tokenized=True,
            streaming=False,
            context_size=context_size,
            # Sequences already begin with BOS; the store never prepends for tokenized data.
            prepend_bos=False,
            exclude_special_tokens=sorted(excluded),
            training_tokens=settings.training_tokens,
            train_batch_size_tokens=settings.batch_size_tokens,
            store_batch_size_prompts=store_prompts,
            # The mixing buffer holds n_batches_in_buffer * context_size tokens: about
            # eight LLM batches, and never fewer than two training batches.
            n_batches_in_buffer=max(
                8 * store_prompts,
                -(-2 * settings.batch_size_tokens // context_size),
            ),
            lr=settings.lr,
            lr_scheduler_name="constant",
            lr_warm_up_steps=max(1, n_steps // 20),
            # Decay over the last fifth so the thresholds settle.
            lr_decay_steps=max(1, n_steps // 5),
            dead_feature_window=max(1, n_steps // 4),
            feature_sampling_window=max(1, n_steps),
            # ~10k tokens pin the mean norm down to a percent or so.
            n_batches_for_norm_estimate=max(1, 10_000 // settings.batch_size_tokens),
            device=device,
            seed=settings.seed,
            dtype="float32",
            logger=LoggingConfig(log_to_wandb=False),
            n_checkpoints=0,
            save_final_checkpoint=False,
            checkpoint_path=str(tmp_path / "checkpoints"),
            output_path=str(staging),
            verbose=False,
            # The default {"center_writing_weights": False} is copied into the SAE's
            # metadata and makes every SAE.load_from_disk warn about from_pretrained.
            model_from_pretrained_kwargs={},
        )
        with _quiet_sae_lens(), torch.random.fork_rng(devices=[]):
            # cfg.seed is only recorded by sae-lens; the SAE init and the mixing
            # buffer's shuffles draw from torch's global generator.
            torch.manual_seed(settings.seed)
            runner = _Runner(
                runner_cfg,
                override_dataset=dataset,
                override_model=_PadTrimmingModel(model, pad_token_id),  # type: ignore[arg-type]
            )
            _init_b_dec_to_mean(runner, n_batches=max(1, 10_000 // settings.batch_size_tokens))
            runner.run()
        _canonicalise_configs(staging)
        # Replace out_dir only once the whole SAE is on disk.
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(out_dir))


@torch.no_grad()
def evaluate_sae(
    model: HookedSAETransformer,
    sae: SAE[Any],
    sequences: list[list[int]],
    hook_name: str,
    *,
    pad_token_id: int,
    exclude_token_ids: list[int],
) -> SAEQuality:
    """Measure L0, explained variance and dead features of ``sae`` on the non-special tokens of ``sequences``."""
    excluded = torch.tensor(_excluded_ids(pad_token_id, exclude_token_ids), dtype=torch.long)
    stop_at = extract_stop_at_layer_from_tlens_hook_name(hook_name)
    model_device = model.W_E.device
    reshapes_z = bool(getattr(sae, "hook_z_reshaping_mode", False))

    seqs = [list(s) for s in sequences if s]
    n_tokens = 0
    l0_sum = 0.0
    err_sum = 0.0
    x_sum = torch.zeros(sae.cfg.d_in, dtype=torch.float64)
    x_sq_sum = 0.0
    ever_active = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    batch_size = 32
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start : start + batch_size]
        width = max(len(s) for s in chunk)
        tokens = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
        in_seq = torch.zeros((len(chunk), width), dtype=torch.bool)
        for i, s in enumerate(chunk):
            tokens[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            in_seq[i, : len(s)] = True
        # Position mask as well as id mask: a pad id inside a sequence is excluded,
        # and so is anything after a sequence's end.
        keep = in_seq & ~torch.isin(tokens, excluded)
        if not keep.any():
            continue
        _, cache = model.run_with_cache(
            tokens.to(model_device), names_filter=[hook_name], stop_at_layer=stop_at
        )
        acts = cache[hook_name][keep.to(model_device)].to(sae.device, sae.dtype)
        if not reshapes_z:
            # An SAE without hook_z reshaping (e.g. a TrainingSAE) takes flat vectors.
            acts = acts.reshape(acts.shape[0], -1)
        feats = sae.encode(acts)
        recon = sae.decode(feats)
        x = acts.reshape(acts.shape[0], -1).double().cpu()
        x_hat = recon.reshape(recon.shape[0], -1).double().cpu()
        active = feats.reshape(feats.shape[0], -1).cpu() > 0
        n_tokens += x.shape[0]
        l0_sum += active.sum().item()
        err_sum += (x - x_hat).pow(2).sum().item()
        x_sum += x.sum(0)
        x_sq_sum += x.pow(2).sum().item()
        ever_active |= active.any(0)

    if n_tokens == 0:
        raise ValueError("no evaluable tokens: every position is padding or excluded")
    # sum||x - mean||^2 = sum||x||^2 - N ||mean||^2
    total_var = x_sq_sum - (x_sum.pow(2).sum().item() / n_tokens)
    explained = 1.0 - err_sum / total_var if total_var > 0 else float("nan")
    return SAEQuality(
        l0=l0_sum / n_tokens,
        explained_variance=float(explained),
        dead_fraction=float((~ever_active).float().mean().item()),
    )
