"""A split call's own figures from its segments: who talked how long and how fast, silence, talk-over,
turns and the longest stretch one speaker held the line.

Times are the segments' bounds (the VAD's speech pieces, widened by ``transcribe.speech_pad_ms`` on each
side), so talk time runs a little long and a quick reply can show a fraction of a second of overlap that
was a pause; talk-over of a second or more is real.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from zhasr.transcribe.records import Segment, Transcription


@dataclass(frozen=True)
class SpeakerFigures:
    speaker: str
    talk_s: float  # seconds this speaker is heard (overlapping segments counted once)
    turns: int  # maximal runs of this speaker's segments with no other speaker's in between
    characters: int  # characters of text, spaces and punctuation left out
    chars_per_min: float  # speaking rate: characters per minute of talk
    longest_turn_s: float  # the longest run, from its first segment's start to its last one's end


@dataclass(frozen=True)
class CallFigures:
    duration_s: float
    silence_s: float  # nobody heard
    overlap_s: float  # two or more speakers heard at once (talk-over)
    turns: int  # speaker changes + 1
    speakers: tuple[SpeakerFigures, ...]


def _union(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def _length(intervals: Sequence[tuple[float, float]]) -> float:
    return sum(b - a for a, b in intervals)


def _spoken_chars(text: str) -> int:
    return sum(ch.isalnum() for ch in text)


def _runs(segments: Sequence[Segment]) -> list[list[Segment]]:
    """Segments in order of start, cut where the speaker changes."""
    runs: list[list[Segment]] = []
    for s in sorted(segments, key=lambda s: s.start):
        if runs and runs[-1][-1].speaker == s.speaker:
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs


def call_figures(t: Transcription) -> CallFigures:
    """The figures of ``t`` (meant for split calls: with one track every second is one speaker's)."""
    spoken = [s for s in t.segments if s.text]
    runs = _runs(spoken)
    by_speaker: dict[str, list[Segment]] = {}
    for s in spoken:
        by_speaker.setdefault(s.speaker, []).append(s)
    unions = {who: _union([(s.start, s.end) for s in segs]) for who, segs in by_speaker.items()}
    heard = _length(_union([iv for u in unions.values() for iv in u]))
    speakers = []
    for who, segs in by_speaker.items():
        talk = _length(unions[who])
        chars = sum(_spoken_chars(s.text) for s in segs)
        mine = [r for r in runs if r[0].speaker == who]
        speakers.append(SpeakerFigures(
            speaker=who, talk_s=round(talk, 2), turns=len(mine), characters=chars,
            chars_per_min=round(60 * chars / talk, 1) if talk > 0 else 0.0,
            longest_turn_s=round(max((r[-1].end - r[0].start for r in mine), default=0.0), 2)))
    return CallFigures(duration_s=t.duration_s, silence_s=round(max(0.0, t.duration_s - heard), 2),
                       overlap_s=round(sum(_length(u) for u in unions.values()) - heard, 2), turns=len(runs),
                       speakers=tuple(sorted(speakers, key=lambda f: f.speaker)))
