"""Prompts: templates x topics x samples, as token ids of a loaded model.

The templates and topics are the study's. Exact texts follow its companion code (see the
project's reference notes): the "short" template is the base, "long" swaps one word,
"unspecified" drops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.errors import ListerError

TEMPLATES: dict[str, str] = {
    "short": "Provide me with a short list of {topic}. Just provide the names, no need for any other information.",
    "long": "Provide me with a long list of {topic}. Just provide the names, no need for any other information.",
    "unspecified": "Provide me with a list of {topic}. Just provide the names, no need for any other information.",
}

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


def template_text(template: str, topic: str) -> str:
    """The user turn for one template and topic."""
    if template not in TEMPLATES:
        raise ListerError(f"unknown template {template!r}; valid: {', '.join(TEMPLATES)}")
    return TEMPLATES[template].format(topic=topic)


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
    user = template_text(template, topic)
    entry = loaded.entry
    if entry.use_tokenizer_chat_template:
        rendered = loaded.tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
        return rendered + entry.item_marker
    return entry.render_prompt(user)


def prompt_ids(loaded: LoadedModel, template: str, topic: str) -> list[int]:
    ids = loaded.tokenizer(prompt_text(loaded, template, topic), add_special_tokens=False)["input_ids"]
    if ids[-1] != loaded.ids.item_marker:
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
    allow_new_topics: bool = False,
) -> list[PromptSpec]:
    """Every (template, topic, sample) with its own seed, in a stable order."""
    if not templates:
        raise ListerError(f"no templates given; valid: {', '.join(TEMPLATES)}")
    if not topics:
        raise ListerError("no topics given; give at least one topic (the study's 23 are the default)")
    if samples_per_topic < 1:
        raise ListerError(f"samples per topic must be >= 1, got {samples_per_topic}")
    for t in templates:
        if t not in TEMPLATES:
            raise ListerError(f"unknown template {t!r}; valid: {', '.join(TEMPLATES)}")
    for topic in topics:
        if not topic.strip():
            raise ListerError("an empty topic name was given")
        if topic not in TOPICS and not allow_new_topics:
            raise ListerError(
                f"unknown topic {topic!r}; the study's topics are: {', '.join(TOPICS)} "
                "(pass allow_new_topics=True to use your own)"
            )
    return [
        PromptSpec(t, topic, s, sample_seed(base_seed, t, topic, s))
        for t in templates
        for topic in topics
        for s in range(samples_per_topic)
    ]
