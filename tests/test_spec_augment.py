"""Time masks while training: the right axis, about the asked share, and masked steps on the cached path."""

from __future__ import annotations

import pytest
import torch
from conftest import write_tone_batch

from zhasr.model.spec_augment import TimeMask


@pytest.mark.parametrize("cached, shape", [(False, (3, 80, 3000)), (True, (3, 1500, 16))])
def test_a_time_mask_zeroes_whole_frames_in_spans_along_time(cached, shape):
    mask = TimeMask.of(0.1, 100, cached=cached)
    assert mask.frames == (5 if cached else 10)
    features = torch.randn(shape) + 10  # no zero of its own
    masked = mask(features, generator=torch.Generator().manual_seed(0))
    zero = (masked == 0).all(dim=1 if not cached else 2)  # (batch, frames): every value of a frame zeroed
    untouched = (masked == features).all(dim=1 if not cached else 2)
    assert (zero | untouched).all()  # a frame is masked whole or left as it was
    for item in zero:
        assert 0.06 <= item.float().mean() <= 0.1  # overlapping spans mask a little less than the share
        runs = torch.diff(torch.cat([torch.zeros(1), item.float(), torch.zeros(1)])).nonzero().flatten()
        assert all(end - start >= mask.frames for start, end in runs.view(-1, 2).tolist())
    assert not torch.equal(zero[0], zero[1])  # each item its own spans


def test_no_share_leaves_the_features_as_they_are():
    features = torch.randn(2, 80, 3000)
    assert TimeMask.of(0.0, 100, cached=False)(features) is features


def test_masked_training_steps_change_what_the_adapter_learns_on_the_cached_path(tiny_model_dir, tmp_path):
    from zhasr.config import IngestParams, TrainParams
    from zhasr.data.ingest import decoded_rows, ingest_batches
    from zhasr.model.train import train_adapter

    incoming, dataset = tmp_path / "incoming", tmp_path / "dataset"
    write_tone_batch(incoming, "b", 6, text=lambda i: "您好请问" * (1 + i % 3))
    rows = decoded_rows(ingest_batches(incoming, dataset, IngestParams(test_fraction=0.0, dev_fraction=0.0)))

    def losses(share: float, run: str) -> list[float]:
        options = TrainParams(epochs=4, time_budget_s=0, evaluations=1, batch_size=2, learning_rate=5e-3,
                              warmup_ratio=0.0, targets="all-linear", cached_encoder_layers=1, pack_window_s=6.0,
                              time_mask_share=share, time_mask_ms=400)
        result = train_adapter(tiny_model_dir, rows, dataset, tmp_path / run, options)
        return [loss for _, loss in result.loss_history]

    plain = losses(0.0, "plain")
    assert losses(0.0, "plain-again") == plain  # training is repeatable ...
    masked = losses(0.5, "masked")
    assert len(masked) == len(plain) and masked != plain  # ... so what differs is the masked inputs
