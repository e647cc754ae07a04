"""A transcription made fit to keep: personal data replaced by its kind, numbers written as digits, and
the call's audio with the redacted stretches muted.

Spans are looked for across consecutive segments of one channel (a number said with pauses may be cut
into two pieces), in the text as decoded, where every written form of a number is still there; digits
are written (``itn``) only afterwards, in the text between the spans. A span's audio time comes from
the segment's word times when they spell its text, else from its share of the segment's characters.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Sequence

import numpy as np
import soundfile as sf
import soxr

from zhasr.calltext.itn import numbers_to_digits
from zhasr.calltext.pii import Found, find_pii, placeholder, redact
from zhasr.transcribe.engine import AudioSource, Transcriber
from zhasr.transcribe.media import TARGET_RATE, CallAudio
from zhasr.transcribe.records import Redaction, Segment, Transcription, Word

JOIN_GAP_S = 3.0  # segments of one channel at most this far apart are searched as one text
MUTE_PAD_S = 0.25  # s muted beyond each span's audio bounds (word times are approximate)
HEARD_PAD_S = 0.25  # s beyond a span heard by another decoding that its characters are taken from


def finish_text(t: Transcription, kinds: Sequence[str] = (), itn: bool = False,
                heard: Transcription | None = None) -> Transcription:
    """``t`` with personal data of ``kinds`` replaced by placeholders (recorded in ``redactions``) and,
    with ``itn``, numbers as digits; segments, words and removed pieces' texts alike. Without either,
    ``t`` itself. ``heard``: the same audio decoded by a model trained to hear numbers; what is found in
    its text is taken out of ``t``'s too, by time (``_spans_heard``), with what ``t``'s own text shows."""
    if not kinds and not itn:
        return t
    spans = _spans(t.segments, kinds) if kinds else {}
    if kinds and heard is not None:
        spans = _union(spans, _spans_heard(t.segments, finish_text(heard, kinds).redactions))
    segments, redactions, offset = [], [], 0
    for s in t.segments:
        segment, placed = _rewrite(s, spans.get(s.id, []), itn)
        segments.append(segment)
        redactions += [dataclasses.replace(r, text_start=r.start + offset, text_end=r.end + offset) for r in placed]
        if segment.text:
            offset += len(segment.text) + 1  # the Transcription's text joins segments with a space
    removed = tuple(dataclasses.replace(r, text=redact(r.text, kinds)[0] if kinds else r.text) for r in t.removed)
    return dataclasses.replace(t, text=" ".join(s.text for s in segments if s.text), segments=tuple(segments),
                               removed=removed, redactions=tuple(redactions))


def transcribe_finished(transcriber: Transcriber, audio: AudioSource, kinds: Sequence[str] = (), itn: bool = False,
                        detector: Transcriber | None = None, *, channels: str | None = None, name: str | None = None,
                        words: bool = False, progress: Callable[[float, float], None] | None = None) -> Transcription:
    """``audio`` transcribed (word times where ``kinds`` are redacted: they place the spans in the audio) and
    finished by ``finish_text``; with ``detector`` and ``kinds``, also decoded by that number-trained model,
    whose spans are taken out of the transcript by time."""
    result = transcriber.transcribe(audio, channels=channels, name=name, words=words or bool(kinds), progress=progress)
    heard = (detector.transcribe(audio, channels=channels, name=name, words=True)
             if kinds and detector is not None else None)
    return finish_text(result, kinds, itn, heard=heard)


def _spans(segments: Sequence[Segment], kinds: Sequence[str]) -> dict[int, list[Found]]:
    """``{segment id: spans in its text}``; a span over several segments is cut at their bounds."""
    out: dict[int, list[Found]] = {}
    for group in _groups(segments):
        starts, text = [], ""
        for s in group:
            starts.append(len(text))
            text += s.text + " "
        for found in find_pii(text, kinds):
            for s, start in zip(group, starts):
                a, b = max(found.start, start), min(found.end, start + len(s.text))
                if a < b:
                    out.setdefault(s.id, []).append(Found(found.kind, a - start, b - start))
    return out


def _spans_heard(segments: Sequence[Segment], heard: Sequence[Redaction],
                 pad_s: float = HEARD_PAD_S) -> dict[int, list[Found]]:
    """``{segment id: spans}`` of the characters whose audio (word times, else their share of the
    segment) falls within a redaction of another decoding of the same audio, widened by ``pad_s``, on the
    segment's channel."""
    out: dict[int, list[Found]] = {}
    for s in segments:
        bounds = _char_bounds(s)
        for r in heard:
            if r.channel != s.channel or r.audio_end + pad_s <= s.start or s.end <= r.audio_start - pad_s:
                continue
            inside = [i for i, (a, b) in enumerate(bounds) if a < r.audio_end + pad_s and r.audio_start - pad_s < b]
            if inside:
                out.setdefault(s.id, []).append(Found(r.kind, inside[0], inside[-1] + 1))
    return out


def _word_of_chars(s: Segment) -> list[int] | None:
    """The index in ``s.words`` of each character of the segment's text, where the words spell the text
    but for its spaces ("13 88 4", aligned as "13884"; a space belongs to the word before it); else None."""
    spelled = [(j, ch) for j, w in enumerate(s.words) for ch in w.word]
    out, k = [], 0
    for ch in s.text:
        if k < len(spelled) and spelled[k][1] == ch:
            out.append(spelled[k][0])
            k += 1
        elif ch.isspace() and out:
            out.append(out[-1])
        else:
            return None
    return out if spelled and k == len(spelled) else None


