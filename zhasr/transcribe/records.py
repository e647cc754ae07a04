"""Result records of the engine (all times in seconds from the start of the original file)."""

from __future__ import annotations

from dataclasses import dataclass, field

# Flags a segment can carry; a flagged segment is kept, so nothing is dropped without a word.
LOOPED = "looped"  # the first decoding looped or hit the token cap
RETRIED = "retried"  # decoded a second time with repeated n-grams banned
COLLAPSED = "collapsed"  # a loop was still there and was cut to one copy
HIT_TOKEN_CAP = "hit_token_cap"  # the kept decoding stopped at the cap: text may be cut short
FAILED = "failed"  # the runtime raised on this piece; text is empty, the error is in ``error``


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float | None = None


@dataclass(frozen=True)
class Segment:
    id: int
    start: float  # seconds in the original file
    end: float
    text: str  # simplified Chinese
    channel: int  # 0 = left (or the mix), 1 = right
    speaker: str  # the channel's role in split mode ("agent", "customer"), "" when mixed
    avg_logprob: float | None  # mean log-probability of the text tokens (None where the runtime gives none)
    no_speech_prob: float | None  # P(<|nospeech|>) at the start of the piece
    compression_ratio: float  # UTF-8 bytes / zlib bytes of the text
    flags: tuple[str, ...] = ()
    error: str | None = None  # why a FAILED piece failed
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Removed:
    """A speech piece the guard removed, with the reason: reported, never silently dropped."""

    start: float
    end: float
    channel: int
    reason: str  # "no_speech" | "hallucination" | "empty" | "prompt_echo"
    text: str  # what the runtime said


@dataclass(frozen=True)
class Redaction:
    """Personal data taken out of a segment's text: where it was, never what it was."""

    kind: str  # phone | id_card | bank_card | code | email (zhasr.calltext.pii.KINDS)
    segment: int  # the segment's id
    start: int  # characters in the segment's (final) text, end exclusive: the placeholder's span
    end: int
    text_start: int  # the same span in the Transcription's text
    text_end: int
    audio_start: float  # seconds in the original file, from word times (or the segment's bounds)
    audio_end: float
    channel: int


@dataclass(frozen=True)
class Timings:
    decode_audio_s: float = 0.0
    vad_s: float = 0.0
    inference_s: float = 0.0
    total_s: float = 0.0
    windows: int = 0  # 30-s encoder windows its speech was packed into
    unplaced: int = 0  # of those, windows with pieces decoded again alone (text not placed, or not clean)


@dataclass(frozen=True)
class Transcription:
    text: str  # segment texts in timeline order
    segments: tuple[Segment, ...]
    duration_s: float
    language: str
    model: str  # identity of the model or export (name, version or folder)
    runtime: str  # transformers | ct2 | ggml
    channels: str  # mix | split
    removed: tuple[Removed, ...] = ()
    warnings: tuple[str, ...] = ()
    timings: Timings = field(default_factory=Timings)
    redactions: tuple[Redaction, ...] = ()  # set by zhasr.transcribe.redaction when redaction was asked

    @property
    def flagged(self) -> list[Segment]:
        return [s for s in self.segments if s.flags]

    # Per-input summaries of the flags, read by evaluation like a single clip's decoding.
    @property
    def looped(self) -> bool:
        return any(LOOPED in s.flags for s in self.segments)

    @property
    def retried(self) -> bool:
        return any(RETRIED in s.flags for s in self.segments)

    @property
    def hit_cap(self) -> bool:
        return any(HIT_TOKEN_CAP in s.flags for s in self.segments)

    @classmethod
    def from_dict(cls, data: dict) -> Transcription:
        """The inverse of ``dataclasses.asdict`` (after a JSON round trip: lists for tuples)."""
        segments = tuple(Segment(**{**s, "flags": tuple(s["flags"]), "words": tuple(Word(**w) for w in s["words"])})
                         for s in data["segments"])
        return cls(**{**data, "segments": segments, "removed": tuple(Removed(**r) for r in data["removed"]),
                      "warnings": tuple(data["warnings"]), "timings": Timings(**data["timings"]),
                      "redactions": tuple(Redaction(**r) for r in data.get("redactions", ()))})
