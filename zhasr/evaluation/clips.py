"""One clip of an evaluated set as the paired statistics read it, and those statistics: the candidate's
CER gain over the champion (or another system) and its loop rate's rise, each with its paired bootstrap
interval, a speaker's clips resampled together."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from zhasr.evaluation.bootstrap import GainInterval, paired_bootstrap_gain


@dataclass(frozen=True)
class ClipErrors:
    """One clip of a scored set as the paired bootstraps read it: a record of ``score_set``, or a line of
    ``reports/evaluate_<set>_utterances.jsonl``."""
    id: str
    speaker: str  # a speaker's clips are resampled together
    reference_chars: int  # characters of the reference, numbers normalized
    candidate_errors: int  # character edits, numbers normalized
    champion_errors: int
    candidate_looped: bool  # the first decoding hit the token cap or repeated itself
    champion_looped: bool


def clip_errors(records: Iterable[Mapping[str, Any]], source: str = "records") -> list[ClipErrors]:
    """The clips of per-clip records (``score_set``'s, or the lines of an utterances file named by
    ``source``); LookupError naming the line and the key a record lacks."""
    names = [f.name for f in fields(ClipErrors)]
    clips = []
    for line, record in enumerate(records, 1):
        missing = [name for name in names if name not in record]
        if missing:
            raise LookupError(f"{source} line {line}: no {missing[0]!r}; written by an earlier zhasr? "
                              "run `zhasr evaluate` again")
        clips.append(ClipErrors(*(record[name] for name in names)))
    return clips


def candidate_gain(clips: Sequence[ClipErrors], other_errors: Sequence[int] | None = None, samples: int = 1000,
                   confidence: float = 0.95, seed: int = 0) -> GainInterval:
    """The candidate's CER gain over the champion (or over another system with ``other_errors``, one per
    clip) on ``clips``, with its paired bootstrap interval, a speaker's clips resampled together."""
    other = [c.champion_errors for c in clips] if other_errors is None else other_errors
    return paired_bootstrap_gain([c.candidate_errors for c in clips], other, [c.reference_chars for c in clips],
                                 samples, confidence, seed, [c.speaker for c in clips])


def loop_rise(clips: Sequence[ClipErrors], samples: int = 1000, confidence: float = 0.95, seed: int = 0
              ) -> tuple[float, float, float]:
    """(rise, low, high): the candidate's loop rate minus the champion's (shares of clips; positive = the
    candidate loops more) and its paired bootstrap interval, a speaker's clips resampled together."""
    return paired_bootstrap_gain([int(c.candidate_looped) for c in clips], [int(c.champion_looped) for c in clips],
                                 [1] * len(clips), samples, confidence, seed, [c.speaker for c in clips]).as_loss()
