"""A call on its way to Label Studio: its audio kept under ``<labelling>/calls/`` (what Label Studio plays
and what a pull cuts clips from) and the task that carries the engine's segments as a prediction."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from zhasr.data.audio import TARGET_RATE
from zhasr.data.manifest import atomic_write_bytes
from zhasr.labelling.interface import UNKNOWN_ROLE, region_items
from zhasr.transcribe.confidence import call_confidence, segment_confidence
from zhasr.transcribe.media import CallAudio, read_call
from zhasr.transcribe.records import Transcription

CALLS_DIR = "calls"  # under paths.labelling, Label Studio's local-files document root


@dataclass(frozen=True)
class StoredCall:
    call_id: str  # the file's stem
    audio_sha256: str  # of the file's bytes as given: a pushed call is known again by it
    path: Path  # <labelling>/calls/<sha256>.wav, PCM-16 at the source rate (8 kHz telephone stays 8 kHz)
    duration_s: float
    channels: int
    source_rate: int  # Hz

    @property
    def audio_url(self) -> str:
        """The task's audio: Label Studio serves it from its local-files root to the project's users."""
        return f"/data/local-files/?d={CALLS_DIR}/{self.path.name}"


def store_call(source: Path, labelling_dir: Path, max_audio_s: float | None = None) -> tuple[StoredCall, CallAudio]:
    """Decode ``source`` (any format the engine reads) and keep it as PCM-16 WAV, every channel, at its own
    rate up to 16 kHz; returns it with the decoded call. AudioError (naming the file) for audio that cannot
    be used."""
    blob = Path(source).read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    call = read_call(blob, str(source), max_audio_s)
    rate = min(call.source_rate, TARGET_RATE)
    samples = call.samples.T  # (n, channels) at 16 kHz
    if rate != TARGET_RATE:
        samples = soxr.resample(samples, TARGET_RATE, rate)
    target = Path(labelling_dir) / CALLS_DIR / f"{sha}.wav"
    if not target.is_file():
        buffer = io.BytesIO()
        sf.write(buffer, np.clip(samples, -1, 1), rate, subtype="PCM_16", format="WAV")
        atomic_write_bytes(target, buffer.getvalue())
    stored = StoredCall(Path(source).stem, sha, target, round(call.duration_s, 3), call.samples.shape[0], rate)
    return stored, call


def prediction(result: Transcription, model_version: str) -> dict:
    """Label Studio's prediction of one call: a region per segment (role = the channel's role in split mode,
    ``unknown`` for a mixed track), each with its confidence; the call's score is ``call_confidence``."""
    items = []
    for k, seg in enumerate(result.segments):
        items += region_items(f"seg{k}", seg.start, seg.end, seg.channel, seg.speaker or UNKNOWN_ROLE, seg.text,
                              score=segment_confidence(seg))
    return {"model_version": model_version, "score": round(call_confidence(result), 4), "result": items}


def task(call: StoredCall, result: Transcription, model_version: str) -> dict:
    """The Label Studio task of one call; ``data`` carries what a pull needs to find and check the audio
    (and nothing a client could use to reach anything else)."""
    return {"data": {"audio": call.audio_url, "call_id": call.call_id, "audio_sha256": call.audio_sha256,
                     "duration_s": call.duration_s, "channels": call.channels, "source_rate": call.source_rate},
            "predictions": [prediction(result, model_version)]}
