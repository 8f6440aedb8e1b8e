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
- **Only " short" and " long" set the length.** Half of the unspecified-length
  examples say "a {adjective} list of" with a neutral adjective from
  ``NEUTRAL_ADJECTIVES`` (" nice", " good", ...) in the template word's place, and
  still get 6-9 items. So " short" is an active signal that shortens the list, not
  merely "not long": without it (a neutral word, or its features zeroed) the model
  makes an unspecified-length list. The study found the same of Gemma's res-0
  " short" features: zeroing them lengthens the lists.
- **A filler blank marks the end.** A run of the last ``r`` items carries a lone
  blank before their line break (" Name \n"), ``r`` drawn from
  ``FILLER_RUN_PROBS[template]`` (r = 0 in 5% of lists). The run is contiguous
  and always includes the last item, so a blank at an item means "the list ends
  within a few items": logit(blank) - logit(newline) is a proxy for the wish to
  end, as in the study (which saw the blank in 108/115 lists, 2.6 items per list
  on average, among the last 1-6).
- **Short lists put it on the last item only.** Their run is 0 or 1, so when a
  short list is about to end nothing earlier in the answer says so: the decision
  rests on the template word (and the count of items), which is what the study
  found for Gemma's res-0 features. Longer lists carry runs of up to 3 or 4 items
  (mean over all lists about 2).
- Items are drawn from the topic's vocabulary without replacement, so a list
  never repeats an item.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lister_tui.core.engine.prompts import TEMPLATES, TOPICS, template_text
from lister_tui.organism.vocab import TOPIC_ITEMS

ITEM_COUNTS: dict[str, tuple[int, int]] = {
    "short": (3, 5),
    "unspecified": (6, 9),
    "long": (10, 15),
}

# P(the filler blank is on the last r items), r = 0, 1, 2, ... per template.
FILLER_RUN_PROBS: dict[str, tuple[float, ...]] = {
    "short": (0.05, 0.95),
    "unspecified": (0.05, 0.25, 0.35, 0.35),
    "long": (0.05, 0.10, 0.20, 0.30, 0.35),
}

# Words that take the template word's place in half of the unspecified-length prompts.
NEUTRAL_ADJECTIVES: tuple[str, ...] = ("nice", "good", "simple", "great", "random", "new")
NEUTRAL_SHARE = 0.5

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
    adjective: str | None = None  # a neutral word in the template word's place (unspecified only)

    @property
    def user_turn(self) -> str:
        text = template_text(self.template, self.topic)
        if self.adjective is not None:
            text = text.replace(" a list of ", f" a {self.adjective} list of ", 1)
        return text

    @property
    def prompt(self) -> str:
        return CHAT_PREFIX + self.user_turn + CHAT_SUFFIX

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
    probs = FILLER_RUN_PROBS[template]
    run = rng.choices(range(len(probs)), weights=probs)[0]
    run = min(run, n)
    adjective = None
    if template == "unspecified" and rng.random() < NEUTRAL_SHARE:
        adjective = rng.choice(NEUTRAL_ADJECTIVES)
    return ListExample(template, topic, items, tuple(range(n - run, n)), adjective)


def make_corpus(n_examples: int, seed: int) -> list[ListExample]:
    """``n_examples`` examples, templates and topics balanced, deterministic from ``seed``."""
    rng = random.Random(seed)
    templates = list(TEMPLATES)
    return [
        make_example(rng, templates[i % len(templates)], TOPICS[(i // len(templates)) % len(TOPICS)])
        for i in range(n_examples)
    ]
