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
