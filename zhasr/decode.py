"""Batched Whisper transcription of 16 kHz clips, with a token cap tied to duration."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from zhasr.text import to_simplified


@dataclass(frozen=True)
class DecodeOptions:
    language: str = "zh"
    task: str = "transcribe"
    batch_size: int = 8  # clips per generate() call
    max_new_tokens: int = 96  # hard cap per clip
    tokens_per_second: float = 12.0  # cap scales with audio: Mandarin ~4-6 chars/s, <= 2 tokens a char
    num_beams: int = 1  # 1 = greedy


@dataclass(frozen=True)
class Transcript:
    text: str  # simplified Chinese, repetition loops collapsed
    tokens: list[int]  # prompt and generated ids, special tokens and padding included
    hit_cap: bool  # stopped by the token cap, not by <|endoftext|>
    looped: bool  # a repetition loop was found and collapsed


# Whisper's typical loop: a unit of 2-20 characters three or more times in a row, or one
# character five or more times ("哈哈哈" and "谢谢谢谢" are speech, not loops).
_LOOP = re.compile(r"(.{2,20}?)\1{2,}|(.)\2{4,}")


def collapse_loops(text: str) -> tuple[str, bool]:
    """``("好的五十九五十九五十九五十九", True)`` -> ``("好的五十九", True)``: keep one copy of each loop."""
    collapsed = _LOOP.sub(lambda m: m.group(1) or m.group(2), text)
    return collapsed, collapsed != text


def token_cap(duration_s: float, options: DecodeOptions) -> int:
    """New-token budget for a clip of ``duration_s`` seconds."""
    return max(8, min(options.max_new_tokens, math.ceil(duration_s * options.tokens_per_second) + 8))


@torch.inference_mode()
def transcribe(model, processor, clips: list[np.ndarray], options: DecodeOptions,
               progress: Callable[[int, int], None] | None = None) -> list[Transcript]:
    """One Transcript per clip; ``clips`` are (n_samples,) float32 at 16 kHz, each <= 30 s."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    eos = processor.tokenizer.eos_token_id
    out: list[Transcript] = []
    for start in range(0, len(clips), options.batch_size):
        batch = clips[start : start + options.batch_size]
        features = processor.feature_extractor(batch, sampling_rate=16000, return_tensors="pt").input_features
        cap = token_cap(max(len(c) for c in batch) / 16000, options)
        # return_dict_in_generate keeps the prompt and <|endoftext|>, which plain generate() strips.
        generated = model.generate(
            input_features=features.to(device, dtype), language=options.language, task=options.task,
            max_new_tokens=cap, num_beams=options.num_beams, do_sample=False, return_dict_in_generate=True,
        )
        for row in generated.sequences.tolist():
            finished = eos in row
            text, looped = collapse_loops(to_simplified(processor.tokenizer.decode(row, skip_special_tokens=True).strip()))
            out.append(Transcript(text=text, tokens=row, hit_cap=not finished, looped=looped))
        if progress:
            progress(len(out), len(clips))
    return out


def real_time_factor(decode_seconds: float, audio_seconds: float) -> float:
    """Decode time divided by audio duration (below 1 is faster than real time)."""
    return decode_seconds / audio_seconds if audio_seconds > 0 else float("nan")


class Stopwatch:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
