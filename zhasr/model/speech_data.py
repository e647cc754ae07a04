"""Training windows to Whisper training examples: log-mel features and label token ids."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import WhisperProcessor

from zhasr.model.decode import log_mel
from zhasr.model.training_windows import DECODER_POSITIONS, TIMESTAMP_STEP_S, TrainingWindow


def label_ids(processor: WhisperProcessor, text: str, language: str, task: str, max_tokens: int) -> list[int]:
    """``<|lang|><|task|><|notimestamps|> text <|endoftext|>`` token ids.

    The leading ``<|startoftranscript|>`` is dropped: the model prepends it as
    decoder_start_token_id when it shifts labels right.
    """
    tokenizer = processor.tokenizer
    tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)
    ids = tokenizer(text).input_ids
    if ids and ids[0] == tokenizer.convert_tokens_to_ids("<|startoftranscript|>"):
        ids = ids[1:]
    if len(ids) > max_tokens:
        ids = ids[: max_tokens - 1] + [tokenizer.eos_token_id]
    return ids


def text_tokens(processor: WhisperProcessor) -> Callable[[str], int]:
    """``count(text)``: the tokens a text takes in the labels, without special tokens."""
    return lambda text: len(processor.tokenizer.encode(text, add_special_tokens=False))


def window_label_ids(processor: WhisperProcessor, window: TrainingWindow, language: str, task: str,
                     max_tokens: int, timestamps: bool = True) -> list[int]:
    """A window's labels: a clip alone as ``label_ids`` (at most ``max_tokens``); a packed window as
    Whisper's timestamped layout, ``<|lang|><|task|>`` then ``<|start|> text <|end|>`` a clip (its start,
    and its start plus its duration, at 20 ms), then ``<|endoftext|>``; without ``timestamps``, the clips'
    texts one after the other after ``<|notimestamps|>``."""
    if not window.packed:
        return label_ids(processor, window.rows[0].text_norm, language, task, max_tokens)
    if not timestamps:
        text = "".join(row.text_norm for row in window.rows)
        return label_ids(processor, text, language, task, DECODER_POSITIONS - 1)
    tokenizer = processor.tokenizer
    tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=True)
    first_timestamp, last_step = tokenizer.convert_tokens_to_ids("<|0.00|>"), round(30.0 / TIMESTAMP_STEP_S)

    def timestamp(seconds: float) -> int:
        return first_timestamp + min(last_step, round(seconds / TIMESTAMP_STEP_S))

    ids = list(tokenizer.prefix_tokens[1:])  # <|startoftranscript|> left out, as above
    for row, start in zip(window.rows, window.starts_s):
        ids += [timestamp(start), *tokenizer.encode(row.text_norm, add_special_tokens=False),
                timestamp(start + row.duration_s)]
    return ids[: DECODER_POSITIONS - 2] + [tokenizer.eos_token_id]


class SpeechDataset(Dataset):
    """Items ``{"input_features": (n_mels, 3000) float32, "labels": list[int]}``, one a training window."""

    def __init__(self, windows: list[TrainingWindow], dataset_dir: Path, processor: WhisperProcessor,
                 language: str, task: str, max_label_tokens: int, timestamps: bool = True):
        self.windows, self.dataset_dir, self.processor = windows, Path(dataset_dir), processor
        self.language, self.task, self.max_label_tokens = language, task, max_label_tokens
        self.timestamps = timestamps  # packed windows' labels: with timestamp tokens, or the texts joined

    def __len__(self) -> int:
        return len(self.windows)

    def features(self, window: TrainingWindow) -> torch.Tensor:
        """(n_mels, 3000) log-mel features of the window's audio."""
        return log_mel(self.processor, [window.audio(self.dataset_dir)])[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        window = self.windows[index]
        return {
            "input_features": self.features(window),
            "labels": window_label_ids(self.processor, window, self.language, self.task, self.max_label_tokens,
                                       self.timestamps),
        }


@dataclass(frozen=True)
class SpeechCollator:
    """Stacks features to (batch, n_mels, 3000) and pads labels with -100 to (batch, max_len)."""

    pad_label: int = -100

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        features = torch.stack([item["input_features"] for item in items])
        longest = max(len(item["labels"]) for item in items)
        labels = torch.full((len(items), longest), self.pad_label, dtype=torch.long)
        for i, item in enumerate(items):
            labels[i, : len(item["labels"])] = torch.tensor(item["labels"], dtype=torch.long)
        return {"input_features": features, "labels": labels}
