"""The rules every runtime's output passes through, the same for transformers, CTranslate2 and whisper.cpp.

Inside the runtimes (``zhasr.model.decode`` holds the rules): new tokens capped by the piece's duration; an
output that hit the cap, compresses too well or repeats a unit is decoded again with repeated n-grams
banned (whisper.cpp: its own temperature fallback); what still loops is collapsed to one copy.
Here, after decoding: a piece is non-speech when P(no speech) > ``no_speech_threshold`` and its mean
log-probability < ``logprob_threshold`` (Whisper's rule); text that is only Whisper's known
hallucination lines is removed, and so is text that reproduces the decoder's prompt (prompt echo,
Whisper's answer to silence or noise when it was given a prompt); the text is simplified Chinese.
"""

from __future__ import annotations

from zhasr.config import TranscribeParams
from zhasr.data.text import normalize, to_simplified
from zhasr.model.decode import Transcript, collapse_loops, compression_ratio
from zhasr.transcribe.records import COLLAPSED, FAILED, HIT_TOKEN_CAP, LOOPED, RETRIED

# A hallucination line this long (normalized) is cut out of a longer text too; shorter ones
# ("谢谢观看") only when they are all a piece says.
_CUT_INSIDE_CHARS = 8
# Prompt echo: a stretch of the prompt at least this long said back verbatim, or at least this many of
# its terms making up this share of the text ("客服 验证码 手机号 账户 优惠券" for a hotword list).
_ECHO_CHARS, _ECHO_TERMS, _ECHO_COVER = 8, 3, 0.7


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


def is_prompt_echo(text: str, prompt: str | None) -> bool:
    """``text`` reproduces ``prompt``: a verbatim stretch of at least ``_ECHO_CHARS`` characters of it, or at
    least ``_ECHO_TERMS`` of its space-separated terms covering ``_ECHO_COVER`` of the text (normalized)."""
    said = normalize(text)
    if not prompt or not said:
        return False
    if len(said) >= _ECHO_CHARS and said in normalize(prompt):
        return True
    covered = [False] * len(said)
    found = 0
    for term in {normalize(t) for t in prompt.split()}:
        if len(term) < 2 or term not in said:
            continue
        found += 1
        for start in range(len(said) - len(term) + 1):
            if said.startswith(term, start):
                covered[start : start + len(term)] = [True] * len(term)
    return found >= _ECHO_TERMS and sum(covered) >= _ECHO_COVER * len(said)


def is_no_speech(t: Transcript, params: TranscribeParams) -> bool:
    if t.no_speech_prob is None or t.no_speech_prob <= params.no_speech_threshold:
        return False
    return t.avg_logprob is None or t.avg_logprob < params.logprob_threshold


def judge(t: Transcript, params: TranscribeParams, prompt: str | None = None) -> tuple[str, tuple[str, ...], str | None]:
    """(final text, flags, reason for removal or None) of one piece decoded with ``prompt``."""
    if t.error:
        return "", (FAILED,), None
    # a decoding cut at the token cap can end inside a character: its stray bytes decode to U+FFFD
    text, collapsed = collapse_loops(to_simplified(t.text).replace("\ufffd", "").strip())
    flags = tuple(f for f, on in ((LOOPED, t.looped), (RETRIED, t.retried), (COLLAPSED, collapsed or t.collapsed),
                                  (HIT_TOKEN_CAP, t.hit_cap)) if on)
    if is_no_speech(t, params):
        return text, flags, "no_speech"
    kept = strip_hallucinations(text, params.hallucinations)
    if not kept:
        return text, flags, "hallucination" if normalize(text) else "empty"
    if is_prompt_echo(kept, prompt):
        return text, flags, "prompt_echo"
    return kept, flags, None


def ratio(text: str) -> float:
    return round(compression_ratio(text), 3)
