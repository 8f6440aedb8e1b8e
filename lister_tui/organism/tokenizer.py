"""lister-tiny's tokenizer, trained with HF `tokenizers` on the synthetic corpus.

The pre-tokenizer cuts text into words with their leading blank (" Paris"),
single punctuation marks, a lone blank and "\n", so that the filler blank before
a line break is a token of its own, distinct from "\n", as in Gemma's vocabulary.
BPE then learns whole-word tokens for the corpus's words (" short" and " long"
are single tokens) and keeps characters as a fallback for unseen text.
"""

from __future__ import annotations

import string
from pathlib import Path

from lister_tui.organism.corpus import SPECIAL_TOKENS

PRETOKEN_PATTERN = r" ?[A-Za-z0-9']+| ?[^\sA-Za-z0-9']| |\n"


def train_tokenizer(
    texts: list[str],
    out_dir: Path,
    vocab_size: int = 1024,
    *,
    special_tokens: tuple[str, ...] = SPECIAL_TOKENS,
    chat_template: str | None = None,
    roles: dict | None = None,
):
    """Train on ``texts``, save as a `PreTrainedTokenizerFast` folder, and return it reloaded.

    ``special_tokens`` get the first ids in order; ``chat_template`` (Jinja, as Hugging
    Face's) is stored with the tokenizer when given; ``roles`` overrides which special
    tokens are bos, eos, unk, pad and the additional ones (another model family's names).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PRETOKEN_PATTERN), behavior="isolated")
    tok.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=list(string.printable[:95]) + ["\n"],
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    names = {
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"],
    }
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **{**names, **(roles or {})})
    if chat_template is not None:
        fast.chat_template = chat_template
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    # TransformerLens needs a tokenizer loaded from disk (an in-memory one lacks name_or_path).
    return PreTrainedTokenizerFast.from_pretrained(str(out_dir))
