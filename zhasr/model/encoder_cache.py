"""The cached-encoder training path: the lower encoder layers run once per clip, not once per step.

On a CPU most of a Whisper training step is the encoder running over 1,500
positions (30 s of padded audio). Freezing the lower ``k`` encoder layers lets
their output be computed once and stored; training then runs only the upper
encoder layers (with LoRA), the decoder, and their backward pass. The model
still learns from the audio: the upper encoder layers and the decoder's
cross-attention are adapted.

``UpperEncoder`` takes the place of the encoder during training. It holds the
original submodules under their original names, so adapter weights saved from
it load onto a plain Whisper model.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from transformers import WhisperProcessor
from transformers.modeling_outputs import BaseModelOutput

from zhasr.data.audio import load_16k
from zhasr.data.manifest import atomic_write_bytes
from zhasr.model.decode import log_mel
from zhasr.model.speech_data import SpeechDataset


def cached_layer_count(setting: int, encoder_layers: int, on_gpu: bool) -> int:
    """``train.cached_encoder_layers`` resolved: -1 (auto) is two thirds of the encoder on a CPU (4 of
    whisper-base's 6) and none on a GPU; raises ValueError for more layers than the encoder has."""
    cached = (0 if on_gpu else (2 * encoder_layers) // 3) if setting < 0 else setting
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


@contextlib.contextmanager
def full_encoder(whisper: nn.Module, encoder: nn.Module) -> Iterator[None]:
    """Put the complete ``encoder`` back into ``whisper`` (a WhisperForConditionalGeneration) for decoding.

    Both encoders share their layers, so the adapters trained so far are in effect.
    """
    upper = whisper.model.encoder
    whisper.model.encoder = encoder
    try:
        yield
    finally:
        whisper.model.encoder = upper


def cache_key(model_dir: Path, layers: int, precision: str = "fp32") -> str:
    """Changes when the model's weights, the number of cached layers or the precision they ran in change."""
    weights = sorted(Path(model_dir).glob("*.safetensors")) or sorted(Path(model_dir).glob("*.bin"))
    stamp = "|".join(f"{w.resolve()}:{w.stat().st_size}:{w.stat().st_mtime_ns}" for w in weights)
    return hashlib.sha256(f"{stamp}|layers={layers}|{precision}".encode()).hexdigest()[:16]


def fill_cache(encoder: nn.Module, processor: WhisperProcessor, rows: list[dict[str, Any]], dataset_dir: Path,
               cache_dir: Path, layers: int, batch_size: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> int:
    """Compute and store the lower-encoder output of every row not yet cached; returns how many were computed.

    One file per clip, ``<cache_dir>/<audio stem>.pt``: (1500, d_model) float16. ``batch_size``: clips a
    forward pass, by default 8 on a GPU and 1 on a CPU (faster a clip there: the activations stay in cache).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    missing = [r for r in rows if not cached_path(cache_dir, r).is_file()]
    device = next(encoder.parameters()).device
    dtype = next(encoder.parameters()).dtype
    batch_size = batch_size or (1 if device.type == "cpu" else 8)
    for start in range(0, len(missing), batch_size):
        batch = missing[start : start + batch_size]
        clips = [load_16k(Path(dataset_dir) / r["audio"]) for r in batch]
        features = log_mel(processor, clips)
        hidden = lower_hidden_states(encoder, features.to(device, dtype), layers).to("cpu", torch.float16)
        for row, tensor in zip(batch, hidden):
            buffer = io.BytesIO()
            torch.save(tensor.clone(), buffer)  # clone: a view would save the whole batch
            atomic_write_bytes(cached_path(cache_dir, row), buffer.getvalue())
        if progress:
            progress(min(start + batch_size, len(missing)), len(missing))
    return len(missing)


def cached_path(cache_dir: Path, row: dict[str, Any]) -> Path:
    return Path(cache_dir) / f"{Path(row['audio']).stem}.pt"


class CachedSpeechDataset(SpeechDataset):
    """Items ``{"input_features": (1500, d_model) float32 lower-encoder output, "labels": list[int]}``.

    ``dataset_dir`` is the cache folder filled by ``fill_cache``.
    """

    def features(self, row: dict[str, Any]) -> torch.Tensor:
        return torch.load(cached_path(self.dataset_dir, row), weights_only=True).float()
