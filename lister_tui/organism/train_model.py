"""Training lister-tiny's transformer on the synthetic corpus (CPU, minutes)."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from lister_tui.organism.paths import N_LAYERS


@dataclass(frozen=True)
class ModelShape:
    n_layers: int = N_LAYERS
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    n_ctx: int = 160
    # Layer 0 is a local-attention layer (Gemma 2 alternates local and global
    # attention) with a window of one token: it cannot move information between
    # positions, so all that layer 0 knows of the template word sits at that word's
    # position, where the study found Gemma's res-0 features. Later layers are global.
    local_window_layer0: int = 1

    def hooked_config(self, d_vocab: int, seed: int) -> dict:
        """Keyword arguments of TransformerLens's HookedTransformerConfig."""
        shape = asdict(self)
        window = shape.pop("local_window_layer0")
        return dict(
            **shape,
            use_local_attn=True,
            attn_types=["local"] + ["global"] * (self.n_layers - 1),
            window_size=window,
            d_vocab=d_vocab,
            act_fn="gelu",
            normalization_type="LN",
            positional_embedding_type="standard",
            default_prepend_bos=False,
            tokenizer_prepends_bos=False,
            seed=seed,
        )


@dataclass(frozen=True)
class ModelTrainingSettings:
    steps: int = 450
    batch_size: int = 48
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.05
    seed: int = 0


@dataclass
class TrainingRecord:
    steps: int
    seconds: float
    final_loss: float  # mean response-token cross-entropy over the last 50 steps
    losses: list[float]


def encode_examples(tokenizer, examples) -> tuple[list[list[int]], list[int]]:
    """Token ids of each example and the length of its prompt (where the loss starts)."""
    prompts = tokenizer([e.prompt for e in examples], add_special_tokens=False)["input_ids"]
    texts = tokenizer([e.text for e in examples], add_special_tokens=False)["input_ids"]
    return texts, [len(p) for p in prompts]


def _batch(seqs: list[list[int]], prompt_lens: list[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    tokens = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    # loss_mask[b, t] = 1 where token t+1 is a response token to predict
    loss_mask = torch.zeros((len(seqs), width - 1))
    for b, (s, p) in enumerate(zip(seqs, prompt_lens)):
        tokens[b, : len(s)] = torch.tensor(s)
        loss_mask[b, p - 1 : len(s) - 1] = 1.0
    return tokens, loss_mask


def train_model(
    model,
    seqs: list[list[int]],
    prompt_lens: list[int],
    settings: ModelTrainingSettings,
    pad_id: int,
    log: Callable[[str], None] = print,
) -> TrainingRecord:
    """Train ``model`` in place with AdamW and a cosine schedule; the loss covers response tokens only."""
    gen = torch.Generator().manual_seed(settings.seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < settings.warmup_steps:
            return settings.lr * (step + 1) / settings.warmup_steps
        progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
        return settings.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    # Batches of similar length waste little compute on padding: each batch is a
    # random subset of a random window of the examples sorted by length.
    by_length = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    window = min(len(seqs), settings.batch_size * 4)
    losses: list[float] = []
    start = time.time()
    for step in range(settings.steps):
        lo = int(torch.randint(len(seqs) - window + 1, (1,), generator=gen))
        pick = torch.randperm(window, generator=gen)[: settings.batch_size].tolist()
        idx = [by_length[lo + j] for j in pick]
        tokens, mask = _batch([seqs[i] for i in idx], [prompt_lens[i] for i in idx], pad_id)
        logits = model(tokens)[:, :-1]  # [batch, pos-1, d_vocab]
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="none")
        loss = (ce * mask.reshape(-1)).sum() / mask.sum()
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 200 == 0 or step == settings.steps - 1:
            log(f"  step {step:5d}/{settings.steps}  loss {loss.item():.3f}  {time.time() - start:5.0f}s")
    model.eval()
    tail = losses[-50:]
    return TrainingRecord(settings.steps, time.time() - start, sum(tail) / len(tail), losses)
