"""Calibration clips for quantizers that need data (GPTQ): labelled clips from the train split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zhasr.data.audio import load_16k
from zhasr.data.manifest import ManifestRow


def calibration_clips(manifest: list[ManifestRow], dataset: Path, count: int) -> list[tuple[np.ndarray, str]]:
    """(16 kHz audio, reference text) of ``count`` train clips spread evenly over the train split
    (never test or regression clips, which score the export)."""
    train = [r for r in manifest if r.split == "train"]
    if not train:
        raise ValueError(f"{Path(dataset) / 'manifest.jsonl'}: no train clip to calibrate on")
    picked = [train[int(i)] for i in np.linspace(0, len(train) - 1, min(count, len(train)))]
    return [(load_16k(Path(dataset) / r.audio), r.text_norm) for r in picked]
