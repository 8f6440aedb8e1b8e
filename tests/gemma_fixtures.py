"""A randomly initialised model of the Gemma-2 architecture, for the Gemma preset's code path.

Everything the `gemma-2-2b-it` registry entry goes through except the real weights:
a small hand-made ``HookedTransformerConfig`` with Gemma 2's features (RMS norm
before and after each sublayer, attention and final logit soft caps, grouped-query
attention, alternating local/global attention, gated MLP with tanh-GELU, rotary
positions, 26 layers so that every study SAE site exists), a small BPE tokenizer
with Gemma's special tokens and chat template, and random JumpReLU SAEs of the
Gemma Scope kinds (``hook_resid_post`` and ``attn.hook_z``).

Random weights would not write lists, so the embedding and unembedding are set to a
bigram table that does (marker → item → optional blank → newline → marker or
end-of-turn), and the sublayers' post-norm gains are small: every block still runs
and feeds the residual stream, but the bigram path decides the samples.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

GEMMA_SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>")
# Gemma's own chat template (tokenizer_config.json of google/gemma-2-2b-it)
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)
ITEMS = (" Apple", " Banana", " Cherry", " Mango", " Plum", " Kiwi", " Lemon", " Peach")
GEMMA_LAYERS = 26


def build_tokenizer(folder: Path):
    """A BPE tokenizer with Gemma's special tokens (ids 0..5 as in Gemma) and chat template."""
    from lister_tui.core.engine.prompts import TEMPLATES, TOPICS
    from lister_tui.organism.tokenizer import train_tokenizer

    texts = [t.format(topic=topic) for t in TEMPLATES.values() for topic in TOPICS]
    texts += ["user model\n-" + "".join(f"{item} \n-" for item in ITEMS)] * 5
    return train_tokenizer(texts, folder, 400, special_tokens=tuple(GEMMA_SPECIAL_TOKENS), chat_template=GEMMA_CHAT_TEMPLATE)


