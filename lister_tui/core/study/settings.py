"""The study's sampling presets (its prompt templates and topics: :mod:`lister_tui.core.engine.prompts`)."""

from __future__ import annotations

from lister_tui.core.engine.sampling_settings import SamplingSettings

SAMPLING_PRESETS: dict[str, SamplingSettings] = {
    # The companion code's settings.
    "code": SamplingSettings(temperature=0.7, top_p=0.8, max_new_tokens=100),
    # The post's settings ("top-k 0.9" read as top-p 0.9).
    "post": SamplingSettings(temperature=0.8, top_p=0.9, max_new_tokens=100),
    "greedy": SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=100),
}
