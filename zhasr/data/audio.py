"""Audio decoding to Whisper's input: 16 kHz mono float32."""

from __future__ import annotations

import hashlib
import io
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

TARGET_RATE = 16000  # Hz
TELEPHONE_MAX_RATE = 8000  # Hz; sources at or below this rate carry only the telephone band
TELEPHONE_BAND_HZ = (300, 3400)  # the band G.711 telephony passes


# Extensions libsndfile decodes; anything else is refused before decoding is tried.
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                              ".au", ".snd", ".caf", ".w64", ".rf64", ".sph", ".nist", ".voc"})


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and why."""


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # (n_samples,) float32 in [-1, 1], mono, at TARGET_RATE
    source_rate: int  # Hz of the file as delivered
    source_channels: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / TARGET_RATE



def decode(path: Path, target_rate: int = TARGET_RATE) -> DecodedAudio:
    """Read any libsndfile format, downmix to mono, resample with soxr (HQ)."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise AudioError(f"{path}: unknown audio extension {path.suffix!r} (known: {' '.join(sorted(AUDIO_EXTENSIONS))})")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file")
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises several types for bad input
        raise AudioError(f"{path}: cannot decode audio ({exc})") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{path}: no samples")
    if not np.isfinite(data).all():  # a float file may hold NaN or infinity: no level, no training signal
        raise AudioError(f"{path}: {int(np.size(data) - np.isfinite(data).sum())} samples are not finite "
                         "(NaN or infinity)")
    mono = data.mean(axis=1)
    if rate != target_rate:
        mono = soxr.resample(mono, rate, target_rate, quality="HQ")
    return DecodedAudio(samples=np.ascontiguousarray(mono, dtype=np.float32), source_rate=int(rate), source_channels=int(data.shape[1]))


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level of (n_samples,) float audio in dB relative to full scale; -inf for digital silence."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * math.log10(rms) if rms > 0 else float("-inf")


def load_16k(path: Path) -> np.ndarray:
    """(n_samples,) float32 mono at 16 kHz."""
    return decode(path).samples


def wav_bytes(samples: np.ndarray, rate: int = TARGET_RATE) -> bytes:
    """PCM-16 WAV encoding of (n_samples,) float32; deterministic bytes for hashing."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def sha256_hex(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def sox_telephone_band(samples: np.ndarray, rate: int, encoding: tuple[str, ...]) -> np.ndarray:
    """(n,) float32 at ``rate`` -> (m,) float32 at 8 kHz: band-passed to 300-3400 Hz and resampled by sox,
    written in ``encoding`` (sox's output options, e.g. ``("-e", "u-law", "-b", "8")``) and read back.

    Deterministic: sox runs with a fixed random seed and no dither, the same input gives the same bytes.
    """
    if shutil.which("sox") is None:
        raise RuntimeError("sox is not installed (Debian package sox): the telephone channels need it")
    lo, hi = TELEPHONE_BAND_HZ
    cmd = ["sox", "-R", "-D", "-V1", "-t", "wav", "-", "-t", "wav", *encoding, "-c", "1", "-",
           "sinc", f"{lo}-{hi}", "rate", "-v", str(TELEPHONE_MAX_RATE)]
    done = subprocess.run(cmd, input=wav_bytes(samples, rate), capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"sox telephone band ({' '.join(encoding)}) failed: "
                           f"{done.stderr.decode(errors='replace').strip()}")
    out, _ = sf.read(io.BytesIO(done.stdout), dtype="float32")
    return out


def telephone_channel(samples: np.ndarray, rate: int = TARGET_RATE) -> np.ndarray:
    """(n_samples,) float32 at ``rate`` through a telephone line and back: band-passed to 300-3400 Hz,
    resampled to 8 kHz and encoded as 8-bit G.711 mu-law by sox, decoded and resampled to ``rate``."""
    phone = sox_telephone_band(samples, rate, ("-e", "u-law", "-b", "8"))
    return np.ascontiguousarray(soxr.resample(phone, TELEPHONE_MAX_RATE, rate, quality="HQ"), dtype=np.float32)
