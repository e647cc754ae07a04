"""Any audio a call-center system exports, decoded to (channels, n) float32 at 16 kHz.

PyAV (FFmpeg, installed with faster-whisper) reads WAV with PCM or G.711 mu-law/A-law, MP3,
M4A/AAC, Opus, FLAC, Ogg, AMR-NB/WB, GSM and G.722; libsndfile is tried when FFmpeg fails.
Channels are kept (split-channel calls need them); each is resampled with soxr like ingest.
Input is a path or the bytes themselves (a service never opens a path a client names): FFmpeg may use
only the demuxers of audio and media files, not a playlist (concat, HLS), a session description (SDP)
or an image sequence, which open the files or ports their text names. Decoding stops at the duration
limit, so a small file that holds hours of audio costs no more than the limit.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from zhasr.data.audio import TARGET_RATE, AudioError

# FFmpeg's names of the demuxers bytes may be read with (its own probe picks among them)
AUDIO_DEMUXERS = ("wav", "w64", "flac", "mp3", "ogg", "matroska", "mov", "aiff", "au", "caf", "amr", "amrnb", "amrwb",
                  "aac", "asf", "nistsphere", "voc", "g722", "g723_1", "g729", "gsm", "wv", "ape", "tta", "ac3",
                  "eac3", "avi", "mpegts")


class UnsupportedAudio(AudioError):
    """Bytes that no decoder recognizes as audio (a service answers 415)."""


class AudioTooLong(AudioError):
    """Audio longer than the limit (a service answers 413)."""

    def __init__(self, message: str, seconds: float):
        super().__init__(message)
        self.seconds = seconds


@dataclass(frozen=True)
class CallAudio:
    samples: np.ndarray  # (channels, n_samples) float32 in [-1, 1] at TARGET_RATE
    source_rate: int  # Hz as delivered
    codec: str  # e.g. "pcm_mulaw", "mp3", "aac"
    warnings: tuple[str, ...] = ()

    @property
    def channels(self) -> int:
        return self.samples.shape[0]

    @property
    def duration_s(self) -> float:
        return self.samples.shape[1] / TARGET_RATE

    def mono(self) -> np.ndarray:
        """(n_samples,) mean of the channels."""
        return self.samples.mean(axis=0) if self.channels > 1 else self.samples[0]

    def louder_channel(self, start_s: float, end_s: float, margin_db: float = 6.0) -> int | None:
        """The channel that carries the speech between two times: the one at least ``margin_db`` louder than
        every other; None on a mono call, or where no channel is (both parties at once, or one signal on
        both channels)."""
        if self.channels < 2:
            return None
        span = self.samples[:, int(start_s * TARGET_RATE) : max(int(end_s * TARGET_RATE), int(start_s * TARGET_RATE) + 1)]
        power = np.mean(np.square(span, dtype=np.float64), axis=1) + 1e-12
        loudest = int(np.argmax(power))
        return loudest if 10 * np.log10(power[loudest] / np.delete(power, loudest).max()) >= margin_db else None


def _too_long(name: str, seconds: float | None, limit_s: float) -> AudioTooLong:
    """``seconds``: the audio's length where the file declares it (decoding stopped at the limit)."""
    if seconds is not None and seconds > limit_s:
        return AudioTooLong(f"{name}: {seconds:.0f} s of audio, more than the limit of {limit_s:.0f} s", seconds)
    return AudioTooLong(f"{name}: more than the limit of {limit_s:.0f} s of audio", limit_s)


def _decode_av(blob: bytes, name: str, limit_s: float | None) -> tuple[np.ndarray, int, str, float | None]:
    """(channels, n) float32 at the source rate, rate, codec name, declared duration in seconds (or None);
    AudioTooLong as soon as more than ``limit_s`` seconds are decoded."""
    import av

    with av.open(io.BytesIO(blob), mode="r", container_options={"format_whitelist": ",".join(AUDIO_DEMUXERS)}) as container:
        if not container.streams.audio:
            raise AudioError("no audio stream")
        stream = container.streams.audio[0]
        declared = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        rate = int(stream.rate or stream.sample_rate)
        chunks, samples = [], 0
        for frame in container.decode(stream):
            data = frame.to_ndarray()  # planar: (channels, n); packed: (1, n * channels)
            if not frame.format.is_planar:
                data = data.reshape(-1, len(frame.layout.channels)).T
            chunks.append(_as_float(data))
            samples += data.shape[1]
            if limit_s is not None and samples > limit_s * rate:
                raise _too_long(name, declared, limit_s)
        if not chunks:
            raise AudioError("no samples")
        return np.concatenate(chunks, axis=1), rate, stream.codec_context.name, declared


