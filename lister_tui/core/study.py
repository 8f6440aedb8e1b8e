"""The study's fixed settings: prompt templates, topics and sampling presets.

Exact texts follow the study's companion code (see the project's reference notes):
the "short" template is the base, "long" swaps one word, "unspecified" drops it.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class SamplingSettings:
    """How continuations are sampled. ``temperature == 0`` means greedy decoding."""

    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int | None = None
    max_new_tokens: int = 100

    def __post_init__(self) -> None:
        from lister_tui.core.errors import ListerError

        if self.temperature < 0:
            raise ListerError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ListerError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise ListerError(f"top_k must be >= 1 or None, got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ListerError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


SAMPLING_PRESETS: dict[str, SamplingSettings] = {
    # The companion code's settings.
    "code": SamplingSettings(temperature=0.7, top_p=0.8, max_new_tokens=100),
    # The post's settings ("top-k 0.9" read as top-p 0.9).
    "post": SamplingSettings(temperature=0.8, top_p=0.9, max_new_tokens=100),
    "greedy": SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=100),
}


def template_text(template: str, topic: str) -> str:
    """The user turn for one template and topic."""
    from lister_tui.core.errors import ListerError

    if template not in TEMPLATES:
        raise ListerError(f"unknown template {template!r}; valid: {', '.join(TEMPLATES)}")
    return TEMPLATES[template].format(topic=topic)
