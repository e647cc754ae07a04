"""Train, decode and merge on the tiny random Whisper with the real tokenizer."""

import numpy as np
import pytest
import torch
from conftest import write_tone
from test_ingest import write_batch

from zhasr.config import IngestParams, TrainParams, TranscribeParams
from zhasr.data.audio import load_16k
from zhasr.data.ingest import decoded_rows, ingest_batches
from zhasr.model.decode import DecodeOptions, collapse_loops, is_loop, token_cap, transcribe
from zhasr.model.loading import load_model
from zhasr.model.merge import merge_adapter
from zhasr.model.speech_data import SpeechCollator, label_ids
from zhasr.model.train import divergence_from_start, measure_step_seconds, prepare, train_adapter


@pytest.fixture()
def tone_dataset(tmp_path):
    incoming, dataset = tmp_path / "incoming", tmp_path / "dataset"
    rows = []
    for i in range(4):
        write_tone(incoming / "b" / f"{i}.wav", 1.0 + 0.2 * i, freq=200 + 40 * i)
        rows.append({"id": str(i), "audio": f"{i}.wav", "text": "您好请问" * (i + 1), "speaker": f"s{i}"})
    write_batch(incoming, "b", rows)
    return dataset, decoded_rows(ingest_batches(incoming, dataset, IngestParams(test_fraction=0.2)))


def test_labels_start_with_language_and_end_with_eos(tiny_model_dir):
    from transformers import WhisperProcessor

    processor = WhisperProcessor.from_pretrained(tiny_model_dir)
    ids = label_ids(processor, "您好", "zh", "transcribe", 128)
    tok = processor.tokenizer
    assert ids[:3] == tok.convert_tokens_to_ids(["<|zh|>", "<|transcribe|>", "<|notimestamps|>"])
    assert ids[-1] == tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == "您好"


def test_collator_pads_labels_with_ignore_index():
    batch = SpeechCollator()([{"input_features": torch.zeros(80, 3000), "labels": [1, 2, 3]},
                              {"input_features": torch.zeros(80, 3000), "labels": [4]}])
    assert batch["input_features"].shape == (2, 80, 3000)
    assert batch["labels"].tolist() == [[1, 2, 3], [4, -100, -100]]


def test_train_lowers_loss_then_merge_matches_adapter(tiny_model_dir, tone_dataset, tmp_path):
    dataset, rows = tone_dataset
    options = TrainParams(epochs=12, time_budget_s=0, evaluations=2, batch_size=4, learning_rate=5e-3,
                          warmup_ratio=0.0, targets="all-linear", cached_encoder_layers=0, pack_window_s=0)
    result = train_adapter(tiny_model_dir, rows, dataset, tmp_path / "run", options)
    assert result.steps == 12
    first, last = result.loss_history[0][1], result.loss_history[-1][1]
    assert last < first - 0.5, result.loss_history  # nats/token
    assert (result.adapter_dir / "adapter_config.json").is_file()
    assert 0 < result.trainable_params < result.total_params

    merged_dir = merge_adapter(tiny_model_dir, result.adapter_dir, tmp_path / "merged")
    adapter_model, processor = load_model(tiny_model_dir, result.adapter_dir)
    merged_model, _ = load_model(merged_dir)
    features = processor.feature_extractor(np.zeros(16000, np.float32), sampling_rate=16000,
                                           return_tensors="pt").input_features
    decoder_ids = torch.tensor([[50258, 50260, 50359, 50363]])
    with torch.no_grad():
        a = adapter_model(input_features=features, decoder_input_ids=decoder_ids).logits
        m = merged_model(input_features=features, decoder_input_ids=decoder_ids).logits
    assert torch.allclose(a, m, atol=1e-4)


def test_transcribe_caps_tokens_by_duration(tiny_model_dir):
    model, processor = load_model(tiny_model_dir)
    options = DecodeOptions(TranscribeParams(max_new_tokens=40, tokens_per_second=4.0))
    clips = [np.zeros(16000, np.float32), np.zeros(8000, np.float32)]
    transcripts = transcribe(model, processor, clips, options)
    assert len(transcripts) == 2
    assert all(len(t.tokens) <= token_cap(1.0, options) + 4 for t in transcripts)
    assert token_cap(1.0, options) == 12 and token_cap(100.0, options) == 40


@pytest.mark.parametrize("text, expected", [
    ("好的五十九千台五十九千台五十九千台五十九千台", ("好的五十九千台", True)),
    ("哈哈哈", ("哈哈哈", False)),
    ("谢谢谢谢", ("谢谢谢谢", False)),
    ("嗯嗯嗯嗯嗯嗯", ("嗯嗯", True)),
    ("您好请问有什么可以帮您", ("您好请问有什么可以帮您", False)),
])
def test_collapse_loops(text, expected):
    assert collapse_loops(text) == expected


