"""How sure the decoder was of a transcript, from what it reports: token log-probabilities, the no-speech
probability and the guard's flags."""

from __future__ import annotations

import math

from zhasr.transcribe.records import Segment, Transcription


def segment_confidence(segment: Segment) -> float:
    """P(the segment's text is right), as the decoder saw it: exp(mean token log-probability) times
    P(speech); 0 for a flagged or failed segment, 0.5 where the runtime gives no log-probabilities."""
    if segment.flags or segment.error:
        return 0.0
    p = math.exp(segment.avg_logprob) if segment.avg_logprob is not None else 0.5
    return p * (1.0 - (segment.no_speech_prob or 0.0))


def call_confidence(result: Transcription) -> float:
    """Speech-time-weighted mean of ``segment_confidence`` (1.0 for a call with no segment)."""
    weights = [max(s.end - s.start, 1e-3) for s in result.segments]
    if not weights:
        return 1.0
    return sum(w * segment_confidence(s) for w, s in zip(weights, result.segments)) / sum(weights)
