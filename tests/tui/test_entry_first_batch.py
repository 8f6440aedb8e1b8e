"""The explorer's first batch uses the entry's own templates when its registry file defines some."""

from __future__ import annotations

from dataclasses import replace

from lister_tui.core.engine.entries import Template
from lister_tui.tui.app import DEFAULT_REQUEST, ListerApp


def test_the_first_batch_uses_the_entrys_templates(tiny):
    own = replace(tiny, entry=replace(tiny.entry, templates=(Template("terse", "A short list of {topic}.", "short"),)))
    app = ListerApp(own)
    assert app.initial.templates == ("terse",) and app.initial.topics == DEFAULT_REQUEST.topics
    assert {s.template for s in app.initial.specs()} == {"terse"}  # the template is known to the prompt builder
    assert ListerApp(tiny).initial is DEFAULT_REQUEST  # an entry without templates: the study's
