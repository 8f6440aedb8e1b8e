"""Reference corpora for feature cards, and one SAE's activations over them, cached on disk.

A feature card (:mod:`lister_tui.core.study.cards`) describes a feature by the text
it fires on. That text is a :class:`Corpus`: one or more :class:`CorpusPart`
(lister-tiny's held-out organism text, a user's file, a session's own samples), each
a list of token-id documents with a name saying where each comes from.

The activation pass runs the model only up to the SAE's layer, encodes with the SAE
in batches of a bounded number of tokens, and keeps the non-zero activations only,
sorted by feature (compressed sparse rows: feature ``f``'s activations are
``positions[indptr[f]:indptr[f+1]]``), so that a card for any feature is a slice.
The result is cached per (model weights fingerprint, SAE, corpus part's tokens), one
``.npz`` file written atomically under ``locations.cache_dir()/activations`` that records what
it was computed from; a damaged or foreign file is moved aside and the pass computed again
(:mod:`lister_tui.core.study.activation_cache`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from lister_tui.core.engine.fingerprint import weights_fingerprint
from lister_tui.core.engine.folder_checks import sae_config
from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.errors import ListerError
from lister_tui.core.files.atomic import remove_dead_temporaries
from lister_tui.core.files.locations import cache_dir
from lister_tui.core.study.activation_cache import DamagedCache, SparseActivations, load, move_aside, save

CACHE_FORMAT = 3  # 2: the file records its provenance; 3: and a sha256 of its arrays
REFERENCE_SEED = 1  # lister-tiny's build draws its held-out examples from seed + 1 = 1 (training: seed 0)
REFERENCE_TOKENS = 50_000
MAX_DOC_TOKENS = 256  # longer documents are cut into chunks of this many tokens (at most the model's n_ctx)

Progress = Callable[[int, int], "bool | None"]  # (tokens done, tokens in all) -> True to stop


class PassCancelled(Exception):
    """The activation pass was stopped by its progress callback (nothing was cached)."""


@dataclass(frozen=True)
class CorpusPart:
    """Documents of token ids, each with where it comes from."""

    name: str  # e.g. "lister-tiny held-out (seed 1)", "notes.txt", "session samples"
    docs: tuple[tuple[int, ...], ...]
    sources: tuple[str, ...]  # one per document

    @property
    def n_tokens(self) -> int:
        return sum(len(d) for d in self.docs)

    @property
    def digest(self) -> str:
        """SHA-256 of the documents' token ids (document boundaries included)."""
        h = hashlib.sha256()
        for doc in self.docs:
            h.update(len(doc).to_bytes(4, "little"))
            h.update(np.asarray(doc, dtype=np.int64).tobytes())
        return h.hexdigest()


@dataclass(frozen=True)
class Corpus:
    parts: tuple[CorpusPart, ...]

    @property
    def n_tokens(self) -> int:
        return sum(p.n_tokens for p in self.parts)

    @property
    def description(self) -> str:
        return " + ".join(f"{p.name} ({p.n_tokens:,} tokens)" for p in self.parts)


# --- checks ------------------------------------------------------------------------------


def sae_width(lab: LoadedModel, sae_id: str) -> int:
    """The number of features of SAE ``sae_id`` (read from its config when shipped, else loaded)."""
    site = lab.entry.site(sae_id)  # a clear error for an unknown SAE
    if lab.entry.source == "shipped" and lab.entry.weights_dir is not None:
        folder = Path(site.path or Path(lab.entry.weights_dir) / "saes" / site.id)  # an SAE's or a transcoder's
        if (folder / "cfg.json").is_file():
            return int(sae_config(folder, f"fix or replace {folder}")["d_sae"])
    return int(lab.load_sae(sae_id, cache=True).cfg.d_sae)


