"""Packed training windows: which clips share a window, where each sits, the timestamped labels, and
training on them through the lower-encoder cache."""

from dataclasses import replace

import numpy as np
import pytest
from conftest import manifest_row, write_tone_batch

from zhasr.config import IngestParams, TrainParams
from zhasr.data.audio import load_16k
from zhasr.data.ingest import decoded_rows, ingest_batches
from zhasr.data.manifest import ManifestRow
from zhasr.model.speech_data import window_label_ids
from zhasr.model.train import train_adapter
from zhasr.model.training_windows import TIMESTAMP_STEP_S, channel_of, pack_rows, single_windows


def clip_rows(n: int) -> list[ManifestRow]:
    codecs = [None, None, "mulaw", "amr-nb"]
    return [manifest_row(id=f"c{i}", audio_sha256=f"{i:064x}", duration_s=2.0 + (i % 5) * 0.93,
                         text_norm="您好" * (1 + i % 4), band="telephone" if codecs[i % 4] else "wideband",
                         codec=codecs[i % 4]) for i in range(n)]


def test_packed_windows_hold_every_clip_once_in_order_within_the_window_and_one_channel():
    rows = clip_rows(40)
    windows = pack_rows(rows, window_s=24.0, gap_s=0.5, label_tokens=len, seed=3)
    assert sorted(r.id for w in windows for r in w.rows) == sorted(r.id for r in rows)
    assert len(windows) < len(rows) / 3
    for window in windows:
        assert window.packed and len({channel_of(r) for r in window.rows}) == 1
        assert window.starts_s[0] == 0.0
        assert window.starts_s[-1] + window.rows[-1].duration_s <= 24.0
        for (row, start), following in zip(zip(window.rows, window.starts_s), window.starts_s[1:]):
            assert following >= start + row.duration_s + 0.5 - 1e-9
            assert abs(following / TIMESTAMP_STEP_S - round(following / TIMESTAMP_STEP_S)) < 1e-6
    assert [w.key for w in windows] == [w.key for w in pack_rows(rows, 24.0, 0.5, len, seed=3)]  # the same windows
    assert [w.key for w in windows] != [w.key for w in pack_rows(rows, 24.0, 0.5, len, seed=4)]


def test_a_window_stops_where_its_labels_would_outgrow_the_decoder():
    rows = [replace(row, text_norm="好" * 150) for row in clip_rows(8) if channel_of(row) == "wideband"]
    windows = pack_rows(rows, window_s=30.0, gap_s=0.5, label_tokens=len)
    assert max(len(w.rows) for w in windows) == 2  # 3 x (150 + 2) tokens would pass 448
    assert single_windows(rows)[0].key == "c0" and not single_windows(rows)[0].packed


def test_packed_labels_are_whisper_timestamped_layout(tiny_model_dir):
    from transformers import WhisperProcessor

    processor = WhisperProcessor.from_pretrained(tiny_model_dir)
    rows = [manifest_row(id="a", duration_s=2.5, text_norm="您好"), manifest_row(id="b", duration_s=1.26, text_norm="退款")]
    window = pack_rows(rows, 24.0, 0.5, label_tokens=len)[0]
    assert window.starts_s == (0.0, 3.0)
    ids = window_label_ids(processor, window, "zh", "transcribe", 128)
    assert processor.tokenizer.decode(ids, decode_with_timestamps=True) == (
        "<|zh|><|transcribe|><|0.00|>您好<|2.50|><|3.00|>退款<|4.26|><|endoftext|>")
    alone = window_label_ids(processor, single_windows(rows)[0], "zh", "transcribe", 128)
    assert processor.tokenizer.decode(alone) == "<|zh|><|transcribe|><|notimestamps|>您好<|endoftext|>"


@pytest.fixture()
def tone_clips(tmp_path):
    incoming, dataset = tmp_path / "incoming", tmp_path / "dataset"
    write_tone_batch(incoming, "b", 8, text=lambda i: "您好请问" * (1 + i % 3))
    return dataset, decoded_rows(ingest_batches(incoming, dataset, IngestParams(test_fraction=0.0, dev_fraction=0.0)))


def test_window_audio_has_each_clip_at_its_start_and_silence_between(tone_clips):
    dataset, rows = tone_clips
    window = pack_rows(rows, 10.0, 0.5, label_tokens=len)[0]
    audio = window.audio(dataset)
    for row, start in zip(window.rows, window.starts_s):
        clip = load_16k(dataset / row.audio)
        offset = round(start * 16000)
        np.testing.assert_array_equal(audio[offset : offset + len(clip)], clip)
        assert not audio[offset + len(clip) : offset + len(clip) + 7000].any()  # the gap (0.5 s = 8000 samples)


def test_packed_training_reads_fewer_windows_through_the_cache_and_learns(tiny_model_dir, tone_clips, tmp_path):
    dataset, rows = tone_clips
    options = TrainParams(epochs=16, time_budget_s=0, evaluations=2, batch_size=2, learning_rate=5e-3,
                          warmup_ratio=0.0, targets="all-linear", cached_encoder_layers=1, pack_window_s=6.0)
    result = train_adapter(tiny_model_dir, rows, dataset, tmp_path / "run", options, dev_rows=rows[:2])
    assert result.windows == 3 and result.steps == 24  # 8 clips of 1.0-1.7 s in 6-s windows; 16 epochs, 2 a step
    # the 2 dev clips are packed too, into one window: each evaluation runs the upper encoder once
    assert len(list((tmp_path / "run" / "encoder_cache").rglob("window-*.pt"))) == 3 + 1
    assert result.clips_per_second == pytest.approx(result.samples_per_second * 8 / 3)
    first, last = result.loss_history[0][1], result.loss_history[-1][1]
    assert last < first - 0.5, result.loss_history
    assert len(result.dev_cer_history) == 3  # decoded from the dev window's cached states at steps 0, 12 and 24


@pytest.mark.parametrize("shape, parameters_m", [("small", 242), ("large-v3", 1550), ("large-v3-turbo", 809)])
def test_every_release_shape_builds_with_its_mel_bins_and_vocabulary(shape, parameters_m):
    import torch
    from transformers import WhisperForConditionalGeneration

    from zhasr.model.tiny import WHISPER_SHAPES, random_whisper_config, tokenizer_files

    config, tokenizer, _ = random_whisper_config(WHISPER_SHAPES[shape], tokenizer_files())
    with torch.device("meta"):  # the shape without the memory
        model = WhisperForConditionalGeneration(config)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(parameters_m, rel=0.02)
    assert len(tokenizer) == config.vocab_size == (51866 if shape.startswith("large-v3") else 51865)
    assert config.num_mel_bins == (128 if shape.startswith("large-v3") else 80)
