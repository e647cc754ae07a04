"""Whisper's encoder for scoring many models on the same clips: the lower layers' output kept per window.

A candidate trained on the cached-encoder path (zhasr.model.encoder_cache) leaves the lower ``k``
encoder layers as the base model has them, and so do the champion and the base model: for a given
30-s window, all of them compute the same (1500, d_model) states there. Those states are stored once,
keyed by a digest of the lower layers' weights and of the window's log-mel features, and each model
then runs only its own upper layers. A model whose lower layers differ gets its own digest, so it is
never handed another model's states.

Measured on 2 CPU cores with whisper-base (k = 4 of 6): the upper layers take 0.22 s a window, the
whole encoder in CTranslate2 0.58 s; states stored in float16 gave the same text as CTranslate2's own
float32 encoder on all 41 test pieces. A window's entry takes 1.5 MB.
"""

from __future__ import annotations

import hashlib
import io
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from zhasr.data.manifest import atomic_write_bytes
from zhasr.model.encoder_cache import UpperEncoder, lower_hidden_states

STORED_DTYPE = np.dtype(np.float16)


def describe(layers: int) -> str:
    """What decides the encoder's output beyond the weights, for a decode-cache key."""
    return (f"torch={torch.__version__} transformers={metadata.version('transformers')} encoder, "
            f"lower {layers} layers shared and stored as {STORED_DTYPE}")


def lower_layers_digest(encoder: torch.nn.Module, layers: int) -> str:
    """sha256 over the libraries that run them and the names and float32 bytes of the convolutions,
    positions and first ``layers`` layers of a Whisper encoder: equal for every model that shares them."""
    lower = ("conv1.", "conv2.", "embed_positions.", *(f"layers.{i}." for i in range(layers)))
    h = hashlib.sha256(describe(layers).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        if name.startswith(lower):
            h.update(name.encode() + b"\0")
            h.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


class SharedLowerEncoder:
    """A Whisper encoder (CPU, float32) whose lower ``layers`` layers' output is read from ``store`` when
    some model sharing them has computed it, and written there otherwise.

    ``hits`` and ``misses`` count windows read from the store and computed.
    """

    def __init__(self, model_dir: Path, layers: int, store: Path):
        from transformers import WhisperForConditionalGeneration

        encoder = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).model.encoder
        if not 0 < layers <= encoder.config.encoder_layers:
            raise ValueError(f"{model_dir}: {layers} shared encoder layers; the encoder has "
                             f"{encoder.config.encoder_layers}")
        self.encoder, self.layers = encoder.eval(), layers
        self.upper = UpperEncoder(self.encoder, layers)
        self.folder = Path(store) / lower_layers_digest(self.encoder, layers)[:16]
        self.hits = self.misses = 0

    def _entry(self, window: np.ndarray) -> Path:
        return self.folder / f"{hashlib.sha256(np.ascontiguousarray(window, np.float32).tobytes()).hexdigest()}.npy"

    def _lower(self, window: np.ndarray) -> torch.Tensor:
        """(n_mels, 3000) features -> (1, 1500, d_model) float32 output of the lower layers."""
        path = self._entry(window)
        expected = (self.encoder.config.max_source_positions, self.encoder.config.d_model)
        try:
            stored = np.load(path, allow_pickle=False)
            if stored.shape == expected and stored.dtype == STORED_DTYPE:
                self.hits += 1
                return torch.from_numpy(stored).float()[None]
        except (OSError, ValueError, EOFError):
            pass  # absent or unreadable: computed again, never trusted
        self.misses += 1
        states = lower_hidden_states(self.encoder, torch.from_numpy(window)[None], self.layers).numpy()[0]
        stored = states.astype(STORED_DTYPE)
        buffer = io.BytesIO()
        np.save(buffer, stored, allow_pickle=False)
        atomic_write_bytes(path, buffer.getvalue())
        return torch.from_numpy(stored).float()[None]  # as a later read sees it: no decoding depends on the order

    @torch.inference_mode()
    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(batch, n_mels, 3000) float32 log-mel features -> (batch, 1500, d_model) float32 encoder output,
        one window at a time (faster a window on a CPU: the activations stay in cache)."""
        return torch.cat([self.upper(self._lower(window)).last_hidden_state for window in features]).numpy()
