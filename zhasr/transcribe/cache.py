"""Decodings kept per clip, so that a model is decoded once per clip for its lifetime.

An entry is keyed by everything that decides the decoding: the model's weights
(sha256 of its weight files), the audio (sha256 of the 16 kHz samples), the
engine (runtime and library versions) and the options (decoding options and the
engine's settings). Entries live under ``<root>/<digest[:2]>/<digest>.json`` and
hold their key; one whose stored key differs from the key asked for, or that does
not parse, is ignored and decoded again, never trusted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from zhasr.config import TranscribeParams
from zhasr.data.manifest import atomic_write_json
from zhasr.model.decode import DecodeOptions
from zhasr.transcribe.engine import Transcriber
from zhasr.transcribe.records import Transcription

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
_RUNTIME_PACKAGES = {"transformers": ("transformers", "torch"), "ct2": ("ctranslate2",), "ggml": ("pywhispercpp",)}


@dataclass(frozen=True)
class DecodeKey:
    weights: str  # sha256 of the model's weight files (see weights_digest)
    audio: str  # sha256 of the (n_samples,) float32 16 kHz samples
    engine: str  # runtime and library versions, e.g. "transformers transformers=5.23.0 torch=2.13.0"
    options: str  # canonical JSON of the decoding options and the engine's settings

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def weights_digest(*folders: Path) -> str:
    """sha256 over the names and bytes of every weight file in ``folders`` (a model, then its adapter)."""
    h = hashlib.sha256()
    for folder in folders:
        files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"{folder}: no weight file ({', '.join(WEIGHT_SUFFIXES)}) to identify the model")
        for path in files:
            h.update(path.relative_to(folder).as_posix().encode() + b"\0")
            with path.open("rb") as handle:
                h.update(hashlib.file_digest(handle, "sha256").digest())
    return h.hexdigest()


def audio_digest(samples: np.ndarray) -> str:
    """sha256 of the float32 samples; of a call's channels (2-D), of their shape too (two channels of n samples
    are not one of 2n)."""
    digest = hashlib.sha256(np.ascontiguousarray(samples, dtype=np.float32).tobytes())
    if np.ndim(samples) > 1:
        digest.update(repr(np.shape(samples)).encode())
    return digest.hexdigest()


def engine_key(runtime: str, decode: DecodeOptions | None, settings: TranscribeParams, language: str,
               encoder: str = "") -> tuple[str, str]:
    """``(engine, options)`` as they enter the key: the runtime with its library versions (and ``encoder``,
    how its encoder runs where that is not the runtime's own), and the canonical JSON of the decoding
    options, the engine's settings and the language. Known before any model loads."""
    versions = " ".join(f"{p}={metadata.version(p)}" for p in _RUNTIME_PACKAGES.get(runtime, ()))
    options = {"settings": asdict(settings), "decode": decode.key() if decode is not None else None,
               "language": language}
    engine = " ".join(part for part in (runtime, versions, f"[{encoder}]" if encoder else "") if part)
    return engine, json.dumps(options, sort_keys=True, default=str)


def engine_of(transcriber: Transcriber) -> tuple[str, str]:
    """``engine_key`` of an open zhasr.transcribe.Transcriber."""
    return engine_key(transcriber.runtime_name, getattr(transcriber.runtime, "options", None), transcriber.params,
                      transcriber.language)


class DecodeCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: DecodeKey) -> Path:
        digest = key.digest
        return self.root / digest[:2] / f"{digest}.json"

    def get(self, key: DecodeKey) -> Transcription | None:
        """The stored decoding, or None when there is none or the entry does not match ``key``."""
        path = self._path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            if entry["key"] != asdict(key):
                return None
            return Transcription.from_dict(entry["transcription"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: DecodeKey, transcription: Transcription) -> None:
        atomic_write_json(self._path(key), {"key": asdict(key), "transcription": asdict(transcription)})


@dataclass(frozen=True)
class CachedDecoding:
    transcriptions: list[Transcription]  # one per clip, in order
    hits: int  # clips answered from the cache
    misses: int  # clips decoded now


def transcribe_cached(transcriber: Transcriber | Callable[[], Transcriber], clips: list[np.ndarray],
                      cache: DecodeCache, weights: str, engine: tuple[str, str] | None = None,
                      identity: str | None = None,
                      progress: Callable[[float, float], None] | None = None) -> CachedDecoding:
    """``transcriber.transcribe_many`` (channels mixed) on the clips the cache does not hold; the rest
    from the cache. Every decoding is labelled ``identity`` (default: the transcriber's). New decodings
    are stored.

    ``transcriber`` may be a function that opens one, given its ``engine`` key (``engine_key``) and
    ``identity``: it is called only when some clip is missing, so a model whose decodings are all
    cached is never loaded."""
    if isinstance(transcriber, Transcriber):
        engine, identity = engine or engine_of(transcriber), identity or transcriber.identity
    elif engine is None or identity is None:
        raise ValueError("transcribe_cached: a transcriber not yet open needs its engine key and identity")
    keys = [DecodeKey(weights, audio_digest(c), *engine) for c in clips]
    found = [cache.get(k) for k in keys]
    missing = [i for i, t in enumerate(found) if t is None]
    if missing:
        opened = transcriber if isinstance(transcriber, Transcriber) else transcriber()
        decoded = opened.transcribe_many([clips[i] for i in missing], channels="mix", progress=progress)
        for i, t in zip(missing, decoded):
            cache.put(keys[i], t)
            found[i] = t
    out = [t if t.model == identity else replace(t, model=identity) for t in found]
    return CachedDecoding(out, len(clips) - len(missing), len(missing))
