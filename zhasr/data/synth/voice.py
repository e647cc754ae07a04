"""How the synthetic calls sound: espeak-ng's Mandarin pinyin voice per speaker, then sox for the
channel (wideband, or an 8 kHz telephone band with G.711 mu-law), level, padding and noise."""

from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
from pypinyin import Style, lazy_pinyin

from zhasr.config import SynthParams

ESPEAK_VOICE = "cmn-latn-pinyin"  # Mandarin voice that reads tone-numbered pinyin
VOICE_VARIANTS = ("f1", "f2", "f3", "f4", "m1", "m3", "klatt2")  # espeak-ng variants, cycled over speakers
TOOLS = {"espeak-ng": "espeak-ng", "sox": "sox"}  # binary -> Debian/Ubuntu package that provides it


@dataclass(frozen=True)
class Speaker:
    id: str  # e.g. "syn0-spk03": seed and index
    variant: str  # espeak-ng voice variant, e.g. "f2"
    speed_wpm: int  # espeak-ng -s
    pitch: int  # espeak-ng -p


@dataclass(frozen=True)
class Call:
    id: str  # e.g. "syn0-call0007"
    speaker: Speaker
    topic: str  # key of TEMPLATES, or "personal" (personal.py's sentences)
    channel: str  # "telephone" or "wideband"
    snr_db: float  # dB
    noise: str  # "white" or "pink"


class MissingToolError(RuntimeError):
    """A binary the generator runs is not on PATH; the message names its package."""


_PAUSES = {"，": ",", "、": ",", "；": ",", "：": ",", "。": ".", "！": ".", "？": ".", ",": ",", ".": ".", "?": ".", "!": "."}


def to_pinyin(text: str) -> str:
    """Chinese text -> tone-numbered pinyin for ``espeak-ng -v cmn-latn-pinyin``.

    ``"您好，请问"`` -> ``"nin2 hao3 , qing3 wen4"``: tones 1-4, neutral tone 5,
    ü as v; punctuation becomes a pause (``,`` or ``.``). espeak-ng applies
    third-tone sandhi itself. Anything else that is not Han (digits, Latin)
    raises ValueError: labels write numbers in characters.
    """
    out = []
    for token in lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, errors=lambda s: list(s)):
        if token in _PAUSES:
            out.append(_PAUSES[token])
        elif token.isspace():
            continue
        elif token[-1] in "12345" and token[:-1].isascii() and token[:-1].isalpha():
            out.append(token)
        else:
            raise ValueError(f"to_pinyin: {token!r} in {text!r} is neither Han nor punctuation")
    return " ".join(out)


def check_tools() -> None:
    """Raise MissingToolError naming the binary and its apt package if espeak-ng or sox is missing."""
    for binary, package in TOOLS.items():
        if shutil.which(binary) is None:
            raise MissingToolError(
                f"{binary} not found on PATH; the synthetic corpus needs it: install it with "
                f"`apt-get install {package}` (Debian/Ubuntu package {package!r})")


def _run(cmd: list[str], stdin: bytes | None, what: str) -> bytes:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"{what}: {cmd[0]} failed (exit {proc.returncode}): {err or 'no output'}")
    return proc.stdout


def speak(pinyin: str, speaker: Speaker) -> bytes:
    """WAV bytes (PCM-16, 22.05 kHz mono) of ``pinyin`` spoken by ``speaker``."""
    cmd = ["espeak-ng", "-v", f"{ESPEAK_VOICE}+{speaker.variant}", "-s", str(speaker.speed_wpm),
           "-p", str(speaker.pitch), "--stdout", pinyin]
    return _run(cmd, None, f"speaking {pinyin!r}")


def apply_channel(wav: bytes, channel: str, params: SynthParams) -> tuple[np.ndarray, int]:
    """sox: wideband resampled to ``wideband_rate``; telephone band-passed and resampled to ``telephone_rate``.

    Returns ``((n_samples,) float32, rate in Hz)``. ``-R`` makes sox repeatable,
    float output means no dither.
    """
    if channel == "telephone":
        lo, hi = params.telephone_band_hz
        rate, effects = params.telephone_rate, ["sinc", f"{lo}-{hi}", "rate", "-v", str(params.telephone_rate)]
    else:
        rate, effects = params.wideband_rate, ["rate", "-v", str(params.wideband_rate)]
    cmd = ["sox", "-R", "-D", "-V1", "-t", "wav", "-", "-t", "f32", "-c", "1", "-"] + effects
    raw = _run(cmd, wav, f"{channel} channel")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32), rate


def active_power(x: np.ndarray, rate: int, floor_db: float = 30.0) -> float:
    """Mean power of the 20 ms frames within ``floor_db`` dB of the loudest frame (speech, not pauses)."""
    frame = max(1, rate // 50)
    n = len(x) // frame
    if n == 0:
        return float(np.mean(x**2)) if len(x) else 0.0
    energy = (x[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    return float(energy[energy >= energy.max() * 10 ** (-floor_db / 10)].mean())


def make_noise(rng: np.random.Generator, n: int, color: str) -> np.ndarray:
    """(n,) float64 noise of unit power: white, or pink (power spectrum ~ 1/f)."""
    white = rng.standard_normal(n)
    if color == "pink":
        spectrum = np.fft.rfft(white)
        spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
        spectrum[0] = 0.0
        white = np.fft.irfft(spectrum, n)
    return white / max(np.sqrt(np.mean(white**2)), 1e-12)


def mulaw(x: np.ndarray, mu: float = 255.0) -> np.ndarray:
    """8-bit mu-law compand and expand (G.711-like quantization noise), values in [-1, 1]."""
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    y = np.round(y * 127.0) / 127.0
    return np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu


def render(speech: np.ndarray, rate: int, call: Call, rng: np.random.Generator, params: SynthParams) -> np.ndarray:
    """Pad with silence, set the speech level, add noise at ``call.snr_db`` dB, companding on telephone.

    A clip whose peak would pass 0.98 is scaled down as a whole instead of clipped.

    ``speech`` is (n,) float32 at ``rate`` Hz; returns (n + padding,) float64 in [-1, 1].
    The SNR is measured on active speech frames against noise over the whole clip;
    noise is added after the channel filter, so telephone noise spans 0-4 kHz.
    """
    lead, trail = (int(rng.uniform(*params.pad_s) * rate) for _ in range(2))
    x = np.concatenate([np.zeros(lead), speech.astype(np.float64), np.zeros(trail)])
    power = active_power(x, rate)
    level = 10 ** (rng.uniform(*params.level_dbfs) / 20)
    x *= level / math.sqrt(max(power, 1e-20))
    noise = make_noise(rng, len(x), call.noise) * level * 10 ** (-call.snr_db / 20)
    x += noise
    x *= min(1.0, 0.98 / max(float(np.abs(x).max()), 1e-12))  # no clipping; the SNR is unchanged
    if call.channel == "telephone" and params.mulaw:
        x = mulaw(x)
    return x
