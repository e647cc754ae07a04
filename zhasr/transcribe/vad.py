"""Speech pieces of a channel: Silero VAD v6 as shipped inside faster-whisper (offline, onnxruntime)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zhasr.config import TranscribeParams
from zhasr.data.audio import TARGET_RATE

# Silero (as faster-whisper runs it over a whole track) misses loud speech: on the real-speech bench
# call, a channel whose peaks reach 0.46 had 42% of its speech found as it is and 94% attenuated to
# peaks of 0.05, with no more false alarms; the VAD reads a track attenuated (never amplified) so
# that its 99.9th-percentile |sample| is at most this.
VAD_PEAK = 0.05


@dataclass(frozen=True)
class Piece:
    """A stretch of speech of one channel, at most ``max_piece_s`` long."""

    source: int  # which input of a batch it came from
    channel: int
    start: int  # sample index in the original file (16 kHz)
    end: int

    @property
    def start_s(self) -> float:
        return self.start / TARGET_RATE

    @property
    def end_s(self) -> float:
        return self.end / TARGET_RATE


def speech_spans(samples: np.ndarray, params: TranscribeParams) -> list[tuple[int, int]]:
    """[(start, end) sample indices] of speech in (n_samples,) 16 kHz audio, each <= max_piece_s.

    Speech longer than ``max_piece_s`` is cut at its last pause of 100 ms or more before the limit
    (hard cut when there is none), so every piece fits Whisper's window.
    """
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if len(samples) < TARGET_RATE // 10:  # under 0.1 s there is nothing for the VAD to judge
        return []
    options = VadOptions(threshold=params.vad_threshold, min_speech_duration_ms=params.min_speech_ms,
                         max_speech_duration_s=params.max_piece_s, min_silence_duration_ms=params.min_silence_ms,
                         speech_pad_ms=params.speech_pad_ms)
    peak = float(np.quantile(np.abs(samples), 0.999))
    heard = samples * (VAD_PEAK / peak) if peak > VAD_PEAK else samples
    spans = get_speech_timestamps(np.asarray(heard, dtype=np.float32), options, sampling_rate=TARGET_RATE)
    limit = int(params.max_piece_s * TARGET_RATE)
    out = []
    for span in spans:  # the VAD's own cut leaves room for the padding; this is the last word on length
        start, end = int(span["start"]), int(span["end"])
        while end - start > limit:
            out.append((start, start + limit))
            start += limit
        out.append((start, end))
    return out
