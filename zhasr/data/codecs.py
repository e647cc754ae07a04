"""Telephone channels made with real codecs: speech band-passed to 300-3400 Hz at 8 kHz (sox), then
encoded and decoded by FFmpeg's encoders through PyAV, as a PBX or a carrier would.

``mulaw`` and ``alaw`` are G.711 (64 kbit/s), ``amr-nb`` is AMR-NB at 12.2 kbit/s (GSM and 3G voice),
``amr-nb-any`` is AMR-NB at one of its eight modes (4.75-12.2 kbit/s) drawn from the audio, as a mobile
network's rate adaptation picks one by radio conditions,
``amr-nb-lossy`` is AMR-NB at 7.95 kbit/s with bursty loss of 20-ms packets (zeroed, as a jitter
buffer without concealment plays them) and a hot level that clips, ``g726`` is G.726 ADPCM at 32 kbit/s
(DECT handsets, older PBX trunks), ``opus`` is Opus at 8 kbit/s in its narrowband speech mode (soft
phones and WebRTC on a poor link), ``g723`` is G.723.1 at 6.3 kbit/s
(a VoIP codec of another family: training augmentation leaves it out, so it stands for the codecs of
a customer's PBX that nobody simulated). Every channel is deterministic: the
same samples give the same output (losses are drawn from a seed made of the audio's bytes).
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import soxr

from zhasr.config import TELEPHONE_CODECS
from zhasr.data.audio import TARGET_RATE, TELEPHONE_MAX_RATE, sox_telephone_band

CODECS = TELEPHONE_CODECS
# codec -> (container format, FFmpeg encoder, bit rate in bit/s or None)
_ENCODERS = {"mulaw": ("wav", "pcm_mulaw", None), "alaw": ("wav", "pcm_alaw", None),
             "amr-nb": ("amr", "libopencore_amrnb", 12200), "amr-nb-any": ("amr", "libopencore_amrnb", 12200),
             "amr-nb-lossy": ("amr", "libopencore_amrnb", 7950),
             "g726": ("wav", "g726", 32000), "opus": ("ogg", "libopus", 8000), "g723": ("g723_1", "g723_1", 6300)}
_AMR_MODES = (4750, 5150, 5900, 6700, 7400, 7950, 10200, 12200)  # bit/s
_PACKET_S = 0.02  # one AMR frame
_LOSS_START, _LOSS_STAY = 0.03, 0.4  # Gilbert model: P(a loss burst starts), P(the next packet is lost too)
_HOT_GAIN_DB = 9.0  # the lossy channel's level error before the codec: peaks clip


def narrowband(samples: np.ndarray, rate: int = TARGET_RATE) -> np.ndarray:
    """(n,) float32 at ``rate`` -> (m,) float32 at 8 kHz, band-passed to 300-3400 Hz by sox (no dither)."""
    return sox_telephone_band(samples, rate, ("-e", "float", "-b", "32"))


def _audio_seed(samples: np.ndarray) -> int:
    return int.from_bytes(hashlib.sha256(samples.tobytes()).digest()[:8], "little")


def _encode_decode(samples8k: np.ndarray, codec: str, bit_rate: int | None = None) -> np.ndarray:
    """(n,) float32 at 8 kHz through the codec's encoder (at ``bit_rate`` bit/s, else the codec's) and
    FFmpeg's decoder, (m,) float32 at 8 kHz."""
    import av

    container_format, encoder, codec_rate = _ENCODERS[codec]
    if encoder not in av.codecs_available:
        raise RuntimeError(f"telephone codec {codec}: the installed PyAV {av.__version__} has no {encoder} encoder; "
                           "install the av version pinned in requirements/lock.txt")
    bit_rate = bit_rate or codec_rate
    pcm = (np.clip(samples8k, -1.0, 32767 / 32768) * 32768).astype(np.int16)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as out:
        stream = out.add_stream(encoder, rate=TELEPHONE_MAX_RATE, layout="mono")
        if bit_rate:
            stream.bit_rate = bit_rate
        frame_size = stream.codec_context.frame_size or 160
        for start in range(0, len(pcm), frame_size):
            chunk = pcm[start : start + frame_size]
            if len(chunk) < frame_size and container_format != "wav":  # AMR, Opus and G.723.1 take whole frames
                chunk = np.pad(chunk, (0, frame_size - len(chunk)))
            frame = av.AudioFrame.from_ndarray(chunk[None], format="s16", layout="mono")
            frame.rate = TELEPHONE_MAX_RATE
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buffer.seek(0)
    with av.open(buffer, mode="r", format=container_format) as source:
        frames = list(source.decode(source.streams.audio[0]))
    data = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    data = data.astype(np.float32) / 32768.0 if data.dtype == np.int16 else data.astype(np.float32)
    if frames[0].sample_rate != TELEPHONE_MAX_RATE:  # Opus decodes at 48 kHz whatever it was given
        data = soxr.resample(data, frames[0].sample_rate, TELEPHONE_MAX_RATE, quality="HQ")
    return np.pad(data, (0, max(0, len(samples8k) - len(data))))[: len(samples8k)]


def _lose_packets(samples8k: np.ndarray) -> np.ndarray:
    """Bursty loss of 20-ms packets (a two-state Gilbert model), seeded by the audio itself."""
    rng = np.random.default_rng(_audio_seed(samples8k))
    step = int(_PACKET_S * TELEPHONE_MAX_RATE)
    out, lost = samples8k.copy(), False
    for start in range(0, len(out), step):
        lost = rng.random() < (_LOSS_STAY if lost else _LOSS_START)
        if lost:
            out[start : start + step] = 0.0
    return out


def telephone(samples: np.ndarray, codec: str, rate: int = TARGET_RATE) -> np.ndarray:
    """(n,) float32 at ``rate`` through the telephone channel ``codec`` (one of CODECS) and back to ``rate``."""
    if codec not in _ENCODERS:
        raise ValueError(f"telephone codec {codec!r}: expected one of {', '.join(CODECS)}")
    band = narrowband(samples, rate)
    if codec == "amr-nb-lossy":
        band = np.clip(band * 10 ** (_HOT_GAIN_DB / 20), -1.0, 1.0)
    mode = _AMR_MODES[_audio_seed(band) % len(_AMR_MODES)] if codec == "amr-nb-any" else None
    heard = _encode_decode(band, codec, mode)
    if codec == "amr-nb-lossy":
        heard = _lose_packets(heard)
    back = soxr.resample(heard, TELEPHONE_MAX_RATE, rate, quality="HQ")
    return np.ascontiguousarray(np.clip(back, -1.0, 1.0), dtype=np.float32)
