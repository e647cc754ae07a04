"""One clip of an evaluated set as both systems read it, and the paired statistics over such clips: the
candidate's CER gain over the champion (or another system) and its loop rate's rise, each with its paired
bootstrap interval, a speaker's clips resampled together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from zhasr.data.manifest import atomic_write_jsonl, read_jsonl
from zhasr.evaluation.bootstrap import GainInterval, paired_bootstrap_gain


@dataclass(frozen=True)
class ClipScore:
    """One clip of a scored set: a record of ``score_set``, a line of
    ``reports/evaluate_<set>_utterances.jsonl`` and a row of the run's review table, the fields in its
    reading order (what was said, what each system heard, the clip's slices, then the rest). CERs are
    fractions; errors are character edits; ``*_cer``, ``*_errors`` and ``reference_chars`` are scored with
    numbers in one written form, ``*_cer_raw`` as written."""
    id: str
    reference: str  # the row's text_norm
    candidate: str  # the candidate's text
    candidate_cer: float
    champion: str
    champion_cer: float
    batch: str  # the slices of zhasr.evaluation.slices.slice_labels
    band: str
    noise: str
    speaker: str  # a speaker's clips are resampled together
    sentence: str
    duration_s: float
    reference_chars: int
    candidate_errors: int
    candidate_cer_raw: float
    candidate_looped: bool  # the first decoding hit the token cap or repeated itself
    candidate_hallucinated: bool
    champion_errors: int
    champion_cer_raw: float
    champion_looped: bool
    champion_hallucinated: bool


def write_clip_scores(path: Path, clips: Sequence[ClipScore]) -> None:
    """An utterances file: a line a clip, as ``read_clip_scores`` reads it."""
    atomic_write_jsonl(path, [asdict(c) for c in clips])


def read_clip_scores(path: Path) -> list[ClipScore]:
    """The clips of an utterances file; LookupError naming the file, the line and the key a line lacks."""
    names = [f.name for f in fields(ClipScore)]
    clips = []
    for line, record in enumerate(read_jsonl(path), 1):
        missing = [name for name in names if name not in record]
        if missing:
            raise LookupError(f"{path} line {line}: no {missing[0]!r}; written by an earlier zhasr? "
                              "run `zhasr evaluate` again")
        clips.append(ClipScore(**{name: record[name] for name in names}))
    return clips


def candidate_gain(clips: Sequence[ClipScore], other_errors: Sequence[int] | None = None, samples: int = 1000,
                   confidence: float = 0.95, seed: int = 0) -> GainInterval:
    """The candidate's CER gain over the champion (or over another system with ``other_errors``, one per
    clip) on ``clips``, with its paired bootstrap interval, a speaker's clips resampled together."""
    other = [c.champion_errors for c in clips] if other_errors is None else other_errors
    return paired_bootstrap_gain([c.candidate_errors for c in clips], other, [c.reference_chars for c in clips],
                                 samples, confidence, seed, [c.speaker for c in clips])


def loop_rise(clips: Sequence[ClipScore], samples: int = 1000, confidence: float = 0.95, seed: int = 0
              ) -> tuple[float, float, float]:
    """(rise, low, high): the candidate's loop rate minus the champion's (shares of clips; positive = the
    candidate loops more) and its paired bootstrap interval, a speaker's clips resampled together."""
    return paired_bootstrap_gain([int(c.candidate_looped) for c in clips], [int(c.champion_looped) for c in clips],
                                 [1] * len(clips), samples, confidence, seed, [c.speaker for c in clips]).as_loss()