def gemma2_config(d_vocab: int):
    from transformer_lens import HookedTransformerConfig

    return HookedTransformerConfig(
        n_layers=GEMMA_LAYERS,
        d_model=32,
        n_heads=4,
        n_key_value_heads=2,  # grouped-query attention, as Gemma 2 2B (8 heads, 4 KV heads)
        d_head=8,
        d_mlp=64,
        d_vocab=d_vocab,
        n_ctx=256,
        act_fn="gelu_pytorch_tanh",
        normalization_type="RMS",
        eps=1e-6,
        positional_embedding_type="rotary",
        rotary_dim=8,
        use_attn_scale=True,
        use_local_attn=True,
        window_size=8,
        attn_types=["local", "global"] * (GEMMA_LAYERS // 2),
        attn_scores_soft_cap=50.0,
        output_logits_soft_cap=30.0,
        gated_mlp=True,
        final_rms=True,
        use_normalization_before_and_after=True,
        original_architecture="Gemma2ForCausalLM",
        default_prepend_bos=False,
        tokenizer_prepends_bos=False,
        dtype=torch.float32,
        seed=0,
    )


@torch.no_grad()
def build_model(tokenizer, seed: int = 0):
    """The random Gemma-2-architecture HookedSAETransformer, with a list-writing bigram path."""
    from sae_lens import HookedSAETransformer

    torch.manual_seed(seed)
    cfg = gemma2_config(len(tokenizer))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HookedSAETransformer(cfg, tokenizer=tokenizer, default_padding_side="right")
    model.eval()
    ids = lambda text: tokenizer.convert_tokens_to_ids(text) if text.startswith("<") else tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    one = lambda text: ids(text) if isinstance(ids(text), int) else ids(text)[0]  # noqa: E731
    marker, newline, blank, end = one("-"), one("\n"), one(" "), one("<end_of_turn>")
    items = [ids(item) for item in ITEMS]
    assert all(len(i) == 1 for i in items), "every item must be one token"
    items = [i[0] for i in items]
    # bigram logits: [from token, to token]
    table = torch.zeros(cfg.d_vocab, cfg.d_vocab)
    for item in items:
        table[marker, item] = 10.0
        table[item, newline] = 10.0
        table[item, blank] = 9.0
    table[blank, newline] = 10.0
    table[newline, marker] = 10.0
    table[newline, end] = 9.3
    d = cfg.d_model
    generator = torch.Generator().manual_seed(seed)
    embed = torch.randn(cfg.d_vocab, d, generator=generator)
    embed = embed / embed.norm(dim=-1, keepdim=True) * d**0.5  # RMS 1
    model.embed.W_E.copy_(embed)
    model.unembed.W_U.copy_(embed.T @ table / d)  # [d_model, d_vocab]
    for block in model.blocks:
        block.ln1_post.w.fill_(0.05)
        block.ln2_post.w.fill_(0.05)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def build_loaded(folder: Path, sae_sites=("res_0", "attn_2")):
    """A LoadedModel for the `gemma-2-2b-it` registry entry, with random weights and SAEs."""
    from engine_fixtures import build_sae

    from lister_tui.core.engine.loading import LoadedModel, _resolve_ids
    from lister_tui.core.engine.registry import get_entry

    entry = get_entry("gemma-2-2b-it")
    tokenizer = build_tokenizer(folder / "tokenizer")
    model = build_model(tokenizer)
    loaded = LoadedModel(entry, model, tokenizer, "cpu", torch.float32, _resolve_ids(entry, tokenizer))
    for n, sae_id in enumerate(sae_sites):
        sae = build_sae(model, entry.site(sae_id).hook_name, kind="jumprelu", d_sae=64, seed=10 + n)
        loaded._sae_cache[sae_id] = sae  # what load_sae would return once read from the cache
    return loaded


# --- a local Hugging Face cache with small random pretrained models and SAEs ------------------
#
# The hub's on-disk layout (models--org--name/refs/main, snapshots/<rev>/...), holding
# randomly initialised Gemma 2, Gemma 3 and Llama 3.2 models whose config.json is the real
# one with the sizes shrunk, a tokenizer with a chat template, and SAEs in each release's
# own format: Gemma Scope's params.npz, Gemma Scope 2's params.safetensors + config.json,
# and SAELens folders. Loading from it runs lister-tui's real pretrained path offline.

REVISION = "0123456789abcdef0123456789abcdef01234567"
LLAMA_SPECIAL_TOKENS = ("<|pad|>", "<|end_of_text|>", "<|begin_of_text|>", "<unk>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
LLAMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + "
    "message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
LLAMA_ROLES = {
    "bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "unk_token": "<unk>", "pad_token": "<|pad|>",
    "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
}  # fmt: skip


def snapshot(hub: Path, repo: str) -> Path:
    """A repo's snapshot folder in the hub cache layout (created, with refs/main)."""
    folder = hub / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(REVISION)
    path = folder / "snapshots" / REVISION
    path.mkdir(parents=True, exist_ok=True)
    return path


def _training_texts(end: str) -> list[str]:
    from lister_tui.core.engine.prompts import TEMPLATES, TOPICS

    texts = [t.format(topic=topic) for t in TEMPLATES.values() for topic in TOPICS]
    texts += ["user model assistant\n-" + "".join(f"{item} \n-" for item in ITEMS) + end] * 5
    texts += ["\n1." + "".join(f"{item} \n{n}." for n, item in enumerate(ITEMS, 2))] * 5
    return texts


def build_family_tokenizer(folder: Path, family: str):
    from lister_tui.organism.tokenizer import train_tokenizer

    if family == "llama":
        return train_tokenizer(_training_texts("<|eot_id|>"), folder, 400, special_tokens=LLAMA_SPECIAL_TOKENS,
                               chat_template=LLAMA_CHAT_TEMPLATE, roles=LLAMA_ROLES)  # fmt: skip
    return train_tokenizer(_training_texts("<end_of_turn>"), folder, 400, special_tokens=GEMMA_SPECIAL_TOKENS, chat_template=GEMMA_CHAT_TEMPLATE)


def hf_config(family: str, d_vocab: int):
    """The real config.json of each model, its sizes shrunk (layers kept where the SAE sites need them)."""
    from transformers import Gemma2Config, Gemma3TextConfig, LlamaConfig

    if family == "gemma2":  # google/gemma-2-2b-it
        return Gemma2Config(
            vocab_size=d_vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=GEMMA_LAYERS, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, hidden_activation="gelu_pytorch_tanh", max_position_embeddings=256,
            rms_norm_eps=1e-6, query_pre_attn_scalar=8, sliding_window=8, final_logit_softcapping=30.0,
            attn_logit_softcapping=50.0, tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, bos_token_id=2,
        )  # fmt: skip
    if family == "gemma3":  # google/gemma-3-1b-it (Gemma3ForCausalLM, 26 layers)
        return Gemma3TextConfig(
            vocab_size=d_vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=26, num_attention_heads=4,
            num_key_value_heads=1, head_dim=8, hidden_activation="gelu_pytorch_tanh", max_position_embeddings=256,
            rms_norm_eps=1e-6, query_pre_attn_scalar=8, sliding_window=8, sliding_window_pattern=6,
            tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, bos_token_id=2,
        )  # fmt: skip
    return LlamaConfig(  # meta-llama/Llama-3.2-1B-Instruct
        vocab_size=d_vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=500000.0,
        tie_word_embeddings=False, bos_token_id=2, eos_token_id=1, pad_token_id=0,
    )  # fmt: skip


@torch.no_grad()
def write_hf_model(folder: Path, family: str, tokenizer, seed: int = 0) -> None:
    """A random HF model saved to ``folder`` whose bigram path writes lists (as build_model's)."""
    from transformers import AutoModelForCausalLM

    cfg = hf_config(family, len(tokenizer))
    cfg.architectures = [{"gemma2": "Gemma2ForCausalLM", "gemma3": "Gemma3ForCausalLM", "llama": "LlamaForCausalLM"}[family]]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    end = "<|eot_id|>" if family == "llama" else "<end_of_turn>"
    one = lambda text: tokenizer.convert_tokens_to_ids(text) if text.startswith("<") else tokenizer.encode(text, add_special_tokens=False)[0]  # noqa: E731
    marker, newline, blank, stop = one("-"), one("\n"), one(" "), one(end)
    table = torch.zeros(cfg.vocab_size, cfg.vocab_size)
    if family == "llama":  # numbered lists: "1." item "\n" "2." item ... (the bigram cannot count: every later item is "2.")
        marker, digit = one("."), one("2")
        table[newline, digit] = 10.0
        table[digit, marker] = 10.0
    else:
        table[newline, marker] = 10.0
    for item in (one(i) for i in ITEMS):
        table[marker, item] = 10.0
        table[item, newline] = 10.0
        table[item, blank] = 9.0
    table[blank, newline] = 10.0
    table[newline, stop] = 9.3
    d = cfg.hidden_size
    embed = torch.randn(cfg.vocab_size, d, generator=torch.Generator().manual_seed(seed))
    # the list tokens get orthogonal embeddings, so the bigram table is read back exactly
    used = list(dict.fromkeys([marker, newline, blank, stop, one("2"), one("-"), *(one(i) for i in ITEMS)]))
    basis, _ = torch.linalg.qr(embed[used].T)  # [d, n_used]
    embed[used] = basis.T
    embed = embed / embed.norm(dim=-1, keepdim=True) * d**0.5
    model.model.embed_tokens.weight.copy_(embed)
    model.lm_head.weight.copy_((embed.T @ table / d).T)
    for layer in model.model.layers:
        # the sublayers run but stay small beside the embedding (Gemma's post-norms scale by 1 + w)
        layer.self_attn.o_proj.weight.mul_(0.05)
        layer.mlp.down_proj.weight.mul_(0.05)
        for name in ("post_attention_layernorm", "post_feedforward_layernorm"):
            if family != "llama" and hasattr(layer, name):
                getattr(layer, name).weight.fill_(-0.95)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))