def test_looping_output_is_decoded_again_with_repeats_banned(tiny_model_dir):
    # The random model never emits <|endoftext|>: every clip hits the cap, is suspect and is retried.
    model, processor = load_model(tiny_model_dir)
    clips = [np.zeros(16000, np.float32)]
    guarded = transcribe(model, processor, clips, DecodeOptions(TranscribeParams(max_new_tokens=24)))
    unguarded = transcribe(model, processor, clips, DecodeOptions(TranscribeParams(max_new_tokens=24, retry_no_repeat_ngram=0)))
    assert guarded[0].looped and guarded[0].retried
    assert unguarded[0].looped and not unguarded[0].retried
    ids = guarded[0].tokens  # generated ids only
    four_grams = [tuple(ids[i : i + 4]) for i in range(len(ids) - 3)]
    assert len(four_grams) == len(set(four_grams))


@pytest.mark.parametrize("text, looped", [
    ("您好请问有什么可以帮您", False),
    ("我要查一下我的订单" + "好的好的" * 10, True),  # compresses far too well
    ("好的五十九千台五十九千台五十九千台", True),  # a repeated unit
])
def test_loop_detection(text, looped):
    assert is_loop(text, DecodeOptions()) == looped


def test_a_kl_term_to_the_start_model_keeps_the_adapted_model_near_it(tiny_model_dir, tone_dataset, tmp_path):
    dataset, rows = tone_dataset
    _, processor = load_model(tiny_model_dir)
    features = processor.feature_extractor(load_16k(dataset / rows[0].audio), sampling_rate=16000,
                                           return_tensors="pt").input_features
    labels = torch.tensor([label_ids(processor, rows[0].text_norm, "zh", "transcribe", 64)])

    def drift(kl_to_start: float) -> float:
        """KL(start || adapted) of the next-token distributions on a training clip after 8 steps."""
        options = TrainParams(epochs=8, time_budget_s=0, evaluations=1, batch_size=4, learning_rate=5e-3,
                              warmup_ratio=0.0, targets="all-linear", cached_encoder_layers=0, kl_to_start=kl_to_start)
        result = train_adapter(tiny_model_dir, rows, dataset, tmp_path / f"run-{kl_to_start}", options)
        adapted, _ = load_model(tiny_model_dir, result.adapter_dir)
        batch = {"input_features": features, "labels": labels}
        with torch.no_grad():
            return float(divergence_from_start(adapted, adapted, batch, adapted(**batch).logits))

    assert drift(200.0) < 0.5 * drift(0.0)


@pytest.mark.parametrize("kl_to_start, passes", [(0.0, 1), (0.25, 2)])
def test_the_step_time_the_budget_plans_with_counts_the_start_models_pass(tiny_model_dir, tone_dataset, tmp_path,
                                                                            kl_to_start, passes):
    dataset, rows = tone_dataset
    options = TrainParams(batch_size=2, cached_encoder_layers=0, kl_to_start=kl_to_start)
    prepared = prepare(tiny_model_dir, rows, dataset, tmp_path, options, "zh", "transcribe")
    calls = []
    prepared.model.get_base_model().model.encoder.register_forward_hook(lambda *_: calls.append(1))
    assert measure_step_seconds(prepared, options, repeats=1) > 0
    assert len(calls) == 2 * passes  # a warm-up step and a timed one


def test_timestamp_tokens_the_model_writes_unasked_end_nothing_and_repeat_nothing(tiny_model_dir):
    """A model may write ``<|t|><|t|>`` after ``<|notimestamps|>`` (a packed-window adapter learnt them).
    Whisper's own ``generate`` then takes the window for long-form audio and seeks to decode the rest of it
    again, which it cannot do from encoder outputs: one generate call a batch, every clip its own row."""
    from transformers import LogitsProcessor, LogitsProcessorList

    from zhasr.model.decode import _generate

    model, processor = load_model(tiny_model_dir)
    tokenizer = processor.tokenizer
    stamp, eos = tokenizer.convert_tokens_to_ids("<|1.00|>"), tokenizer.eos_token_id
    [word] = tokenizer.encode("好", add_special_tokens=False)

    class ClipOneWritesTimestamps(LogitsProcessor):
        """Clip 0 writes <|1.00|><|1.00|>好 and stops; clip 1 stops at once."""
        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - self.start
            scores[:] = -float("inf")
            scores[0, [stamp, stamp, word, eos][min(step, 3)]] = 0
            scores[1, eos] = 0
            return scores

    forced = ClipOneWritesTimestamps()
    forced.start = 4  # <|startoftranscript|><|zh|><|transcribe|><|notimestamps|>
    clips = [np.zeros(16000, np.float32), np.zeros(16000, np.float32)]
    first, second = _generate(model, processor, clips, DecodeOptions(), logits_processor=LogitsProcessorList([forced]))
    assert (first.text, first.tokens[:4]) == ("好", [stamp, stamp, word, eos])
    assert (second.text, second.tokens[0]) == ("", eos)
