"""SpecAugment-style time masks on what the encoder is fed during training.

Spans of frames are set to zero, so the adapted layers learn to read speech around a gap instead of
leaning on every frame of the channels they were trained through. On the plain path the frames are
log-mel frames (10 ms; features (batch, n_mels, 3000)); on the cached path (``zhasr.model.encoder_cache``)
they are the lower encoder layers' output positions (20 ms; states (batch, 1500, d_model)), the earliest
place a step can still change. Masked frames are zero, as in Hugging Face's ``apply_spec_augment``: on
log-mel features that is a moderate level, not silence, and on cached states it also removes the position
signal the lower layers carry. Spans fall on a packed window's padding too, so less speech than ``share``
is masked. Measured on the demo and not kept (docs/forgetting.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TimeMask:
    share: float = 0.0  # about this share of each item's frames is zeroed (spans may overlap: a little less)
    frames: int = 10  # frames a span
    time_axis: int = 2  # 2: log-mel features; 1: cached lower-layer states

    @classmethod
    def of(cls, share: float, span_ms: int, cached: bool) -> TimeMask:
        """Spans of ``span_ms`` on cached states (20 ms a position, time on axis 1) or log-mel features (10 ms a
        frame, time on axis 2)."""
        frame_ms = 20 if cached else 10
        return cls(share, max(1, round(span_ms / frame_ms)), 1 if cached else 2)

    def __call__(self, features: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``features`` with spans zeroed at random starts, a new tensor; ``share`` 0 returns it as it is."""
        if self.share <= 0:
            return features
        batch, length = features.shape[0], features.shape[self.time_axis]
        spans = max(1, round(self.share * length / self.frames))
        starts = torch.randint(0, max(1, length - self.frames + 1), (batch, spans), generator=generator)
        positions = (starts.unsqueeze(-1) + torch.arange(self.frames)).flatten(1).clamp_(max=length - 1)
        masked = torch.zeros(batch, length, dtype=torch.bool).scatter_(1, positions, True)
        shape = [1] * features.dim()
        shape[0], shape[self.time_axis] = batch, length
        return features.masked_fill(masked.view(shape).to(features.device), 0.0)