def _char_bounds(s: Segment) -> list[tuple[float, float]]:
    """(start, end) seconds of each character of the segment's text: its word's (``_word_of_chars``), else
    an equal share of the segment."""
    words = _word_of_chars(s)
    if words is not None:
        return [(s.words[j].start, s.words[j].end) for j in words]
    share = (s.end - s.start) / max(1, len(s.text))
    return [(s.start + i * share, s.start + (i + 1) * share) for i in range(len(s.text))]


def _union(first: dict[int, list[Found]], second: dict[int, list[Found]]) -> dict[int, list[Found]]:
    """Each segment's spans of both, in text order; overlapping spans become one, of the kind of the one
    that starts first."""
    out: dict[int, list[Found]] = {}
    for segment in first.keys() | second.keys():
        merged: list[Found] = []
        for f in sorted(first.get(segment, []) + second.get(segment, []), key=lambda f: f.start):
            if merged and f.start < merged[-1].end:
                merged[-1] = Found(merged[-1].kind, merged[-1].start, max(merged[-1].end, f.end))
            else:
                merged.append(f)
        out[segment] = merged
    return out


def _groups(segments: Sequence[Segment]) -> list[list[Segment]]:
    """Runs of consecutive segments of one channel, each at most JOIN_GAP_S after the one before."""
    last: dict[int, list[Segment]] = {}
    groups: list[list[Segment]] = []
    for s in sorted(segments, key=lambda s: (s.channel, s.start)):
        group = last.get(s.channel)
        if group and s.start - group[-1].end <= JOIN_GAP_S:
            group.append(s)
        else:
            last[s.channel] = [s]
            groups.append(last[s.channel])
    return groups


def _rewrite(s: Segment, spans: list[Found], itn: bool) -> tuple[Segment, list[Redaction]]:
    """The segment's new text and words, and its redactions (text offsets within the segment)."""
    plain = numbers_to_digits if itn else (lambda x: x)
    text, at, placed = "", 0, []
    for f in spans:
        text += plain(s.text[at:f.start])
        mark = placeholder(f.kind)
        audio_start, audio_end = _audio_bounds(s, f.start, f.end)
        placed.append(Redaction(f.kind, s.id, len(text), len(text) + len(mark), 0, 0, audio_start, audio_end,
                                s.channel))
        text += mark
        at = f.end
    text += plain(s.text[at:])
    return dataclasses.replace(s, text=text, words=_words(s, spans)), placed


def _audio_bounds(s: Segment, start: int, end: int) -> tuple[float, float]:
    """Seconds of characters ``start:end`` of the segment's text."""
    bounds = _char_bounds(s)[start:end]
    return (round(bounds[0][0], 3), round(bounds[-1][1], 3)) if bounds else (s.start, s.start)


def _words(s: Segment, spans: list[Found]) -> tuple[Word, ...]:
    """Words outside the spans as they were; the words of each span become one word, its placeholder. No
    words where they do not spell the text (``_word_of_chars``): they could not be placed."""
    if not spans or not s.words:
        return s.words
    words = _word_of_chars(s)
    if words is None:
        return ()
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, j in enumerate(words):
        first.setdefault(j, i)
        last[j] = i + 1
    out: list[Word] = []
    taken = None  # the span the word before fell in
    for j, w in enumerate(s.words):
        k = next((k for k, f in enumerate(spans) if j in first and f.start < last[j] and first[j] < f.end), None)
        if k is None:
            out.append(w)
        elif k == taken:  # another word of the same span
            out[-1] = dataclasses.replace(out[-1], end=w.end)
        else:
            out.append(Word(w.start, w.end, placeholder(spans[k].kind)))
        taken = k
    return tuple(out)


def mute(samples: np.ndarray, rate: int, redactions: Sequence[Redaction], pad_s: float = MUTE_PAD_S) -> np.ndarray:
    """A copy of ``samples`` (channels, n) at ``rate`` Hz with every redaction's audio range, widened by
    ``pad_s``, silent on every channel (a number said on one line is often heard on the other)."""
    out = samples.copy()
    for r in redactions:
        a = max(0, int((r.audio_start - pad_s) * rate))
        b = min(out.shape[-1], int(np.ceil((r.audio_end + pad_s) * rate)))
        out[..., a:b] = 0.0
    return out


def muted_rate(call: CallAudio) -> int:
    """Hz of the muted audio: the call's own rate up to the 16 kHz it was decoded at (8 kHz stays 8 kHz)."""
    return min(call.source_rate, TARGET_RATE)


def muted_wav(call: CallAudio, redactions: Sequence[Redaction]) -> bytes:
    """The call at ``muted_rate``, every channel, with the redactions muted (``mute``), as a PCM-16 WAV."""
    samples, rate = call.samples, muted_rate(call)
    if rate != TARGET_RATE:  # muted after resampling, so the muted ranges are exact zeros
        samples = soxr.resample(samples.T, TARGET_RATE, rate, quality="HQ").T
    buffer = io.BytesIO()
    sf.write(buffer, mute(samples, rate, redactions).T, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
