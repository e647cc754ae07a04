"""Which calls people label first, within a budget of audio minutes.

A labelled minute is worth most where the champion is most likely wrong. ``confidence`` ranks calls by
1 - ``call_confidence`` (token log-probabilities, no-speech probability, guard flags), ``disagreement``
by the character disagreement between champion and challenger on the same call, ``numbers`` by the
personal data and other long numbers the champion's transcript holds per minute (calls with numbers first,
the least certain first among equals: redaction finds only what the model heard, and a model learns to
hear numbers from labelled calls that say them), ``random`` draws with the seed. The ranking is greedy by
that value, and a call's value is discounted by how many calls of its kind (channel count and source rate)
were already chosen, so one noisy line does not take the whole budget.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

from zhasr.calltext.pii import KINDS, NUMBER, PLACEHOLDERS, find_pii
from zhasr.config import LabelStrategy
from zhasr.evaluation.metrics import character_error_rate

_PLACEHOLDER = re.compile("|".join(map(re.escape, PLACEHOLDERS)))
STRATEGIES: tuple[LabelStrategy, ...] = get_args(LabelStrategy)


@dataclass(frozen=True)
class Candidate:
    call_id: str
    duration_s: float
    uncertainty: float  # 1 - call confidence, 0-1
    kind: str  # "<channels>ch@<rate>" : calls of one kind share the coverage discount
    disagreement: float | None = None  # champion vs challenger character disagreement, 0-1; None: not decoded twice
    numbers: int = 0  # passages of personal data and other long numbers in the champion's transcript (numbers_heard)

    @property
    def numbers_per_minute(self) -> float:
        return self.numbers / max(self.duration_s / 60, 1e-9)


def disagreement(champion_text: str, challenger_text: str) -> float:
    """Edits between two transcripts of one call over the longer one's characters (0 = the same text)."""
    longer, shorter = sorted((champion_text, challenger_text), key=len, reverse=True)
    if not longer.strip():
        return 0.0
    return min(1.0, character_error_rate([longer], [shorter]).rate)


def numbers_heard(text: str) -> int:
    """Passages of personal data (every kind of zhasr.calltext.pii, found or already replaced by a
    placeholder) and other runs of 7+ digits in a transcript, in digits or numerals. A garbled number still
    counts when a naming word (手机号, 身份证, 验证码, ...) stands before it."""
    text, kept = _PLACEHOLDER.subn("。\n", text)  # a stop and a line break: no number or stretch runs across
    return kept + len(find_pii(text, (*KINDS, NUMBER)))


def choose(candidates: Sequence[Candidate], strategy: LabelStrategy, budget_s: float, seed: int = 0) -> list[Candidate]:
    """Calls in the order people should label them, as many as fit ``budget_s`` seconds of audio (0 = all).

    A call longer than what is left of the budget is passed over for shorter ones."""
    if strategy not in STRATEGIES:
        raise ValueError(f"label strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if strategy == "disagreement" and any(c.disagreement is None for c in candidates):
        raise ValueError("label strategy disagreement: every call needs the challenger's transcript too")
    pool = list(candidates)
    if strategy == "random":
        random.Random(seed).shuffle(pool)
    values = {"confidence": lambda c: (c.uncertainty,), "disagreement": lambda c: (c.disagreement or 0.0,),
              "numbers": lambda c: (c.numbers_per_minute, c.uncertainty)}
    chosen: list[Candidate] = []
    taken: Counter[str] = Counter()
    left = budget_s if budget_s > 0 else float("inf")
    while pool:
        fitting = [c for c in pool if c.duration_s <= left]
        if not fitting:
            break
        best = fitting[0] if strategy == "random" else max(
            fitting, key=lambda c: tuple(v / (1 + taken[c.kind]) ** 0.5 for v in values[strategy](c)))
        pool.remove(best)
        chosen.append(best)
        taken[best.kind] += 1
        left -= best.duration_s
    return chosen
