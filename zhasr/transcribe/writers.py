"""Output formats of a Transcription: text, json, verbose_json, diarized_json (OpenAI's audio API shapes),
srt, vtt."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from zhasr.transcribe.figures import call_figures
from zhasr.transcribe.records import Redaction, Removed, Segment, Transcription

FORMATS = ("text", "json", "verbose_json", "diarized_json", "srt", "vtt")
EXTENSIONS = {"text": "txt", "json": "json", "verbose_json": "json", "diarized_json": "json", "srt": "srt",
              "vtt": "vtt"}  # of a transcript written to a file
MEDIA_TYPES = {"text": "text/plain", "json": "application/json", "verbose_json": "application/json",
               "diarized_json": "application/json", "srt": "application/x-subrip", "vtt": "text/vtt"}
LANGUAGE_NAMES = {"zh": "chinese", "yue": "cantonese", "en": "english"}  # OpenAI reports the language by name


def _clock(seconds: float, decimal: str) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def verbose(t: Transcription, words: bool = False) -> dict[str, Any]:
    """OpenAI's ``verbose_json`` plus the engine's fields (speaker, channel, flags, removed pieces), the
    redactions when personal data was taken out, and a split call's figures under ``call``."""
    body: dict[str, Any] = {
        "task": "transcribe", "language": LANGUAGE_NAMES.get(t.language, t.language), "duration": t.duration_s,
        "text": t.text,
        "segments": [{"id": s.id, "seek": 0, "start": s.start, "end": s.end, "text": s.text, "tokens": [],
                      "temperature": 0.0, "avg_logprob": s.avg_logprob, "compression_ratio": s.compression_ratio,
                      "no_speech_prob": s.no_speech_prob, "speaker": s.speaker, "channel": s.channel,
                      "flags": list(s.flags), **({"error": s.error} if s.error else {})}
                     for s in t.segments],
        "model": t.model, "runtime": t.runtime, "channels": t.channels,
        "removed": [asdict(r) for r in t.removed], "warnings": list(t.warnings), "timings": asdict(t.timings),
    }
    if words:
        body["words"] = [asdict(w) for s in t.segments for w in s.words]
    if t.redactions:
        body["redactions"] = [asdict(r) for r in t.redactions]
    if t.channels == "split":
        body["call"] = asdict(call_figures(t))
    return body


def diarized(t: Transcription) -> dict[str, Any]:
    """OpenAI's ``diarized_json``: speaker-labelled segments (a split call's channel roles)."""
    return {"task": "transcribe", "duration": t.duration_s, "text": t.text,
            "segments": [{"type": "transcript.text.segment", "id": f"seg_{s.id}", "start": s.start, "end": s.end,
                          "speaker": s.speaker or "A", "text": s.text} for s in t.segments if s.text],
            "usage": {"type": "duration", "seconds": round(t.duration_s, 3)}}


def from_verbose(body: dict[str, Any]) -> Transcription:
    """The Transcription a ``verbose_json`` body (of ``verbose``) was written from: segments, removed pieces
    and warnings (words and timings are not kept)."""
    language = next((code for code, name in LANGUAGE_NAMES.items() if name == body["language"]), body["language"])
    segments = tuple(Segment(s["id"], s["start"], s["end"], s["text"], s["channel"], s["speaker"], s["avg_logprob"],
                             s["no_speech_prob"], s["compression_ratio"], tuple(s["flags"]), s.get("error"))
                     for s in body["segments"])
    return Transcription(body["text"], segments, body["duration"], language, body["model"], body["runtime"],
                         body["channels"], tuple(Removed(**r) for r in body.get("removed", [])),
                         tuple(body.get("warnings", [])),
                         redactions=tuple(Redaction(**r) for r in body.get("redactions", [])))


def _label(speaker: str, text: str) -> str:
    return f"[{speaker}] {text}" if speaker else text


def _cue_text(text: str) -> str:
    """A cue's text on one line: a blank line would end the cue in SRT and VTT."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _vtt_text(text: str) -> str:
    """A WebVTT cue's text: "&", "<" and ">" escaped (a "<" opens a tag; "-->" may not appear)."""
    return _cue_text(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write(t: Transcription, fmt: str, words: bool = False) -> str:
    """``t`` in ``fmt``; text and subtitles label split-channel turns with their speaker."""
    if fmt == "text":
        return "\n".join(_label(s.speaker, s.text) for s in t.segments if s.text) + "\n"
    if fmt == "json":
        return json.dumps({"text": t.text}, ensure_ascii=False)
    if fmt == "verbose_json":
        return json.dumps(verbose(t, words), ensure_ascii=False)
    if fmt == "diarized_json":
        return json.dumps(diarized(t), ensure_ascii=False)
    if fmt == "srt":
        cues = [f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{_label(s.speaker, _cue_text(s.text))}\n"
                for i, s in enumerate((s for s in t.segments if s.text), start=1)]
        return "\n".join(cues)
    if fmt == "vtt":
        cues = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n"
                f"{f'<v {s.speaker}>' if s.speaker else ''}{_vtt_text(s.text)}\n" for s in t.segments if s.text]
        return "WEBVTT\n\n" + "\n".join(cues)
    raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
