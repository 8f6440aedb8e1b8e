"""Train lister-tiny's transcoders: one JumpReLU transcoder with an affine skip per MLP layer.

A transcoder of layer L reads ``blocks.L.ln2.hook_normalized`` (LayerNorm's output
before its weight and bias: what the MLP reads, up to a fixed affine map the
transcoder absorbs) and predicts ``blocks.L.hook_mlp_out``:
``y_hat = JumpReLU(x W_enc + b_enc) W_dec + x W_skip^T + b_dec``, as Gemma Scope 2's
``*_affine`` transcoders, saved as SAELens's ``JumpReLUSkipTranscoder``.

Points chosen, and why: the input is ln2's normalised output rather than the
residual stream before it, because the MLP sees the residual only through that
normalisation; with the scale frozen (as attribution graphs freeze it) it is a
linear function of the residual, and its norm is sqrt(d_model) on every token, so
one threshold scale fits every layer. The output is ``hook_mlp_out``, the MLP's
whole contribution to the residual stream, so replacing it replaces the MLP.

Training (our own loop; SAELens 6 trains SAEs, not transcoders): the pairs (x, y)
are gathered once per layer from the non-special tokens of the SAE training
examples; y is scaled to mean norm sqrt(d_out) while training and the scale is
folded back into ``W_dec``, ``W_skip`` and ``b_dec`` when saving. The skip starts
at the least-squares affine fit of y on x (features then learn what is not
linear); the loss is the summed squared error plus ``l0_coefficient`` times the
number of active features (the step function with a straight-through rectangle
kernel, as DeepMind's JumpReLU recipe), the coefficient warmed up over the first
fifth of the steps and the learning rate decayed over the last fifth. Everything
random draws from one seeded generator and the build runs under deterministic
algorithms, so the same model and seed give the same bytes.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

__all__ = ["TranscoderQuality", "TranscoderTrainingSettings", "evaluate_transcoder", "gather_pairs", "train_transcoder"]


@dataclass(frozen=True)
class TranscoderTrainingSettings:
    """Hyperparameters of one layer's transcoder; defaults are tuned for lister-tiny on 2 CPU cores."""

    d_sae: int = 512
    training_tokens: int = 400_000
    lr: float = 5e-3
    # Weight of the L0 penalty, in units of the squared error of outputs scaled to mean norm sqrt(d_out).
    l0_coefficient: float = 0.3
    batch_size_tokens: int = 1024
    jumprelu_init_threshold: float = 0.5
    jumprelu_bandwidth: float = 0.1
    train_examples: int = 1500
    seed: int = 0


@dataclass(frozen=True)
class TranscoderQuality:
    """How well a transcoder predicts its MLP's output on held-out tokens."""

    normalised_mse: float  # sum ||y - y_hat||^2 / sum ||y||^2
    explained_variance: float  # 1 - sum ||y - y_hat||^2 / sum ||y - mean(y)||^2
    l0: float  # mean number of active features per token
    dead_fraction: float  # features never active on the evaluation tokens
    skip_explained_variance: float  # the affine skip alone (features off), for comparison


