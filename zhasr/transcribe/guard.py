"""The rules every runtime's output passes through, the same for transformers, CTranslate2 and whisper.cpp.

Inside the runtimes (``zhasr.model.decode`` holds the rules): new tokens capped by the piece's duration; an
output that hit the cap, compresses too well or repeats a unit is decoded again with repeated n-grams
banned (whisper.cpp: its own temperature fallback); what still loops is collapsed to one copy.
Here, after decoding: a piece is non-speech when P(no speech) > ``no_speech_threshold`` and its mean
log-probability < ``logprob_threshold`` (Whisper's rule); text that is only Whisper's known
hallucination lines is removed; the text is simplified Chinese.
"""

from __future__ import annotations

from zhasr.config import TranscribeParams
from zhasr.data.text import normalize, to_simplified
from zhasr.model.decode import Transcript, collapse_loops, compression_ratio
from zhasr.transcribe import records

# A hallucination line this long (normalized) is cut out of a longer text too; shorter ones
# ("谢谢观看") only when they are all a piece says.
_CUT_INSIDE_CHARS = 8


def strip_hallucinations(text: str, lines: list[str]) -> str:
    """``text`` without the known lines; "" when nothing else was said. Compared after normalization."""
    normalized = normalize(text)
    if not normalized:
        return ""
    rest = normalized
    for line in sorted({normalize(x) for x in lines if normalize(x)}, key=len, reverse=True):
        rest = rest.replace(line, "")
    if not rest.strip():
        return ""
    for line in lines:
        if len(normalize(line)) >= _CUT_INSIDE_CHARS and line in text:
            text = text.replace(line, "")
    return text.strip()


def is_no_speech(t: Transcript, params: TranscribeParams) -> bool:
    if t.no_speech_prob is None or t.no_speech_prob <= params.no_speech_threshold:
        return False
    return t.avg_logprob is None or t.avg_logprob < params.logprob_threshold


def judge(t: Transcript, params: TranscribeParams) -> tuple[str, tuple[str, ...], str | None]:
    """(final text, flags, reason for removal or None) of one decoded piece."""
    if t.error:
        return "", (records.FAILED,), None
    # a decoding cut at the token cap can end inside a character: its stray bytes decode to U+FFFD
    text, collapsed = collapse_loops(to_simplified(t.text).replace("\ufffd", "").strip())
    flags = tuple(f for f, on in ((records.LOOPED, t.looped), (records.RETRIED, t.retried),
                                  (records.COLLAPSED, collapsed or t.collapsed), (records.HIT_TOKEN_CAP, t.hit_cap)) if on)
    if is_no_speech(t, params):
        return text, flags, "no_speech"
    kept = strip_hallucinations(text, params.hallucinations)
    if not kept:
        return text, flags, "hallucination" if normalize(text) else "empty"
    return kept, flags, None


def ratio(text: str) -> float:
    return round(compression_ratio(text), 3)
