"""Speech pieces of a track: Silero VAD v6, in its 8 kHz mode on a channel of its own (the silero-vad
package's TorchScript model), in its 16 kHz mode (as faster-whisper ships it) on a track that holds both
parties.

On a call's own channels the 16 kHz mode heard telephone turns late: a short first word before a pause
("对，", "啊，") or the first syllables of a loud turn. On a mixed track the 8 kHz mode's probability falls
over ~0.4 s after speech, so a 0.7 s gap between two speakers was not a pause of 500 ms: the real call's
turns found fell from 24 to 19 of 27 (docs/decoding.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from zhasr.config import TranscribeParams
from zhasr.data.audio import TARGET_RATE

VAD_RATE = 8000
FRAME = 256  # samples at 8 kHz (32 ms): one speech probability each
CONTEXT = 32  # samples of the previous frame the model reads with each frame
# Silero misses loud speech (16 kHz mode: a channel peaking at 0.46 had 42% of its speech found as it is and
# 94% attenuated to peaks of 0.05, with no more false alarms; 8 kHz mode: the real call's turns 24/27 and CER
# 26.15% attenuated, 23/27 and 27.22% as it is); the VAD reads a track attenuated (never amplified) so that
# its 99.9th-percentile |sample| is at most this.
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


BLOCK = 4096  # frames (2.2 min) whose features are computed at once: ~30 MB of activations


@functools.cache
def _silero_8k():
    """Silero's 8 kHz network as (frame encoder, LSTM, head). Only the LSTM carries state from one frame to the
    next, so the encoder reads every frame of a track in one call and the LSTM runs over them in one more: the
    probabilities of feeding the model frame by frame (within 1e-5) at a fifth of its time."""
    import silero_vad
    import torch

    model = torch.jit.load(str(Path(silero_vad.__file__).parent / "data" / "silero_vad.jit"), map_location="cpu")
    net = model.eval()._model_8k
    cell = net.decoder.rnn
    lstm = torch.nn.LSTM(cell.weight_ih.shape[1], cell.weight_hh.shape[1])
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(lstm, f"{name}_l0").copy_(getattr(cell, name))
    return (lambda frames: net.encoder(net.stft(frames)).squeeze(-1)), lstm.eval(), net.decoder.decoder


def _attenuated(x: np.ndarray) -> np.ndarray:
    peak = float(np.quantile(np.abs(x), 0.999))
    return np.asarray(x * (VAD_PEAK / peak) if peak > VAD_PEAK else x, dtype=np.float32)


def speech_probabilities(samples: np.ndarray) -> np.ndarray:
    """Silero's speech probability per 32 ms frame of (n_samples,) 16 kHz audio: (ceil(n_samples / 512),)."""
    import torch

    x = soxr.resample(np.asarray(samples, dtype=np.float32), TARGET_RATE, VAD_RATE)
    frames = -(-len(x) // FRAME)
    heard = np.zeros(CONTEXT + frames * FRAME, dtype=np.float32)  # zeros before the first frame, after the last
    heard[CONTEXT : CONTEXT + len(x)] = _attenuated(x)
    windows = np.lib.stride_tricks.sliding_window_view(heard, FRAME + CONTEXT)[::FRAME]  # (frames, 288), a view
    encode, lstm, head = _silero_8k()
    out, state = [], None
    with torch.inference_mode():
        for first in range(0, frames, BLOCK):
            features = encode(torch.from_numpy(windows[first : first + BLOCK].copy()))
            hidden, state = lstm(features[:, None, :], state)  # (frames, 1, 128): a sequence of one stream
            out.append(head(hidden[:, 0, :, None])[:, 0, 0].numpy())
    return np.concatenate(out)


def speech_spans(samples: np.ndarray, params: TranscribeParams, one_speaker: bool = True) -> list[tuple[int, int]]:
    """[(start, end) sample indices] of speech in (n_samples,) 16 kHz audio, each <= max_piece_s: Silero's
    frame probabilities through its own hysteresis, minimum lengths and padding; ``one_speaker``: the track
    is one channel of a call (8 kHz mode), else it may hold both parties (16 kHz mode).

    Speech longer than ``max_piece_s`` is cut at its last pause of 98 ms or more before the limit (hard
    cut when there is none), so every piece fits Whisper's window.
    """
    from faster_whisper.vad import VadOptions, get_speech_timestamps
    from silero_vad import get_speech_timestamps_from_probs

    n_samples = len(samples)
    if n_samples < TARGET_RATE // 10:  # under 0.1 s there is nothing for the VAD to judge
        return []
    lengths = dict(threshold=params.vad_threshold, min_speech_duration_ms=params.min_speech_ms,
                   max_speech_duration_s=params.max_piece_s, min_silence_duration_ms=params.min_silence_ms,
                   speech_pad_ms=params.speech_pad_ms)
    if one_speaker:
        scale = TARGET_RATE // VAD_RATE
        spans = get_speech_timestamps_from_probs(speech_probabilities(samples).tolist(), sampling_rate=VAD_RATE,
                                                 audio_length_samples=-(-n_samples // scale), **lengths)
    else:
        scale = 1
        spans = get_speech_timestamps(_attenuated(samples), VadOptions(**lengths), sampling_rate=TARGET_RATE)
    limit = int(params.max_piece_s * TARGET_RATE)
    out = []
    for span in spans:  # the VAD's own cut leaves room for the padding; this is the last word on length
        start, end = int(span["start"]) * scale, min(n_samples, int(span["end"]) * scale)
        while end - start > limit:
            out.append((start, start + limit))
            start += limit
        if end - start >= params.min_speech_ms * TARGET_RATE // 1000:  # not a sliver left by a hard cut
            out.append((start, end))
    return out