def _jumprelu_arrays(d_in: int, d_sae: int, seed: int) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    w_enc = rng.standard_normal((d_in, d_sae)).astype("float32") / d_in**0.5
    w_dec = rng.standard_normal((d_sae, d_in)).astype("float32")
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    return {"w_enc": w_enc, "w_dec": w_dec, "b_enc": np.zeros(d_sae, "float32"), "b_dec": np.zeros(d_in, "float32"),
            "threshold": np.full(d_sae, 0.1, "float32")}  # fmt: skip


def _release_folder(site) -> tuple[str, str]:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    release = get_pretrained_saes_directory()[site.release]
    return release.repo_id, release.saes_map[site.sae_id]


def write_gemma_scope_sae(hub: Path, site, d_in: int, d_sae: int = 48, seed: int = 0) -> None:
    """Gemma Scope (1): ``<folder>/params.npz`` with W_enc, W_dec, b_enc, b_dec, threshold."""
    import numpy as np

    repo, folder = _release_folder(site)
    arrays = _jumprelu_arrays(d_in, d_sae, seed)
    path = snapshot(hub, repo) / folder
    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / "params.npz", **{("W_" + k[2:] if k.startswith("w_") else k): v for k, v in arrays.items()})


def write_gemma_scope_2_sae(hub: Path, site, d_in: int, d_sae: int = 48, seed: int = 0) -> None:
    """Gemma Scope 2: ``<folder>/params.safetensors`` (w_enc, w_dec, b_enc, b_dec, threshold) and config.json."""
    import json

    from safetensors.numpy import save_file

    repo, folder = _release_folder(site)
    path = snapshot(hub, repo) / folder
    path.mkdir(parents=True, exist_ok=True)
    save_file(_jumprelu_arrays(d_in, d_sae, seed), str(path / "params.safetensors"))
    hook = {"res": f"model.layers.{site.layer}.output", "attn": f"model.layers.{site.layer}.self_attn.o_proj.input"}[site.kind]
    (path / "config.json").write_text(json.dumps({"architecture": "jump_relu", "model_name": "gemma-v3-1b-it", "hf_hook_point_in": hook, "width": d_sae}))


