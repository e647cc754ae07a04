"""Word timestamps from cross-attention alignment, the way Whisper and faster-whisper compute them.

A forced decoder pass over the kept tokens gives the alignment heads' attention over the encoder's
frames (50 a second); dynamic time warping maps each token to the frame where it starts. Chinese
has no spaces, so a "word" is what the tokens spell once they form whole characters (usually one
character, sometimes a few). Times are seconds from the start of the piece.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from zhasr.data.text import to_simplified
from zhasr.transcribe.records import Word

FRAMES_PER_S = 50  # encoder frames a second (20 ms each)


def split_on_characters(tokens: Sequence[int], decode: Callable[[list[int]], str]) -> list[tuple[str, list[int]]]:
    """``[(text, token ids)]``: tokens grouped until they decode to whole characters (no U+FFFD)."""
    groups, current = [], []
    for token in tokens:
        current.append(token)
        text = decode(current)
        if "\ufffd" not in text:
            groups.append((text, current))
            current = []
    if current:
        groups.append((decode(current).replace("\ufffd", ""), current))
    return groups


def timed_words(groups: list[tuple[str, list[int]]], text_indices: np.ndarray, time_indices: np.ndarray,
                token_probs: Sequence[float], duration_s: float) -> tuple[Word, ...]:
    """Words with start/end from a DTW path whose rows are ``[<|notimestamps|>, *text tokens]``.

    ``text_indices`` / ``time_indices``: the path, one entry per step; ``token_probs``: P(token) for
    each text token; times are clipped to [0, ``duration_s``].
    """
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / FRAMES_PER_S
    bounds = np.pad(np.cumsum([len(ids) for _, ids in groups]), (1, 0))
    words = []
    for k, (text, _) in enumerate(groups):
        i, j = int(bounds[k]), int(bounds[k + 1])
        if not text.strip():
            continue
        start = max(0.0, float(jump_times[min(i, len(jump_times) - 1)]))  # ct2's path of a clip under 20 ms says -1
        end = float(jump_times[min(j, len(jump_times) - 1)]) if j < len(jump_times) else duration_s
        probs = token_probs[i:j]
        words.append(Word(start=round(min(start, duration_s), 3), end=round(min(max(end, start), duration_s), 3),
                          word=to_simplified(text.strip()),
                          probability=round(float(np.mean(probs)), 4) if len(probs) else None))
    return tuple(words)


def dtw_path(attention: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(text_indices, time_indices) through ``attention`` (heads, tokens, frames) of the alignment heads,
    normalized per frame, median-filtered (width 7) and averaged over heads, as Whisper does."""
    import torch
    from transformers.models.whisper.generation_whisper import _dynamic_time_warping, _median_filter

    weights = torch.from_numpy(attention).float()
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = _median_filter((weights - mean) / (std + 1e-6), 7)
    return _dynamic_time_warping(-weights.mean(dim=0).numpy())
