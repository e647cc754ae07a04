"""Telephone augmentation of training clips through the codec family of ``zhasr.data.codecs``.

A share of the wideband training clips is sent through one telephone channel each (G.711, AMR-NB,
lossy AMR-NB ...). A hash of the clip's audio picks whether and which, so a clip sounds the same in
every epoch and every round, and its cached lower-encoder states stay valid. The channel's output is
written once, outside the dataset: ``<out_dir>/<sha256>.<codec>.wav``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from zhasr.data.audio import TARGET_RATE, load_16k, wav_bytes
from zhasr.data.codecs import telephone
from zhasr.data.manifest import ManifestRow, atomic_write_bytes


def _unit(key: str) -> float:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def chosen_codec(audio_sha256: str, codecs: Sequence[str], fraction: float, seed: int = 0) -> str | None:
    """The codec a clip goes through, or None: ``fraction`` of the clips, each codec equally often."""
    if not codecs or _unit(f"augment:{seed}:{audio_sha256}") >= fraction:
        return None
    return codecs[int(_unit(f"codec:{seed}:{audio_sha256}") * len(codecs))]


def _through(row: ManifestRow, codec: str, dataset_dir: Path, out_dir: Path) -> ManifestRow:
    """``row`` as heard through ``codec``: its audio written once to ``<out_dir>/<sha256>.<codec>.wav``."""
    path = Path(out_dir) / f"{row.audio_sha256}.{codec}.wav"
    if not path.is_file():
        heard = telephone(load_16k(Path(dataset_dir) / row.audio), codec, TARGET_RATE)
        atomic_write_bytes(path, wav_bytes(heard, TARGET_RATE))
    return replace(row, audio=str(path.resolve()), band="telephone", codec=codec)


def telephone_augmented(rows: Sequence[ManifestRow], dataset_dir: Path, out_dir: Path, codecs: Sequence[str],
                        fraction: float, seed: int = 0, twins: bool = False) -> list[ManifestRow]:
    """``rows`` with the chosen wideband clips replaced by their telephone versions (with ``twins``: kept, their
    telephone versions added): ``audio`` an absolute path under ``out_dir`` (written when missing), ``band``
    telephone, ``codec`` the channel. Clips already narrowband are kept as they are."""
    out = []
    for row in rows:
        codec = chosen_codec(row.audio_sha256, codecs, fraction, seed) if row.band == "wideband" else None
        if codec is None or twins:
            out.append(row)
        if codec is not None:
            out.append(_through(row, codec, dataset_dir, out_dir))
    return out


def every_channel(rows: Sequence[ManifestRow], dataset_dir: Path, out_dir: Path,
                  codecs: Sequence[str]) -> list[ManifestRow]:
    """Each row as it is and, when wideband, once more through every codec of ``codecs`` (same text)."""
    out = []
    for row in rows:
        out.append(row)
        if row.band == "wideband":
            out.extend(_through(row, codec, dataset_dir, out_dir) for codec in codecs)
    return out
