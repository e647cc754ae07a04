"""One shard of an archive on one worker: each call hashed (unless the index knows the unchanged file),
skipped when its record for this model version exists, given a copy of what the same audio became under
another name, else transcribed (channels split where stereo), its transcripts written and its record kept.
A call that cannot be decoded gets a failed record with the reason, one that cannot be read a failed
result only (no hash to keep it by); the shard goes on."""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from zhasr.archive.listing import ArchiveCall
from zhasr.archive.records import (
    DONE,
    FAILED,
    CallRecord,
    audio_records,
    file_sha256,
    read_record,
    version_slug,
    write_record,
)
from zhasr.data.audio import AudioError
from zhasr.data.manifest import atomic_write_bytes, atomic_write_text
from zhasr.transcribe.confidence import call_confidence
from zhasr.transcribe.engine import Transcriber
from zhasr.transcribe.media import read_call
from zhasr.transcribe.redaction import transcribe_finished
from zhasr.transcribe.writers import EXTENSIONS, write


@dataclass(frozen=True)
class ShardResult:
    records: tuple[CallRecord, ...]  # one per call, in the shard's order
    skipped: tuple[str, ...]  # call ids whose record for this model version existed before
    copied: tuple[str, ...] = ()  # call ids given what the same audio became under another name, not decoded


def transcribe_shard(calls: Sequence[ArchiveCall], transcriber: Transcriber, out: Path, model: str, model_version: str,
                     formats: Sequence[str] = ("verbose_json",), known: dict[tuple[str, int, int], str] | None = None,
                     max_audio_s: float | None = None, redact: Sequence[str] = (), itn: bool = False,
                     detector: Transcriber | None = None) -> ShardResult:
    """Records of ``calls`` for ``model_version``; existing ones are read, not made again. Transcripts and
    records hold the text with ``redact``'s kinds of personal data replaced (and, with ``itn``, digits), with
    what the number-trained ``detector`` heard too when there is one."""
    records, skipped, copied = [], [], []
    for call in calls:
        started = time.perf_counter()
        base = dict(call_id=call.call_id, path=call.path, size=call.size, mtime_ns=call.mtime_ns,
                    model=model, model_version=model_version, worker=f"{socket.gethostname()}:{os.getpid()}")
        try:
            sha = (known or {}).get(call.stat_key) or file_sha256(call.path)
        except OSError as exc:  # gone or unreadable since it was listed: no bytes, no record; the next run tries again
            records.append(CallRecord(**base, audio_sha256="", status=FAILED, finished_at=_now(),
                                      reason=f"{call.path}: cannot be read ({exc.strerror or exc})"))
            continue
        existing = read_record(out, sha, model_version, call.call_id)
        if existing is not None:
            records.append(existing)
            skipped.append(call.call_id)
            continue
        base["audio_sha256"] = sha
        if (twin := _copy_of_twin(out, CallRecord(**base, status=""), formats)) is not None:
            write_record(out, twin)
            records.append(twin)
            copied.append(call.call_id)
            continue
        try:
            audio = read_call(Path(call.path), call.path, max_audio_s)
            result = transcribe_finished(transcriber, audio, redact, itn, detector,
                                         channels="split" if audio.channels > 1 else "mix", name=call.path)
        except AudioError as exc:
            record = CallRecord(**base, status=FAILED, reason=str(exc), wall_s=round(time.perf_counter() - started, 3),
                                finished_at=_now())
        else:
            outputs = []
            for fmt in formats:
                relative = transcript_path(call.call_id, sha, model_version, fmt)
                atomic_write_text(Path(out) / relative, write(result, fmt))
                outputs.append(relative)
            texts: dict[str, list[str]] = {}
            for segment in result.segments:
                texts.setdefault(segment.speaker, []).append(segment.text)
            record = CallRecord(
                **base, status=DONE, duration_s=round(result.duration_s, 3), channels=audio.channels,
                runtime=result.runtime, texts={k: "".join(v) for k, v in texts.items()},
                mean_confidence=round(call_confidence(result), 4),
                flags=tuple(sorted({f for s in result.segments for f in s.flags})),
                wall_s=round(time.perf_counter() - started, 3), outputs=tuple(outputs), formats=tuple(formats),
                finished_at=_now())
        write_record(out, record)
        records.append(record)
    return ShardResult(tuple(records), tuple(skipped), tuple(copied))


def transcript_path(call_id: str, audio_sha256: str, model_version: str, fmt: str) -> str:
    """Where a call's transcript in ``fmt`` goes, relative to the output root."""
    return f"transcripts/{version_slug(model_version)}/{call_id}.{audio_sha256[:12]}.{EXTENSIONS[fmt]}"


def _copy_of_twin(out: Path, call: CallRecord, formats: Sequence[str]) -> CallRecord | None:
    """``call``'s record made from what its audio became under another name with this model version, its
    transcripts copied under ``call``'s name; None where no such record has one on disk in every format of
    ``formats``. Where the audio only ever failed, the failure (its reason naming this call's file)."""
    twins = audio_records(out, call.audio_sha256, call.model_version)
    for twin in sorted(twins, key=lambda r: r.status != DONE):
        if twin.status == FAILED:
            return dataclasses.replace(twin, **_own(call), reason=(twin.reason or "").replace(twin.path, call.path))
        sources = {fmt: Path(out) / path for fmt, path in zip(twin.formats, twin.outputs)}
        if all(fmt in sources and sources[fmt].is_file() for fmt in formats):
            outputs = tuple(transcript_path(call.call_id, call.audio_sha256, call.model_version, f) for f in formats)
            for fmt, target in zip(formats, outputs):
                atomic_write_bytes(Path(out) / target, sources[fmt].read_bytes())
            return dataclasses.replace(twin, **_own(call), outputs=outputs, formats=tuple(formats), wall_s=0.0)
    return None


def _own(call: CallRecord) -> dict:
    """What a record of ``call`` keeps of its own when it copies another call's."""
    return dict(call_id=call.call_id, path=call.path, size=call.size, mtime_ns=call.mtime_ns, worker=call.worker,
                finished_at=_now())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