@torch.no_grad()
def gather_pairs(
    model, sequences: list[list[int]], layer: int, *, pad_token_id: int, exclude_token_ids: list[int], batch_size: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) = (ln2.hook_normalized, hook_mlp_out) of layer ``layer`` on every non-special token."""
    hook_in, hook_out = f"blocks.{layer}.ln2.hook_normalized", f"blocks.{layer}.hook_mlp_out"
    excluded = torch.tensor(sorted({pad_token_id, *exclude_token_ids}), dtype=torch.long)
    xs, ys = [], []
    seqs = [s for s in sequences if s]
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start : start + batch_size]
        width = max(len(s) for s in chunk)
        tokens = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
        keep = torch.zeros((len(chunk), width), dtype=torch.bool)
        for i, s in enumerate(chunk):
            tokens[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            keep[i, : len(s)] = True
        keep &= ~torch.isin(tokens, excluded)
        _, cache = model.run_with_cache(tokens, names_filter=[hook_in, hook_out], stop_at_layer=layer + 1)
        xs.append(cache[hook_in][keep].float())
        ys.append(cache[hook_out][keep].float())
    return torch.cat(xs), torch.cat(ys)


def _affine_fit(x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares W (d_out x d_in), b with y ~ x W^T + b (float64 normal equations, a small ridge)."""
    xd, yd = x.double(), y.double()
    mx, my = xd.mean(0), yd.mean(0)
    xc, yc = xd - mx, yd - my
    gram = xc.T @ xc / len(xd)
    gram += ridge * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype)
    w = torch.linalg.solve(gram, xc.T @ yc / len(xd)).T  # [d_out, d_in]
    return w.float(), (my - mx @ w.T).float()


