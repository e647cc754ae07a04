"""How well a transcript's segments find the turns of a call (bounds within a tolerance, the right speaker),
and a call's transcript cut back into its turns."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from zhasr.data.synth.call import SentenceCall, Turn
from zhasr.transcribe.engine import Transcriber
from zhasr.transcribe.records import Segment, Transcription


class Timed(Protocol):
    start: float  # seconds in the call
    end: float
    speaker: str


@dataclass(frozen=True)
class TurnMatch:
    turns: int
    close: int  # turns whose best-overlapping segment starts and ends within the tolerance of the turn
    right_speaker: int  # turns whose best-overlapping segment has the turn's speaker
    missing: int  # turns no segment overlaps


def match_turns(segments: Sequence[Timed], turns: Sequence[Timed], tolerance_s: float = 0.5) -> TurnMatch:
    """Each turn against the segment that overlaps it most."""
    close = right = missing = 0
    for turn in turns:
        overlap, best = max(((min(s.end, turn.end) - max(s.start, turn.start), s) for s in segments),
                            key=lambda x: x[0], default=(0.0, None))
        if overlap <= 0:
            missing += 1
            continue
        close += abs(best.start - turn.start) <= tolerance_s and abs(best.end - turn.end) <= tolerance_s
        right += best.speaker == turn.speaker
    return TurnMatch(len(turns), close, right, missing)


def per_turn(t: Transcription, turns: Sequence[Turn]) -> list[Transcription]:
    """``t`` (a split call's transcription) as one Transcription per turn of the call: each segment goes to the
    turn of its channel it overlaps most, or, overlapping none, the nearest (a stray piece's text counts against
    a turn rather than vanishing); removed pieces are left out. Times stay the call's."""
    owned: list[list[Segment]] = [[] for _ in turns]
    for s in t.segments:
        k = max(range(len(turns)), key=lambda k: (turns[k].channel == s.channel,
                                                  min(s.end, turns[k].end) - max(s.start, turns[k].start)))
        owned[k].append(s)
    return [dataclasses.replace(t, text=" ".join(s.text for s in segments if s.text), segments=tuple(segments),
                                removed=(), redactions=()) for segments in owned]


def transcribe_sentence_calls(transcriber: Transcriber, calls: Sequence[SentenceCall], *, words: bool = False,
                              progress: Callable[[float, float], None] | None = None) -> list[Transcription]:
    """The sentences ``calls`` were built of (``sentence_calls``: each in one call), each as its turn of a call
    transcribed as the service transcribes a call (split by channel: a channel's turns share windows), in the
    sentences' order."""
    decoded = transcriber.transcribe_many([c.wav for c in calls], channels="split", words=words, progress=progress)
    of_sentence = {i: turn for call, t in zip(calls, decoded) for i, turn in zip(call.sentences, per_turn(t, call.turns))}
    return [of_sentence[i] for i in range(len(of_sentence))]
