"""Slices of an evaluation set: which batch, channel band, noise level and speaker each clip belongs to,
and whether its sentence (the template or topic a clip was labelled with) was ever trained on.

The noise level is estimated from the audio itself, so it exists for any data:
the ratio of loud to quiet frame energy (90th over 10th percentile of 25 ms
frames) approximates the SNR when a clip has pauses, as call-center turns do.
On the synthetic batch it reads 3-6 dB above the SNR the noise was mixed at
(15 dB -> 18-20, 20 -> 24-25, 30 -> 30-36), hence the thresholds below.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from zhasr.data.manifest import ManifestRow
from zhasr.evaluation.metrics import UtteranceEdits

SLICE_KINDS = ("batch", "band", "noise", "speaker", "sentence")
NOISE_LEVELS = ((28.0, "clean"), (22.0, "moderate"), (float("-inf"), "noisy"))  # (lowest SNR in dB, name)


def estimate_snr_db(samples: np.ndarray, rate: int = 16000, frame_s: float = 0.025) -> float:
    """dB; ``samples`` is (n_samples,) float audio. Digital silence and clips shorter than 10 frames give 0."""
    n = int(rate * frame_s)
    frames = len(samples) // n
    if frames < 10:
        return 0.0
    power = np.square(samples[: frames * n].astype(np.float64)).reshape(frames, n).mean(axis=1)
    quiet, loud = np.percentile(power, [10, 90])
    if loud <= 0:
        return 0.0
    return float(10 * np.log10(loud / max(quiet, 1e-12)))


def noise_level(snr_db: float) -> str:
    return next(name for floor, name in NOISE_LEVELS if snr_db >= floor)


def sentence_label(row: ManifestRow, trained_templates: set[str]) -> str:
    """``"unseen"`` when the row's template never reached training, ``"seen"`` when it did, ``"unknown"``
    for a row without a template."""
    if not row.template:
        return "unknown"
    return "seen" if row.template in trained_templates else "unseen"


def slice_labels(row: ManifestRow, snr_db: float, trained_templates: set[str] = frozenset()) -> dict[str, str]:
    """``{"batch": ..., "band": "telephone"|"wideband", "noise": "clean"|"moderate"|"noisy", "speaker": ...,
    "sentence": "seen"|"unseen"|"unknown"}``; ``trained_templates``: templates of the train and dev splits."""
    return {"batch": row.batch, "band": row.band, "noise": noise_level(snr_db),
            "speaker": row.speaker, "sentence": sentence_label(row, trained_templates)}


def slice_error_rates(labels: list[dict[str, str]], edits: list[UtteranceEdits]) -> dict[tuple[str, str], tuple[float, int]]:
    """``{(kind, value): (corpus CER of the slice, clips)}`` for every slice of every kind the labels have."""
    errors: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for label, e in zip(labels, edits):
        for kind in (k for k in SLICE_KINDS if k in label):
            entry = errors[(kind, label[kind])]
            entry[0] += e.errors
            entry[1] += e.reference_len
            entry[2] += 1
    return {key: (err / n, clips) for key, (err, n, clips) in errors.items()}
