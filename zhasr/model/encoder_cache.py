"""The cached-encoder training path: the lower encoder layers run once per training window, not once per step.

On a CPU most of a Whisper training step is the encoder running over 1,500
positions (30 s of padded audio). Freezing the lower ``k`` encoder layers lets
their output be computed once and stored; training then runs only the upper
encoder layers (with LoRA), the decoder, and their backward pass. The model
still learns from the audio: the upper encoder layers and the decoder's
cross-attention are adapted.

``UpperEncoder`` takes the place of the encoder during training, and during the
dev evaluations, which decode the dev clips from their cached states too. It
holds the original submodules under their original names, so adapter weights
saved from it load onto a plain Whisper model.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import WhisperProcessor
from transformers.modeling_outputs import BaseModelOutput

from zhasr.data.manifest import atomic_write_bytes
from zhasr.model.decode import log_mel
from zhasr.model.speech_data import SpeechDataset
from zhasr.model.training_windows import TrainingWindow


def cached_layer_count(setting: int, encoder_layers: int, on_gpu: bool) -> int:
    """``train.cached_encoder_layers`` resolved: -1 (auto) is half the encoder on a CPU (3 of whisper-base's
    6) and none on a GPU; raises ValueError for more layers than the encoder has."""
    cached = (0 if on_gpu else encoder_layers // 2) if setting < 0 else setting
    if not 0 <= cached <= encoder_layers:
        raise ValueError(f"train.cached_encoder_layers={setting}: the model has {encoder_layers} encoder layers")
    return cached


@torch.inference_mode()
def lower_hidden_states(encoder: nn.Module, input_features: torch.Tensor, layers: int) -> torch.Tensor:
    """(batch, n_mels, 3000) log-mel features -> (batch, 1500, d_model) output of encoder layer ``layers - 1``.

    The same arithmetic as ``WhisperEncoder.forward`` up to that layer (dropout is off).
    """
    hidden = nn.functional.gelu(encoder.conv1(input_features))
    hidden = nn.functional.gelu(encoder.conv2(hidden)).permute(0, 2, 1)
    hidden = hidden + encoder.embed_positions.weight
    for layer in encoder.layers[:layers]:
        hidden = layer(hidden, None)
    return hidden


class UpperEncoder(nn.Module):
    """Whisper encoder that starts at layer ``first_layer``.

    ``input_features`` are (batch, 1500, d_model) hidden states from ``lower_hidden_states``.
    """

    def __init__(self, encoder: nn.Module, first_layer: int):
        super().__init__()
        self.config = encoder.config
        self.conv1, self.conv2, self.embed_positions = encoder.conv1, encoder.conv2, encoder.embed_positions
        self.layers, self.layer_norm = encoder.layers, encoder.layer_norm
        self.first_layer = first_layer

    def forward(self, input_features: torch.Tensor, **kwargs: Any) -> BaseModelOutput:
        hidden = input_features
        for layer in self.layers[self.first_layer:]:
            hidden = layer(hidden, None)
        return BaseModelOutput(last_hidden_state=self.layer_norm(hidden))


def cache_key(model_dir: Path, layers: int, precision: str = "fp32") -> str:
    """Changes when the model's weights, the number of cached layers or the precision they ran in change."""
    weights = sorted(Path(model_dir).glob("*.safetensors")) or sorted(Path(model_dir).glob("*.bin"))
    stamp = "|".join(f"{w.resolve()}:{w.stat().st_size}:{w.stat().st_mtime_ns}" for w in weights)
    return hashlib.sha256(f"{stamp}|layers={layers}|{precision}".encode()).hexdigest()[:16]


def fill_cache(encoder: nn.Module, processor: WhisperProcessor, windows: list[TrainingWindow], dataset_dir: Path,
               cache_dir: Path, layers: int, batch_size: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> int:
    """Compute and store the lower-encoder output of every training window not yet cached; returns how many
    were computed.

    One file per window, ``<cache_dir>/<window key>.pt``: (1500, d_model) float16. ``batch_size``: windows a
    forward pass, by default 8 on a GPU and 1 on a CPU (faster a window there: the activations stay in cache).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    missing = [w for w in windows if not cached_path(cache_dir, w).is_file()]
    device = next(encoder.parameters()).device
    dtype = next(encoder.parameters()).dtype
    batch_size = batch_size or (1 if device.type == "cpu" else 8)
    for start in range(0, len(missing), batch_size):
        batch = missing[start : start + batch_size]
        features = log_mel(processor, [w.audio(dataset_dir) for w in batch])
        hidden = lower_hidden_states(encoder, features.to(device, dtype), layers).to("cpu", torch.float16)
        for window, tensor in zip(batch, hidden):
            buffer = io.BytesIO()
            torch.save(tensor.clone(), buffer)  # clone: a view would save the whole batch
            atomic_write_bytes(cached_path(cache_dir, window), buffer.getvalue())
        if progress:
            progress(min(start + batch_size, len(missing)), len(missing))
    return len(missing)


def cached_path(cache_dir: Path, window: TrainingWindow) -> Path:
    return Path(cache_dir) / f"{window.key}.pt"


def load_states(cache_dir: Path, window: TrainingWindow) -> torch.Tensor:
    """(1500, d_model) float32: the window's lower-encoder output as ``fill_cache`` stored it."""
    return torch.load(cached_path(cache_dir, window), weights_only=True).float()


class CachedSpeechDataset(SpeechDataset):
    """Items ``{"input_features": (1500, d_model) float32 lower-encoder output, "labels": list[int]}``.

    ``dataset_dir`` is the cache folder filled by ``fill_cache``.
    """

    def features(self, window: TrainingWindow) -> torch.Tensor:
        return load_states(self.dataset_dir, window)


class CachedStates(Sequence):
    """The lower-encoder states of ``windows``, read from ``cache_dir`` when indexed (a slice: a list)."""

    def __init__(self, cache_dir: Path, windows: list[TrainingWindow]):
        self.cache_dir, self.windows = Path(cache_dir), windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return load_states(self.cache_dir, self.windows[index])