def _wav_shortfall(blob: bytes) -> float | None:
    """For a RIFF/WAVE file: declared data bytes / data bytes present (> 1 when the file is cut short);
    None for other files or an unknown size (streamed WAV writes 0 or 0xFFFFFFFF)."""
    if blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        return None
    at = blob.find(b"data", 12, 4096)
    if at < 0 or len(blob) < at + 8:
        return None
    declared = int.from_bytes(blob[at + 4:at + 8], "little")
    present = len(blob) - (at + 8)
    if declared in (0, 0xFFFFFFFF) or present <= 0:
        return None
    return declared / present


def _as_float(data: np.ndarray) -> np.ndarray:
    """Integer samples as float32 in [-1, 1): an unsigned type (8-bit WAV) centred on its midpoint first."""
    if not np.issubdtype(data.dtype, np.integer):
        return data.astype(np.float32)
    info = np.iinfo(data.dtype)
    middle = (int(info.max) + 1) // 2 if info.min == 0 else 0
    return (data.astype(np.float32) - middle) / (int(info.max) + 1 - middle)


def _decode_sndfile(blob: bytes, name: str, limit_s: float | None) -> tuple[np.ndarray, int, str]:
    import soundfile as sf

    with sf.SoundFile(io.BytesIO(blob)) as f:
        if limit_s is not None and f.frames > limit_s * f.samplerate:
            raise _too_long(name, f.frames / f.samplerate, limit_s)
        data, rate, subtype = f.read(dtype="float32", always_2d=True), f.samplerate, f.subtype
    if data.shape[0] == 0:
        raise AudioError("no samples")
    return data.T, int(rate), subtype.lower()


def read_call(source: Path | bytes, name: str | None = None, max_duration_s: float | None = None) -> CallAudio:
    """Decode ``source`` (a path, or the file's bytes with ``name`` for messages).

    Raises AudioError naming the file: empty, not audio, no audio stream, no samples, too long.
    A file cut short decodes as far as it goes, with a warning.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = name or str(path)
        if not path.is_file():
            raise AudioError(f"{name}: file not found")
        blob = path.read_bytes()
    else:
        blob, name = bytes(source), name or "audio"
    if not blob:
        raise AudioError(f"{name}: empty file")
    warnings: list[str] = []
    try:
        data, rate, codec, declared = _decode_av(blob, name, max_duration_s)
    except AudioTooLong:
        raise
    except Exception as av_error:  # FFmpeg raises many types for bad input
        try:
            data, rate, codec = _decode_sndfile(blob, name, max_duration_s)
            declared = None
        except AudioTooLong:
            raise
        except Exception:
            reason = str(av_error).split(": '<", 1)[0]  # PyAV appends the stream's repr
            raise UnsupportedAudio(f"{name}: cannot decode audio ({reason})") from av_error
    seconds = data.shape[1] / rate
    if (shortfall := _wav_shortfall(blob)) and shortfall > 1:  # FFmpeg reads a WAV's length off the file's size
        declared = max(declared or 0.0, seconds * shortfall)
    if declared and seconds < declared - 0.5:
        warnings.append(f"{name}: the file is cut short: {seconds:.1f} s decoded of {declared:.1f} s declared")
    data = np.clip(np.nan_to_num(data), -1.0, 1.0)
    if rate != TARGET_RATE:
        data = soxr.resample(data.T, rate, TARGET_RATE, quality="HQ").T
    return CallAudio(np.ascontiguousarray(data, dtype=np.float32), rate, codec, tuple(warnings))
