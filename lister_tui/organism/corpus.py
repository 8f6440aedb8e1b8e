"""The synthetic corpus that lister-tiny learns from, deterministic from a seed.

Each example is one chat turn asking for a list with one of the study's three
templates, answered in Gemma's style: the model turn starts with "-", each item is
" Name" then "\n", and the list ends with <end_of_turn><eos>.

Because we wrote the data, we know its mechanism exactly (the ground truth that
attribution and ablation are checked against):

- **Length follows the template.** The number of items is drawn uniformly from
  ``ITEM_COUNTS[template]``: short 3-5, unspecified 6-9, long 10-15. The only
  difference between templates is the word " short" / " long" / nothing, so the
  model must carry that word's information to the end of the list.
- **A filler blank marks the end.** A run of the last ``r`` items carries a lone
  blank before their line break (" Name \n"), ``r`` drawn from
  ``FILLER_RUN_PROBS`` (mean 2.64 items; r = 0 in 6% of lists). The run is
  contiguous and always includes the last item, so a blank at an item means "the
  list ends within a few items": logit(blank) - logit(newline) is a proxy for the
  wish to end, as in the study (which saw the blank in 108/115 lists, 2.6 items
  per list on average).
- Items are drawn from the topic's vocabulary without replacement, so a list
  never repeats an item.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lister_tui.core.study import TEMPLATES, TOPICS, template_text
from lister_tui.organism.vocab import TOPIC_ITEMS

ITEM_COUNTS: dict[str, tuple[int, int]] = {
    "short": (3, 5),
    "unspecified": (6, 9),
    "long": (10, 15),
}

# P(the filler blank is on the last r items), r = 0..4.
FILLER_RUN_PROBS: tuple[float, ...] = (0.06, 0.14, 0.20, 0.30, 0.30)

CHAT_PREFIX = "<bos><start_of_turn>user\n"
CHAT_SUFFIX = "<end_of_turn>\n<start_of_turn>model\n-"
END = "<end_of_turn><eos>"
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>", "<start_of_turn>", "<end_of_turn>")


@dataclass(frozen=True)
class ListExample:
    template: str
    topic: str
    items: tuple[str, ...]
    filler_items: tuple[int, ...]  # 0-based indices of items followed by the blank

    @property
    def prompt(self) -> str:
        return CHAT_PREFIX + template_text(self.template, self.topic) + CHAT_SUFFIX

    @property
    def response(self) -> str:
        parts = []
        for i, item in enumerate(self.items):
            blank = " " if i in self.filler_items else ""
            marker = "" if i == len(self.items) - 1 else "-"
            parts.append(f" {item}{blank}\n{marker}")
        return "".join(parts) + END

    @property
    def text(self) -> str:
        return self.prompt + self.response


def make_example(rng: random.Random, template: str, topic: str) -> ListExample:
    lo, hi = ITEM_COUNTS[template]
    n = rng.randint(lo, hi)
    items = tuple(rng.sample(TOPIC_ITEMS[topic], n))
    run = rng.choices(range(len(FILLER_RUN_PROBS)), weights=FILLER_RUN_PROBS)[0]
    run = min(run, n)
    return ListExample(template, topic, items, tuple(range(n - run, n)))


def make_corpus(n_examples: int, seed: int) -> list[ListExample]:
    """``n_examples`` examples, templates and topics balanced, deterministic from ``seed``."""
    rng = random.Random(seed)
    templates = list(TEMPLATES)
    return [
        make_example(rng, templates[i % len(templates)], TOPICS[(i // len(templates)) % len(TOPICS)])
        for i in range(n_examples)
    ]
