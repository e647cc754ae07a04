"""Manifest rows to Whisper training examples: log-mel features and label token ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import WhisperProcessor

from zhasr.data.audio import load_16k
from zhasr.model.decode import log_mel


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


class SpeechDataset(Dataset):
    """Items ``{"input_features": (80, 3000) float32, "labels": list[int]}`` from manifest rows."""

    def __init__(self, rows: list[dict[str, Any]], dataset_dir: Path, processor: WhisperProcessor,
                 language: str, task: str, max_label_tokens: int):
        self.rows, self.dataset_dir, self.processor = rows, Path(dataset_dir), processor
        self.language, self.task, self.max_label_tokens = language, task, max_label_tokens

    def __len__(self) -> int:
        return len(self.rows)

    def features(self, row: dict[str, Any]) -> torch.Tensor:
        """(80, 3000) log-mel features of the row's audio."""
        samples = load_16k(self.dataset_dir / row["audio"])
        return log_mel(self.processor, [samples])[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        return {
            "input_features": self.features(row),
            "labels": label_ids(self.processor, row["text_norm"], self.language, self.task, self.max_label_tokens),
        }


@dataclass(frozen=True)
class SpeechCollator:
    """Stacks features to (batch, 80, 3000) and pads labels with -100 to (batch, max_len)."""

    pad_label: int = -100

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        features = torch.stack([item["input_features"] for item in items])
        longest = max(len(item["labels"]) for item in items)
        labels = torch.full((len(items), longest), self.pad_label, dtype=torch.long)
        for i, item in enumerate(items):
            labels[i, : len(item["labels"])] = torch.tensor(item["labels"], dtype=torch.long)
        return {"input_features": features, "labels": labels}
