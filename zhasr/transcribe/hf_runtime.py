"""The transformers runtime: a Hugging Face Whisper folder (or a loaded model with its adapter), batched."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zhasr.decode import DecodeOptions, Transcript, transcribe


class TransformersRuntime:
    name = "transformers"

    def __init__(self, model, processor, options: DecodeOptions):
        self.model, self.processor, self.options = model, processor, options

    @classmethod
    def open(cls, model_dir: Path, options: DecodeOptions, device=None) -> TransformersRuntime:
        from zhasr.models import load_model

        model, processor = load_model(Path(model_dir), device=device)
        return cls(model, processor, options)

    def decode(self, clips: list[np.ndarray], prompt: str | None = None) -> list[Transcript]:
        """One Transcript per (n,) 16 kHz clip of at most 30 s, in order; a failing batch is marked, not raised."""
        out = []
        size = self.options.batch_size
        for start in range(0, len(clips), size):
            batch = clips[start : start + size]
            try:
                out += transcribe(self.model, self.processor, batch, self.options, prompt=prompt)
            except (RuntimeError, ValueError) as exc:
                out += [Transcript("", [], False, False, error=f"transformers: {exc}")] * len(batch)
        return out