def _transcoder_arrays(d_in: int, d_sae: int, seed: int, affine: bool) -> dict:
    import numpy as np

    arrays = _jumprelu_arrays(d_in, d_sae, seed)  # d_out = d_in (the MLP writes the residual width)
    if affine:
        rng = np.random.default_rng(seed + 1000)
        arrays["affine_skip_connection"] = (rng.standard_normal((d_in, d_in)) / d_in).astype("float32")  # (d_in, d_out)
    return arrays


def write_gemma_scope_transcoders(hub: Path, entry, d_in: int, d_sae: int = 40) -> None:
    """Every layer of the entry's first transcoder set, in its release's hub layout: Gemma Scope's
    ``<folder>/params.npz`` (Gemma 2) or Gemma Scope 2's ``params.safetensors`` with the affine skip (Gemma 3)."""
    import json

    import numpy as np
    from safetensors.numpy import save_file

    from lister_tui.core.engine.transcoders import set_sites, transcoder_set

    tset = transcoder_set(entry)
    for site in set_sites(entry, tset):
        repo, folder = _release_folder(site)
        path = snapshot(hub, repo) / folder
        path.mkdir(parents=True, exist_ok=True)
        if folder.endswith("_affine"):
            save_file(_transcoder_arrays(d_in, d_sae, site.layer, affine=True), str(path / "params.safetensors"))
            hooks = {"hf_hook_point_in": f"model.layers.{site.layer}.pre_feedforward_layernorm.output",
                     "hf_hook_point_out": f"model.layers.{site.layer}.post_feedforward_layernorm.output"}  # fmt: skip
            (path / "config.json").write_text(json.dumps({"architecture": "jump_relu", "model_name": "gemma-v3-1b-it", "affine_connection": True, **hooks}))
        else:
            arrays = _transcoder_arrays(d_in, d_sae, site.layer, affine=False)
            np.savez(path / "params.npz", **{("W_" + k[2:] if k.startswith("w_") else k): v for k, v in arrays.items()})


def write_saelens_folder(path: Path, hook_name: str, d_in: int, d_sae: int = 48, seed: int = 0) -> None:
    """A SAELens folder (cfg.json + sae_weights.safetensors), as SAE.save_model writes it."""
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    arrays = _jumprelu_arrays(d_in, d_sae, seed)
    reshape = "hook_z" if hook_name.endswith("hook_z") else "none"
    sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae, reshape_activations=reshape, metadata=SAEMetadata(hook_name=hook_name)))
    with torch.no_grad():
        for name, value in arrays.items():
            getattr(sae, {"w_enc": "W_enc", "w_dec": "W_dec"}.get(name, name)).copy_(torch.from_numpy(value))
    sae.save_model(str(path))


def build_hf_cache(root: Path) -> dict:
    """The cache under ``root/hf`` (HF_HOME) with gemma-2-2b-it, gemma-3-1b-it (every SAE of their
    built-in entries) and Llama-3.2-1B-Instruct (SAELens folders under ``root/saes``)."""
    from lister_tui.core.engine.registry import get_entry

    hub = root / "hf" / "hub"
    for family, repo in (("gemma2", "google/gemma-2-2b-it"), ("gemma3", "google/gemma-3-1b-it"), ("llama", "meta-llama/Llama-3.2-1B-Instruct")):
        tok = build_family_tokenizer(root / f"tok-{family}", family)
        write_hf_model(snapshot(hub, repo), family, tok)
    for n, site in enumerate(get_entry("gemma-2-2b-it").sites):
        write_gemma_scope_sae(hub, site, d_in=32 if site.kind == "res" else 4 * 8, seed=n)
    for n, site in enumerate(get_entry("gemma-3-1b-it").sites):
        write_gemma_scope_2_sae(hub, site, d_in=32 if site.kind == "res" else 4 * 8, seed=n)
    for name in ("gemma-2-2b-it", "gemma-3-1b-it"):
        write_gemma_scope_transcoders(hub, get_entry(name), d_in=32)
    saes = root / "saes"
    write_saelens_folder(saes / "res_1", "blocks.1.hook_resid_post", 32, seed=1)
    write_saelens_folder(saes / "mlp_2", "blocks.2.hook_mlp_out", 32, seed=2)
    return {"hf_home": root / "hf", "saes": saes}


LLAMA_ENTRY_TOML = """
[models.tiny-llama]
description = "a random Llama 3.2 of the test cache"
model = "meta-llama/Llama-3.2-1B-Instruct"
dtype = "float32"
chat_template = true
stop_tokens = ["<|eot_id|>", "<|end_of_text|>"]
bos_token = "<|begin_of_text|>"
list_marker = "1."

[[models.tiny-llama.sites]]
id = "res_1"
path = "{saes}/res_1"
hook = "blocks.1.hook_resid_post"

[[models.tiny-llama.sites]]
id = "mlp_2"
path = "{saes}/mlp_2"
kind = "mlp"
layer = 2
"""
