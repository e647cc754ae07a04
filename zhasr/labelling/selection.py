"""Which calls people label first, within a budget of audio minutes.

A labelled minute is worth most where the champion is most likely wrong. ``confidence`` ranks calls by
1 - ``call_confidence`` (token log-probabilities, no-speech probability, guard flags), ``disagreement``
by the character disagreement between champion and challenger on the same call, ``random`` draws with
the seed. The ranking is greedy by that value per minute, and a call's value is discounted by how many
calls of its kind (channel count and source rate) were already chosen, so one noisy line does not take
the whole budget.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from zhasr.evaluation.metrics import character_error_rate

Strategy = Literal["confidence", "disagreement", "random"]
STRATEGIES: tuple[Strategy, ...] = ("confidence", "disagreement", "random")


@dataclass(frozen=True)
class Candidate:
    call_id: str
    duration_s: float
    uncertainty: float  # 1 - call confidence, 0-1
    kind: str  # "<channels>ch@<rate>" : calls of one kind share the coverage discount
    disagreement: float | None = None  # champion vs challenger character disagreement, 0-1; None: not decoded twice


def disagreement(champion_text: str, challenger_text: str) -> float:
    """Edits between two transcripts of one call over the longer one's characters (0 = the same text)."""
    longer, shorter = sorted((champion_text, challenger_text), key=len, reverse=True)
    if not longer.strip():
        return 0.0
    return min(1.0, character_error_rate([longer], [shorter]).rate)


def choose(candidates: Sequence[Candidate], strategy: Strategy, budget_s: float, seed: int = 0) -> list[Candidate]:
    """Calls in the order people should label them, as many as fit ``budget_s`` seconds of audio (0 = all).

    A call longer than what is left of the budget is passed over for shorter ones."""
    if strategy not in STRATEGIES:
        raise ValueError(f"label strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if strategy == "disagreement" and any(c.disagreement is None for c in candidates):
        raise ValueError("label strategy disagreement: every call needs the challenger's transcript too")
    pool = list(candidates)
    if strategy == "random":
        random.Random(seed).shuffle(pool)
    value = (lambda c: c.uncertainty) if strategy == "confidence" else (lambda c: c.disagreement or 0.0)
    chosen: list[Candidate] = []
    taken: Counter[str] = Counter()
    left = budget_s if budget_s > 0 else float("inf")
    while pool:
        fitting = [c for c in pool if c.duration_s <= left]
        if not fitting:
            break
        best = fitting[0] if strategy == "random" else max(fitting, key=lambda c: value(c) / (1 + taken[c.kind]) ** 0.5)
        pool.remove(best)
        chosen.append(best)
        taken[best.kind] += 1
        left -= best.duration_s
    return chosen
