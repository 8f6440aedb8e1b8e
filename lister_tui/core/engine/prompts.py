"""Prompts: templates x topics x samples, as token ids of a loaded model.

The templates and topics are the study's. Exact texts follow its companion code (see the
project's reference notes): the "short" template is the base, "long" swaps one word,
"unspecified" drops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from lister_tui.core.engine.entries import STUDY_TEMPLATES, ModelEntry, Template
from lister_tui.core.errors import ListerError

if TYPE_CHECKING:  # torch stays unimported for commands that only read templates (`lister-tui models`)
    from lister_tui.core.engine.loading import LoadedModel

TEMPLATES: dict[str, str] = {name: t.text for name, t in STUDY_TEMPLATES.items()}
# "One prompt, N seeds": the whole user turn is the sample's topic field.
FREE_TEMPLATE = Template("free", "{topic}", "neutral")
MAX_TOPIC_CHARS = 2000
_user_templates: dict[str, Template] = {}
_template_sources: dict[str, tuple[str, str]] = {}  # name -> ("--templates" | "--registry", absolute path)


def register_templates(templates: Sequence[Template], source: tuple[str, str] | None = None) -> None:
    """Make user templates (``--templates FILE``, a registry file's) known in this process; ``source``
    (the option and the file) lets a repeat command load them again."""
    for t in templates:
        _user_templates[t.name] = t
        if source is not None:
            _template_sources[t.name] = source


def template_source(name: str) -> tuple[str, str] | None:
    """The option and file a user template came from (None: the study's, an entry's own, or "free")."""
    return _template_sources.get(name) if name in _user_templates else None


def available_templates(entry: ModelEntry | None = None) -> dict[str, Template]:
    """Every template a prompt may name: the study's, the entry's file's, the user's, and "free"."""
    out = dict(STUDY_TEMPLATES)
    if entry is not None:
        out.update({t.name: t for t in entry.templates})
    out.update(_user_templates)
    out[FREE_TEMPLATE.name] = FREE_TEMPLATE
    return out


def get_template(name: str, entry: ModelEntry | None = None) -> Template:
    templates = available_templates(entry)
    if name not in templates:
        raise ListerError(f"unknown template {name!r}; valid: {', '.join(templates)} (add your own with --templates FILE)")
    return templates[name]


TOPICS: tuple[str, ...] = (
    "City Names",
    "Countries",
    "Animals",
    "Types of Trees",
    "Types of Flowers",
    "Fruits",
    "Vegetables",
    "Car Brands",
    "Sports",
    "Rivers",
    "Mountains",
    "Ocean",
    "Inventions",
    "Languages",
    "Capital Cities",
    "Movies",
    "Books",
    "TV Shows",
    "Famous Scientists",
    "Famous Writers",
    "Video Games",
    "Companies",
    "Colors",
)


from lister_tui.core.limits import MAX_SAMPLES_PER_TOPIC  # noqa: E402,F401


def check_topic(topic: str) -> None:
    """A topic is free text: non-empty, at most MAX_TOPIC_CHARS, no control characters but line breaks."""
    if not isinstance(topic, str) or not topic.strip():
        raise ListerError("an empty topic was given; give a topic such as 'Types of Cheese'")
    if len(topic) > MAX_TOPIC_CHARS:
        raise ListerError(f"a topic is {len(topic)} characters long; valid: 1..{MAX_TOPIC_CHARS}")
    bad = next((c for c in topic if (ord(c) < 32 and c not in "\n\t") or ord(c) == 127), None)
    if bad is not None:
        raise ListerError(f"topic {topic[:40]!r} holds the control character {bad!r}; remove it")


def template_text(template: str, topic: str, entry: ModelEntry | None = None) -> str:
    """The user turn for one template and topic."""
    return get_template(template, entry).text.replace("{topic}", topic)


@dataclass(frozen=True)
class PromptSpec:
    """One sample of the study: which prompt, and the seed its continuation is drawn with."""

    template: str
    topic: str
    sample: int
    seed: int

    @property
    def key(self) -> str:
        return f"{self.template}/{self.topic}/{self.sample}"


def prompt_text(loaded: LoadedModel, template: str, topic: str) -> str:
    """The full prompt as text, special tokens included, ending with the first item marker."""
    entry = loaded.entry
    user = template_text(template, topic, entry)
    if entry.use_tokenizer_chat_template:
        rendered = loaded.tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
        return rendered + first_marker(entry.item_marker)
    return f"{entry.chat_prefix}{user}{entry.chat_suffix}{first_marker(entry.item_marker)}"


def first_marker(style: str) -> str:
    """The text that opens a list's first item: "-", "*", or "1." for a numbered list."""
    return style


def prompt_ids(loaded: LoadedModel, template: str, topic: str) -> list[int]:
    ids = loaded.tokenizer(prompt_text(loaded, template, topic), add_special_tokens=False)["input_ids"]
    if not ids or ids[-1] != loaded.ids.item_marker:
        raise ListerError(
            f"the prompt for {template!r}/{topic!r} does not end with the item marker token "
            f"{loaded.entry.item_marker!r}; the tokenizer merged it with its neighbour"
        )
    return list(ids)


def sample_seed(base_seed: int, template: str, topic: str, sample: int) -> int:
    """A seed per sample that does not depend on which other samples are drawn."""
    import zlib

    return (base_seed * 1_000_003 + zlib.crc32(f"{template}|{topic}|{sample}".encode())) % (2**31 - 1)


def build_prompts(
    templates: Sequence[str] = tuple(TEMPLATES),
    topics: Sequence[str] = TOPICS,
    samples_per_topic: int = 5,
    base_seed: int = 0,
    allow_new_topics: bool = True,
    entry: ModelEntry | None = None,
) -> list[PromptSpec]:
    """Every (template, topic, sample) with its own seed, in a stable order.

    Topics are free text (the study's 23 are the default set); ``allow_new_topics``
    is kept for callers written when only the study's topics were allowed."""
    known = available_templates(entry)
    if not templates:
        raise ListerError(f"no templates given; valid: {', '.join(known)}")
    if not topics:
        raise ListerError("no topics given; give at least one topic (the study's 23 are the default)")
    if isinstance(samples_per_topic, bool) or not isinstance(samples_per_topic, int) or not 1 <= samples_per_topic <= MAX_SAMPLES_PER_TOPIC:
        raise ListerError(f"samples per topic must be an integer in [1, {MAX_SAMPLES_PER_TOPIC}], got {samples_per_topic!r}")
    for kind, values in (("template", templates), ("topic", topics)):
        twice = sorted({v for v in values if list(values).count(v) > 1})
        if twice:  # the same sample keys twice: one list would silently replace the other
            raise ListerError(f"{kind} {twice[0]!r} is given twice; give each {kind} once")
    for t in templates:
        get_template(t, entry)
    for topic in topics:
        check_topic(topic)
        if topic not in TOPICS and not allow_new_topics:
            raise ListerError(f"unknown topic {topic!r}; the study's topics are: {', '.join(TOPICS)}")
    return [
        PromptSpec(t, topic, s, sample_seed(base_seed, t, topic, s))
        for t in templates
        for topic in topics
        for s in range(samples_per_topic)
    ]
