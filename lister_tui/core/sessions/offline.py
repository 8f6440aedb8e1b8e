"""A stand-in for a loaded model, built from what a session records, for read-only viewing.

When a session's model is not on this machine (no weights, or an unknown registry
name), the explorer still shows its samples, attributions and ablations: token ids,
token strings (the session's ``vocab`` table), the SAE list and the token ids of the
blank, line break and markers all come from the session. Nothing can be computed
(``model`` is None); the explorer says so in a banner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lister_tui.core.engine.registry import ModelEntry, SAESite, get_entry
from lister_tui.core.errors import ListerError
from lister_tui.core.sessions.schema import ModelInfo


class _VocabDecoder:
    """Enough of a tokenizer for display: ids to strings through the session's vocab table."""

    pad_token_id = 0

    def __init__(self, vocab: dict[int, str]):
        self.vocab = vocab

    def decode(self, ids) -> str:
        return "".join(self.vocab.get(int(i), f"⟨{int(i)}⟩") for i in ids)


@dataclass
class OfflineModel:
    """Quacks like :class:`~lister_tui.core.engine.loading.LoadedModel` for viewing; computes nothing."""

    entry: ModelEntry
    ids: object
    tokenizer: _VocabDecoder
    reason: str
    info: ModelInfo | None = None  # what the session recorded of its model
    model: None = None
    device: str = "none"
    read_only: bool = True
    _sae_cache: dict = field(default_factory=dict, repr=False)

    def to_str_tokens(self, ids) -> list[str]:
        return [self.tokenizer.decode([int(i)]) for i in ids]

    def load_sae(self, sae_id: str, cache: bool = False):
        raise ListerError(f"{self.entry.name} is not available here ({self.reason}); this session is read-only")


def offline_model(info: ModelInfo, vocab: dict[int, str], reason: str) -> OfflineModel:
    try:
        entry = get_entry(info.name)
    except ListerError:
        entry = None
    if entry is None and info.entry is not None:
        from lister_tui.core.engine.registry_file import entry_from_record

        try:
            entry = entry_from_record(info.entry)
        except ListerError:
            entry = None
    if entry is None:
        entry = ModelEntry(
            name=info.name,
            description=f"{info.name} (from a saved session; not in this lister-tui's registry)",
            source="pretrained" if info.source == "pretrained" else "shipped",
            sites=tuple(SAESite(s.id, s.kind if s.kind in ("res", "attn", "mlp") else "res", s.layer, hook=s.hook_name) for s in info.sites),
            hf_model_name=info.hf_model_name,
            weights_dir=Path("/nonexistent"),
        )
    return OfflineModel(entry, info.ids, _VocabDecoder(vocab), reason, info)
