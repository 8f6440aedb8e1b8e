"""SAEs trained by sae-lens's runner on a small random model save, reload, splice and evaluate."""

from __future__ import annotations

import math
import random
import signal

import pytest
import torch

PAD, BOS, EOS = 0, 1, 2
CONTEXT = 128
RESID_HOOK = "blocks.1.hook_resid_post"
Z_HOOK = "blocks.2.attn.hook_z"


def _model():
    from sae_lens import HookedSAETransformer
    from transformer_lens import HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=4, d_model=128, n_heads=4, d_head=32, d_mlp=512, d_vocab=600, n_ctx=CONTEXT,
        act_fn="gelu", normalization_type="LN", positional_embedding_type="standard", seed=0,
    )
    return HookedSAETransformer(cfg).eval()


def _sequences(n: int, seed: int) -> list[list[int]]:
    """Chat-like examples: BOS, a header, then numbered items drawn Zipf-wise from fixed phrases."""
    rng = random.Random(seed)
    phrase_rng = random.Random(0)  # the same phrase book for every split
    phrases = [[phrase_rng.randrange(10, 600) for _ in range(phrase_rng.randint(1, 3))] for _ in range(200)]
    weights = [1.0 / (rank + 1) ** 1.1 for rank in range(len(phrases))]
    seqs = []
    for _ in range(n):
        seq = [BOS, 3, rng.choice([4, 7]), 5] + [rng.randrange(10, 600) for _ in range(rng.randint(2, 6))] + [9]
        for k in range(rng.randint(3, 20)):
            seq += [5, 10 + k % 10, *rng.choices(phrases, weights)[0], 6]
            if len(seq) > CONTEXT - 8:
                break
        seqs.append(seq[: CONTEXT - 1] + [EOS])
    return seqs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from lister_tui.organism.sae_training import SAETrainingSettings, train_sae

    model = _model()
    train = _sequences(400, seed=0)
    settings = SAETrainingSettings(d_sae=256, training_tokens=24_576, batch_size_tokens=512, seed=0)
    root = tmp_path_factory.mktemp("saes")
    handler_before = signal.getsignal(signal.SIGINT)
    out = {}
    for hook in (RESID_HOOK, Z_HOOK):
        out[hook] = root / hook
        train_sae(
            model, train, hook, out[hook], settings,
            pad_token_id=PAD, context_size=CONTEXT, exclude_token_ids=[BOS, PAD],
        )
    assert signal.getsignal(signal.SIGINT) is handler_before  # the runner's handlers are not installed
    return model, root, out


def test_only_the_final_saes_are_left_behind(trained):
    _, root, out = trained
    assert sorted(p.name for p in root.iterdir()) == sorted(p.name for p in out.values())
    for path in out.values():
        assert (path / "cfg.json").is_file()
        assert (path / "sae_weights.safetensors").is_file()
        assert not any(p.is_dir() for p in path.iterdir())  # no checkpoints folder


@pytest.mark.parametrize("hook", [RESID_HOOK, Z_HOOK])
def test_saved_sae_reloads_with_its_hook_and_no_normalisation(trained, hook):
    from sae_lens import SAE, JumpReLUSAE

    model, _, out = trained
    sae = SAE.load_from_disk(out[hook])
    assert isinstance(sae, JumpReLUSAE)
    assert sae.cfg.metadata.hook_name == hook
    assert sae.cfg.normalize_activations == "none"
    assert sae.cfg.d_sae == 256
    assert sorted(sae.cfg.metadata.exclude_special_tokens) == [PAD, BOS]
    if hook == Z_HOOK:
        assert sae.cfg.reshape_activations == "hook_z"
        assert sae.cfg.d_in == model.cfg.n_heads * model.cfg.d_head
    else:
        assert sae.cfg.reshape_activations == "none"
        assert sae.cfg.d_in == model.cfg.d_model
    # Decode is the plain affine map on raw activations (the training scale was folded in).
    feats = torch.rand(5, sae.cfg.d_sae)
    expected = feats @ sae.W_dec + sae.b_dec
    if hook == Z_HOOK:
        sae.encode(torch.zeros(1, model.cfg.n_heads, model.cfg.d_head))  # sets d_head for the reshape
        expected = expected.reshape(5, model.cfg.n_heads, model.cfg.d_head)
    torch.testing.assert_close(sae.decode(feats), expected)


@pytest.mark.parametrize("hook", [RESID_HOOK, Z_HOOK])
def test_spliced_sae_with_error_term_leaves_logits_unchanged(trained, hook):
    from sae_lens import SAE

    model, _, out = trained
    sae = SAE.load_from_disk(out[hook])
    seqs = _sequences(4, seed=5)
    width = max(map(len, seqs))
    tokens = torch.tensor([s + [PAD] * (width - len(s)) for s in seqs])
    with torch.no_grad():
        clean = model(tokens)
        spliced = model.run_with_saes(tokens, saes=[sae], use_error_term=True)
        replaced = model.run_with_saes(tokens, saes=[sae], use_error_term=False)
    torch.testing.assert_close(spliced, clean, atol=1e-4, rtol=0)
    assert not torch.allclose(replaced, clean, atol=1e-4)  # the SAE really was spliced in
    assert not model._acts_to_saes  # run_with_saes detached it again


@pytest.mark.parametrize("hook", [RESID_HOOK, Z_HOOK])
def test_evaluate_sae_on_held_out_text(trained, hook):
    from sae_lens import SAE

    from lister_tui.organism.sae_training import evaluate_sae

    model, _, out = trained
    sae = SAE.load_from_disk(out[hook])
    quality = evaluate_sae(model, sae, _sequences(40, seed=1), hook, pad_token_id=PAD, exclude_token_ids=[BOS, PAD])
    assert math.isfinite(quality.explained_variance)
    assert 0.0 < quality.explained_variance <= 1.0
    assert 0.0 < quality.l0 < sae.cfg.d_sae
    assert 0.0 <= quality.dead_fraction < 1.0


def test_pad_trimming_keeps_every_real_position():
    from lister_tui.organism.sae_training import _PadTrimmingModel

    model = _model()
    seqs = _sequences(6, seed=3)
    tokens = torch.tensor([s + [PAD] * (CONTEXT - len(s)) for s in seqs])
    hooks = [RESID_HOOK, Z_HOOK]
    with torch.no_grad():
        _, full = model.run_with_cache(tokens, names_filter=hooks, stop_at_layer=3)
        _, trimmed = _PadTrimmingModel(model, PAD).run_with_cache(tokens, names_filter=hooks, stop_at_layer=3)
    real = tokens != PAD
    for hook in hooks:
        assert trimmed[hook].shape == full[hook].shape
        torch.testing.assert_close(trimmed[hook][real], full[hook][real], atol=1e-5, rtol=1e-5)