def check_feature(lab: LoadedModel, sae_id: str, feature: int) -> int:
    """Refuse an unknown SAE or a feature out of range (before any pass); returns the SAE's width."""
    d_sae = sae_width(lab, sae_id)
    if isinstance(feature, bool) or not isinstance(feature, (int, np.integer)) or not 0 <= feature < d_sae:
        raise ListerError(f"feature {feature!r} is out of range for {sae_id}; valid: 0..{d_sae - 1}")
    return d_sae


# --- building corpora ----------------------------------------------------------------


def _chunks(ids: list[int], size: int, bos: int | None) -> list[list[int]]:
    """``ids`` cut into documents of at most ``size`` tokens, each opening with ``bos`` (if any)."""
    if bos is not None and ids and ids[0] == bos:
        ids = ids[1:]
    step = size - (bos is not None)
    out = []
    for start in range(0, len(ids), step):
        piece = ids[start : start + step]
        out.append(([bos] if bos is not None else []) + piece)
    return out


def part_from_texts(lab: LoadedModel, name: str, texts: Sequence[str], sources: Sequence[str]) -> CorpusPart:
    """Tokenize ``texts`` (special tokens written as text are recognised), chunked to the context length.

    Each document opens with the model's BOS token, as the SAEs were trained (and as
    Neuronpedia's and SAE-Vis's corpora are), and BOS positions are left out of every
    statistic.
    """
    size = min(MAX_DOC_TOKENS, int(lab.model.cfg.n_ctx))
    docs: list[tuple[int, ...]] = []
    where: list[str] = []
    for text, source in zip(texts, sources):
        ids = lab.tokenizer(text, add_special_tokens=False)["input_ids"]
        pieces = _chunks(list(ids), size, lab.ids.bos)
        for i, piece in enumerate(pieces):
            if len(piece) > (lab.ids.bos is not None):
                docs.append(tuple(piece))
                where.append(source if len(pieces) == 1 else f"{source}, chunk {i + 1}")
    if not docs:
        raise ListerError(f"corpus {name!r} holds no text")
    return CorpusPart(name, tuple(docs), tuple(where))


