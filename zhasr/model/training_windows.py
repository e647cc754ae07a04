"""Training windows: the clips one 30-s encoder pass learns from.

Whisper's encoder reads 30 s whatever it is given, so a 4-s clip alone in a window is ~85% padding.
Packed (``train.pack_window_s`` > 0), clips of one channel follow each other in a window, ``pack_gap_s``
of silence between them, while the audio stays within ``pack_window_s`` and the labels within the
decoder's 448 positions. A packed window's labels (``zhasr.model.speech_data.window_label_ids``) are its
clips' texts one after the other, or with ``train.pack_timestamps`` Whisper's pretraining layout:
``<|zh|><|transcribe|><|0.00|> text <|4.20|><|4.70|> text <|9.10|> ... <|endoftext|>``. Unpacked, each clip
is a window of its own with ``<|notimestamps|>`` labels.

Which clips share a window is drawn once with the seed, so a window's cached lower-encoder states stay
valid across epochs and a resumed run packs the same windows.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zhasr.data.audio import TARGET_RATE, load_16k
from zhasr.data.manifest import ManifestRow

TIMESTAMP_STEP_S = 0.02  # Whisper's timestamp tokens step by 20 ms
# <|startoftranscript|> is not in the labels (the model prepends it), so labels may use all but one position
DECODER_POSITIONS = 448


@dataclass(frozen=True)
class TrainingWindow:
    """Clips decoded from one encoder window: ``rows[i]`` starts ``starts_s[i]`` seconds into it."""

    rows: tuple[ManifestRow, ...]
    starts_s: tuple[float, ...]  # multiples of TIMESTAMP_STEP_S; (0.0,) for a clip alone
    packed: bool  # a packed round's window (even one holding a single clip): labelled in the packed layout

    @property
    def key(self) -> str:
        """File stem of the window's cached states: an unpacked clip keeps its audio's stem."""
        if not self.packed:
            return Path(self.rows[0].audio).stem
        # the audio file's stem, not the clip's hash: a clip sent through a telephone codec is another file
        members = "|".join(f"{Path(r.audio).stem}@{s:.2f}" for r, s in zip(self.rows, self.starts_s))
        return "window-" + hashlib.sha256(members.encode()).hexdigest()[:24]

    def audio(self, dataset_dir: Path) -> np.ndarray:
        """The window's 16 kHz float32 samples: each clip at its start, silence between."""
        clips = [load_16k(Path(dataset_dir) / r.audio) for r in self.rows]
        if not self.packed:
            return clips[0]
        offsets = [round(s * TARGET_RATE) for s in self.starts_s]
        out = np.zeros(max(o + len(c) for o, c in zip(offsets, clips)), dtype=np.float32)
        for offset, clip in zip(offsets, clips):
            out[offset : offset + len(clip)] = clip
        return out


def _aligned(seconds: float) -> float:
    return round(math.ceil(seconds / TIMESTAMP_STEP_S - 1e-6) * TIMESTAMP_STEP_S, 2)


def channel_of(row: ManifestRow) -> str:
    """Clips of one channel share windows: a window never switches from wideband to a codec mid-way."""
    return row.codec or row.band


def single_windows(rows: Sequence[ManifestRow]) -> list[TrainingWindow]:
    return [TrainingWindow((row,), (0.0,), packed=False) for row in rows]


def pack_rows(rows: Sequence[ManifestRow], window_s: float, gap_s: float, label_tokens: Callable[[str], int],
              seed: int = 0) -> list[TrainingWindow]:
    """Windows over ``rows``: clips of one channel in an order drawn with ``seed``, each window filled while
    its audio fits in ``window_s`` seconds and its labels (``label_tokens(text)`` tokens a clip, plus two
    timestamps) in the decoder. A clip longer than ``window_s`` has a window of its own."""
    groups: dict[str, list[ManifestRow]] = {}
    for row in rows:
        groups.setdefault(channel_of(row), []).append(row)
    windows = []
    for channel in sorted(groups):
        members = sorted(groups[channel], key=lambda r: r.id)
        random.Random(f"{seed}:{channel}").shuffle(members)
        current: list[ManifestRow] = []
        starts: list[float] = []
        end_s, tokens = 0.0, 4  # <|lang|><|task|> ... <|endoftext|> and one spare
        for row in members:
            start = _aligned(end_s + gap_s) if current else 0.0  # a timestamp token marks it exactly
            need = label_tokens(row.text_norm) + 2
            if current and (start + row.duration_s > window_s or tokens + need > DECODER_POSITIONS - 1):
                windows.append(TrainingWindow(tuple(current), tuple(starts), packed=True))
                current, starts, start, tokens = [], [], 0.0, 4
            current.append(row)
            starts.append(start)
            end_s, tokens = start + row.duration_s, tokens + need
        if current:
            windows.append(TrainingWindow(tuple(current), tuple(starts), packed=True))
    return windows