def train_transcoder(
    x: torch.Tensor,
    y: torch.Tensor,
    settings: TranscoderTrainingSettings,
    out_dir: Path,
    *,
    layer: int,
    model_name: str = "lister-tiny",
    log: Callable[[str], None] = lambda _: None,
) -> None:
    """Train one JumpReLU skip transcoder on the pairs (x, y) and save it to ``out_dir`` in SAELens's form."""
    from sae_lens.saes.jumprelu_sae import JumpReLU, Step

    if len(x) == 0:
        raise ValueError("no training pairs")
    gen = torch.Generator().manual_seed(settings.seed)
    d_in, d_out, d_sae = x.shape[1], y.shape[1], settings.d_sae
    # Outputs scaled to mean norm sqrt(d_out) while training (folded back at the end).
    y_scale = math.sqrt(d_out) / float(y.norm(dim=-1).mean().clamp(min=1e-12))
    ys = y * y_scale
    w_skip0, b_dec0 = _affine_fit(x, ys)
    p = {
        "W_enc": torch.randn(d_in, d_sae, generator=gen) / math.sqrt(d_in),
        "b_enc": torch.zeros(d_sae),
        "W_dec": torch.nn.functional.normalize(torch.randn(d_sae, d_out, generator=gen), dim=-1) * 0.1,
        "b_dec": b_dec0,
        "W_skip": w_skip0,
        "log_threshold": torch.full((d_sae,), math.log(settings.jumprelu_init_threshold)),
    }
    params = {k: torch.nn.Parameter(v.clone()) for k, v in p.items()}
    opt = torch.optim.Adam(params.values(), lr=settings.lr, betas=(0.9, 0.999))
    n_steps = max(1, settings.training_tokens // settings.batch_size_tokens)
    warm, decay_from = max(1, n_steps // 5), n_steps - max(1, n_steps // 5)
    bw = settings.jumprelu_bandwidth
    order = torch.randperm(len(x), generator=gen)
    cursor = 0
    for step in range(n_steps):
        if cursor + settings.batch_size_tokens > len(order):
            order, cursor = torch.randperm(len(x), generator=gen), 0
        idx = order[cursor : cursor + settings.batch_size_tokens]
        cursor += settings.batch_size_tokens
        xb, yb = x[idx], ys[idx]
        threshold = params["log_threshold"].exp()
        pre = xb @ params["W_enc"] + params["b_enc"]
        acts = JumpReLU.apply(pre, threshold, bw, False)
        y_hat = acts @ params["W_dec"] + xb @ params["W_skip"].T + params["b_dec"]
        mse = (y_hat - yb).pow(2).sum(-1).mean()
        l0 = Step.apply(pre, threshold, bw, False).sum(-1).mean()
        coef = settings.l0_coefficient * min(1.0, (step + 1) / warm)
        loss = mse + coef * l0
        lr = settings.lr * (1.0 if step < decay_from else max(0.0, (n_steps - step) / (n_steps - decay_from)))
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 500 == 0 or step == n_steps - 1:
            log(f"    step {step:5d}/{n_steps}  mse {mse.item():.3f}  L0 {l0.item():.1f}")
    _save(params, y_scale, out_dir, layer=layer, model_name=model_name, settings=settings)


def _save(params: dict, y_scale: float, out_dir: Path, *, layer: int, model_name: str, settings: TranscoderTrainingSettings) -> None:
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.transcoder import JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig

    with torch.no_grad():
        d_in, d_sae = params["W_enc"].shape
        d_out = params["W_dec"].shape[1]
        cfg = JumpReLUSkipTranscoderConfig(
            d_in=d_in,
            d_sae=d_sae,
            d_out=d_out,
            dtype="float32",
            device="cpu",
            apply_b_dec_to_input=False,
            normalize_activations="none",
            metadata=SAEMetadata(
                model_name=model_name,
                hook_name=f"blocks.{layer}.ln2.hook_normalized",
                hook_name_out=f"blocks.{layer}.hook_mlp_out",
                hook_head_index=None,
                prepend_bos=False,
                training_details={k: v for k, v in sorted(settings.__dict__.items())},
            ),
        )
        tc = JumpReLUSkipTranscoder(cfg)
        tc.W_enc.copy_(params["W_enc"])
        tc.b_enc.copy_(params["b_enc"])
        tc.threshold.copy_(params["log_threshold"].exp())
        # Back to the MLP's own output scale.
        tc.W_dec.copy_(params["W_dec"] / y_scale)
        tc.W_skip.copy_(params["W_skip"] / y_scale)
        tc.b_dec.copy_(params["b_dec"] / y_scale)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tc-", dir=out_dir.parent))
    try:
        tc.save_model(staging)
        # SAELens writes cfg.json in its own key order; sorted keys make one order.
        cfg_path = staging / "cfg.json"
        cfg_path.write_text(json.dumps(json.loads(cfg_path.read_text()), sort_keys=True))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
        # mkdtemp's folder is private (0700): made readable like every other shipped file
        out_dir.chmod(0o755)
        for f in out_dir.iterdir():
            f.chmod(0o644)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@torch.no_grad()
def evaluate_transcoder(tc, x: torch.Tensor, y: torch.Tensor) -> TranscoderQuality:
    """Normalised MSE, explained variance, L0 and dead fraction of ``tc`` on the pairs (x, y)."""
    err = 0.0
    skip_err = 0.0
    l0 = 0.0
    ever = torch.zeros(tc.cfg.d_sae, dtype=torch.bool)
    for start in range(0, len(x), 4096):
        xb, yb = x[start : start + 4096], y[start : start + 4096]
        acts = tc.encode(xb)
        y_hat = tc.decode(acts) + xb @ tc.W_skip.T
        skip = tc.b_dec + xb @ tc.W_skip.T
        err += (yb - y_hat).double().pow(2).sum().item()
        skip_err += (yb - skip).double().pow(2).sum().item()
        active = acts > 0
        l0 += active.sum().item()
        ever |= active.any(0)
    yd = y.double()
    total = yd.pow(2).sum().item()
    var = (yd - yd.mean(0)).pow(2).sum().item()
    return TranscoderQuality(
        normalised_mse=err / total,
        explained_variance=1.0 - err / var,
        l0=l0 / len(x),
        dead_fraction=float((~ever).float().mean()),
        skip_explained_variance=1.0 - skip_err / var,
    )


def _interval(values: list[float]) -> list[float]:
    """A normal-approximation 95% interval of the mean over independent lists."""
    t = torch.tensor(values, dtype=torch.float64)
    half = 1.96 * float(t.std()) / math.sqrt(len(t)) if len(t) > 1 else float("nan")
    return [float(t.mean()) - half, float(t.mean()) + half]


@torch.no_grad()
def replacement_fidelity(
    model,
    transcoders: dict,
    sequences: list[list[int]],
    prompt_lens: list[int],
    *,
    blank_id: int,
    newline_id: int,
    pad_token_id: int,
    batch_size: int = 32,
) -> dict:
    """The model with every MLP replaced by its transcoder, no error terms, beside the real model.

    Over the response positions of ``sequences`` (held-out lists): the next-token KL
    divergence KL(real || replaced), and for comparison KL(real || every MLP's output
    zeroed); at the item ends (positions whose next token is the blank or an item's
    line break) the metric logit(blank) - logit("\\n") of both models. Means carry a
    95% interval over lists (each list one draw).
    """

    def replace_hooks() -> list:
        stored: dict[int, torch.Tensor] = {}
        hooks = []
        for layer, tc in transcoders.items():
            def keep(act, hook, layer=layer):
                stored[layer] = act
                return act

            def swap(act, hook, layer=layer, tc=tc):
                x = stored[layer]
                return (tc.decode(tc.encode(x)) + x @ tc.W_skip.T).to(act.dtype)

            hooks += [(f"blocks.{layer}.ln2.hook_normalized", keep), (f"blocks.{layer}.hook_mlp_out", swap)]
        return hooks

    zero_hooks = [(f"blocks.{layer}.hook_mlp_out", lambda act, hook: torch.zeros_like(act)) for layer in transcoders]
    kl_rep: list[float] = []
    kl_zero: list[float] = []
    metric_real: list[float] = []
    metric_rep: list[float] = []
    diff_by_list: list[float] = []
    n_positions = 0
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        lens = prompt_lens[start : start + batch_size]
        width = max(len(s) for s in chunk)
        tokens = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
        for i, s in enumerate(chunk):
            tokens[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        real = model(tokens).float().log_softmax(-1)
        rep = model.run_with_hooks(tokens, fwd_hooks=replace_hooks()).float().log_softmax(-1)
        zero = model.run_with_hooks(tokens, fwd_hooks=zero_hooks).float().log_softmax(-1)
        for i, s in enumerate(chunk):
            span = slice(lens[i] - 1, len(s) - 1)  # positions predicting the response's tokens
            p = real[i, span].exp()
            kl_rep.append(float((p * (real[i, span] - rep[i, span])).sum(-1).mean()))
            kl_zero.append(float((p * (real[i, span] - zero[i, span])).sum(-1).mean()))
            n_positions += span.stop - span.start
            ends = [
                t
                for t in range(span.start, span.stop)
                if s[t + 1] == blank_id or (s[t + 1] == newline_id and s[t] != blank_id)
            ]
            if not ends:
                continue
            m_real = real[i, ends, blank_id] - real[i, ends, newline_id]
            m_rep = rep[i, ends, blank_id] - rep[i, ends, newline_id]
            metric_real += m_real.tolist()
            metric_rep += m_rep.tolist()
            diff_by_list.append(float((m_rep - m_real).abs().mean()))
    a, b = torch.tensor(metric_real, dtype=torch.float64), torch.tensor(metric_rep, dtype=torch.float64)
    kl_mean, zero_mean = sum(kl_rep) / len(kl_rep), sum(kl_zero) / len(kl_zero)
    return {
        "lists": len(kl_rep),
        "positions": n_positions,
        "kl_replaced": kl_mean,
        "kl_replaced_interval": _interval(kl_rep),
        "kl_mlps_zeroed": zero_mean,
        "kl_recovered": 1.0 - kl_mean / zero_mean if zero_mean > 0 else float("nan"),
        "item_ends": len(metric_real),
        "metric_real_mean": float(a.mean()),
        "metric_replaced_mean": float(b.mean()),
        "metric_abs_diff": sum(diff_by_list) / len(diff_by_list),
        "metric_abs_diff_interval": _interval(diff_by_list),
        "metric_correlation": float(torch.corrcoef(torch.stack([a, b]))[0, 1]),
        "metric_sign_agreement": float(((a > 0) == (b > 0)).double().mean()),
    }