def reference_part(lab: LoadedModel, n_tokens: int = REFERENCE_TOKENS, seed: int = REFERENCE_SEED) -> CorpusPart | None:
    """lister-tiny's held-out organism text (about ``n_tokens`` tokens); None for other models."""
    if lab.entry.name != "lister-tiny":
        return None
    from lister_tui.organism.corpus import make_corpus

    texts, sources, total = [], [], 0
    # the corpus is deterministic and a longer one extends a shorter one, so draw
    # generously and keep the first examples that make up n_tokens
    for i, ex in enumerate(make_corpus(max(1, n_tokens // 20), seed)):
        if total >= n_tokens:
            break
        texts.append(ex.text)
        sources.append(f"held-out #{i} ({ex.template}/{ex.topic})")
        total += len(lab.tokenizer(ex.text, add_special_tokens=False)["input_ids"])
    return part_from_texts(lab, f"lister-tiny held-out text (seed {seed})", texts, sources)


def part_from_file(lab: LoadedModel, path: str | Path) -> CorpusPart:
    """A text file (one document per blank-line-separated paragraph) or JSONL with a ``text`` field."""
    path = Path(path)
    if not path.is_file():
        raise ListerError(f"corpus file {path} does not exist; give a text file or JSONL with a 'text' field")
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ListerError(f"cannot read corpus file {path} as UTF-8 text ({exc})") from exc
    texts, sources = [], []
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for n, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ListerError(f"{path}, line {n}: not valid JSON ({exc.msg}); each line must be an object with a 'text' field") from exc
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ListerError(f"{path}, line {n}: no string field 'text'; each line must be an object with a 'text' field")
            texts.append(record["text"])
            sources.append(f"{path.name} line {n}")
    else:
        line = 1
        for paragraph in content.split("\n\n"):
            if paragraph.strip():
                texts.append(paragraph)
                sources.append(f"{path.name} line {line}")
            line += paragraph.count("\n") + 2
    if not texts:
        raise ListerError(f"corpus file {path} holds no text")
    return part_from_texts(lab, path.name, texts, sources)


def part_from_samples(samples: dict) -> CorpusPart | None:
    """A session's own lists (``{key: ListSample}``), each a document named by its key."""
    if not samples:
        return None
    keys = list(samples)
    return CorpusPart("session samples", tuple(tuple(samples[k].tokens) for k in keys), tuple(keys))


def default_corpus(lab: LoadedModel, samples: dict | None = None, file: str | Path | None = None) -> Corpus:
    """lister-tiny's held-out text (or ``file`` if given), plus the session's samples."""
    parts = [part_from_file(lab, file) if file is not None else reference_part(lab)]
    parts.append(part_from_samples(samples or {}))
    parts = [p for p in parts if p is not None]
    if not parts:
        raise ListerError(
            f"no corpus for {lab.entry.name}: it has no built-in reference text and the session has no samples; "
            "give one with --corpus FILE (text, or JSONL with a 'text' field), or generate samples first"
        )
    return Corpus(tuple(parts))


# --- the activation pass ---------------------------------------------------------------


def provenance(lab: LoadedModel, sae_id: str, part: CorpusPart) -> dict | None:
    """What a pass is computed from: the cache records it and a read compares it field by field.

    The model's and the SAE's weights by SHA-256 (or the Hugging Face revision), the SAE's
    site (hook, release, id), the dtype, the corpus part's token digest and the cache's format.
    None when the weights cannot be told apart (random weights, no revision): such a pass is
    never cached.
    """
    fingerprint = weights_fingerprint(lab.entry, [sae_id])
    if "sha256" not in fingerprint and not fingerprint.get("hf_revision"):
        return None  # weights we cannot tell apart: never reuse a pass
    site = lab.entry.site(sae_id)
    record = {
        "format": CACHE_FORMAT,
        "model": lab.entry.name,
        "weights": fingerprint,
        "sae": sae_id,
        "hook_name": site.hook_name,
        "release": site.release,
        "sae_release_id": site.sae_id,
        "dtype": str(lab.dtype),
        "corpus_sha256": part.digest,
        "corpus_docs": len(part.docs),
        "corpus_tokens": part.n_tokens,
    }
    return json.loads(json.dumps(record, sort_keys=True, default=str))  # as it reads back from the file


def _cache_key(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]


def _batches(part: CorpusPart, budget: int) -> list[list[int]]:
    """Document indices in batches of at most ``budget`` padded tokens."""
    out, current, width = [], [], 0
    for d, doc in enumerate(part.docs):
        w = max(width, len(doc))
        if current and w * (len(current) + 1) > budget:
            out.append(current)
            current, w = [], len(doc)
        current.append(d)
        width = w
    if current:
        out.append(current)
    return out


def run_pass(lab: LoadedModel, sae_id: str, part: CorpusPart, on_progress: Progress | None = None) -> SparseActivations:
    """Encode every token of ``part`` with SAE ``sae_id`` (no cache): batched, bounded memory."""
    site = lab.entry.site(sae_id)
    sae = lab.load_sae(sae_id, cache=True)
    d_sae = int(sae.cfg.d_sae)
    model = lab.model
    # a dense [tokens, d_sae] block of at most ~64 MB in float32
    budget = int(np.clip(2**24 // d_sae, 256, 16384))
    starts = np.zeros(len(part.docs) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in part.docs], out=starts[1:])
    total = int(starts[-1])
    pos_chunks, feat_chunks, val_chunks = [], [], []
    done = 0
    bos = lab.ids.bos
    pad = lab.tokenizer.pad_token_id or 0
    captured: dict[str, torch.Tensor] = {}

    def capture(activation, hook):
        captured["x"] = activation
        return activation

    with torch.inference_mode():
        for batch in _batches(part, budget):
            docs = [part.docs[d] for d in batch]
            width = max(len(d) for d in docs)
            tokens = torch.full((len(docs), width), pad, dtype=torch.long)
            for b, doc in enumerate(docs):
                tokens[b, : len(doc)] = torch.tensor(doc)
            tokens = tokens.to(lab.device)
            # right padding with causal attention: real positions never see the pads
            model.run_with_hooks(
                tokens,
                stop_at_layer=site.layer + 1,
                fwd_hooks=[(site.hook_name, capture)],
                attention_mask=torch.ones_like(tokens),
            )
            acts = sae.encode(captured.pop("x").to(sae.dtype))  # [batch, width, d_sae]
            lengths = torch.tensor([len(d) for d in docs], device=acts.device)
            keep = torch.arange(width, device=acts.device).unsqueeze(0) < lengths.unsqueeze(1)
            if bos is not None:
                keep &= tokens != bos
            acts = acts * keep.unsqueeze(-1)
            b_idx, p_idx, f_idx = torch.nonzero(acts > 0, as_tuple=True)
            vals = acts[b_idx, p_idx, f_idx].float().cpu().numpy()
            offsets = torch.as_tensor(starts[batch], device=acts.device)
            pos_chunks.append((offsets[b_idx] + p_idx).cpu().numpy())
            feat_chunks.append(f_idx.cpu().numpy())
            val_chunks.append(vals)
            done += sum(len(d) for d in docs)
            if on_progress is not None and on_progress(done, total):
                raise PassCancelled(f"activation pass of {sae_id} over {part.name} stopped at {done}/{total} tokens")
    positions = np.concatenate(pos_chunks).astype(np.int64) if pos_chunks else np.zeros(0, np.int64)
    features = np.concatenate(feat_chunks).astype(np.int64) if feat_chunks else np.zeros(0, np.int64)
    values = np.concatenate(val_chunks).astype(np.float32) if val_chunks else np.zeros(0, np.float32)
    order = np.lexsort((positions, features))  # by feature, then position
    indptr = np.zeros(d_sae + 1, dtype=np.int64)
    np.cumsum(np.bincount(features, minlength=d_sae), out=indptr[1:])
    n_bos = 0 if bos is None else sum(doc.count(bos) for doc in part.docs)
    return SparseActivations(d_sae, total, total - n_bos, starts, indptr, positions[order], values[order])


def corpus_activations(
    lab: LoadedModel,
    sae_id: str,
    part: CorpusPart,
    *,
    cache: Path | None | bool = True,
    on_progress: Progress | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> SparseActivations:
    """``run_pass``, read from / written to the cache (``cache``: a folder, True for the default, False for none).

    A cache file that cannot be used (truncated, flipped, emptied, of another SAE or corpus,
    or with a broken sparse structure) is moved aside to ``<name>.damaged-<time>`` and the
    pass is recomputed; ``on_notice`` gets one sentence saying so. Temporary files left by a
    killed pass (``.*.tmp-<pid>`` of a process that is gone) are removed.
    """
    record = provenance(lab, sae_id, part) if cache is not False else None
    path = None
    if record is not None:
        folder = (cache_dir() if cache is True or cache is None else Path(cache)) / "activations"
        remove_dead_temporaries(folder)
        path = folder / f"{lab.entry.name}-{sae_id}-{_cache_key(record)}.npz"
        if path.is_file():
            try:
                hit = load(path, part, record, sae_width(lab, sae_id))
            except DamagedCache as exc:
                done = move_aside(path)
                if on_notice is not None:
                    on_notice(f"the activation cache {path} was damaged ({exc}); it was {done} and the pass is recomputed")
            else:
                if on_progress is not None:
                    on_progress(part.n_tokens, part.n_tokens)
                return hit
    acts = run_pass(lab, sae_id, part, on_progress)
    if path is not None and record is not None:
        try:
            save(path, acts, record)
        except OSError:
            pass  # an unwritable cache costs a recomputation next time, nothing else
    return acts
