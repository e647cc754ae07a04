"""The transcription engine on the tiny model: a generated 3.5-minute two-channel mu-law call in every
runtime, the guard, the writers, the input formats and bad input."""

from __future__ import annotations

import dataclasses
import itertools
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REAL_ZH

from zhasr.config import TranscribeParams
from zhasr.data.audio import AudioError
from zhasr.evaluation.turns import match_turns
from zhasr.model.decode import Transcript
from zhasr.transcribe import Transcriber
from zhasr.transcribe.guard import judge, strip_hallucinations
from zhasr.transcribe.media import read_call
from zhasr.transcribe.records import Segment, Transcription
from zhasr.transcribe.writers import write

PARAMS = TranscribeParams(max_new_tokens=8)  # the random model never stops by itself


@pytest.fixture(scope="session")
def tiny_exports(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    from zhasr.export.formats import write_export

    out = tmp_path_factory.mktemp("tiny-exports")
    return {"transformers": tiny_model_dir, "ct2": write_export("ct2-int8", tiny_model_dir, out),
            "ggml": write_export("ggml-q8_0", tiny_model_dir, out)}


@pytest.mark.parametrize("runtime", ["transformers", "ct2", "ggml"])
@pytest.mark.parametrize("channels", ["split", "mix"])
def test_every_runtime_finds_every_turn_of_a_call(runtime, channels, tiny_exports, generated_call):
    wav, turns = generated_call
    assert sf.info(wav).channels == 2 and sf.info(wav).subtype == "ULAW" and turns[-1].end > 180
    transcriber = Transcriber.open(tiny_exports[runtime], PARAMS)
    result = transcriber.transcribe(wav, channels=channels)
    assert result.runtime == runtime and result.channels == channels
    found = match_turns(result.segments, turns)
    assert found.missing == 0 and not result.removed
    assert found.close >= 0.9 * len(turns), found
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and all(s.end > s.start for s in result.segments)
    if channels == "split":
        assert found.right_speaker == len(turns)
        assert {s.speaker for s in result.segments} == {"agent", "customer"}
    else:
        assert {s.speaker for s in result.segments} == {""}
    # turns of a track share windows; the random model's looping windows are decoded again piece by piece
    assert result.timings.windows < len(turns) and result.timings.unplaced <= result.timings.windows
    if runtime != "ggml":  # a piece that loops is flagged and retried
        assert any("looped" in s.flags for s in result.segments)
        assert all("retried" in s.flags for s in result.segments if "looped" in s.flags)


@pytest.mark.parametrize("runtime", ["transformers", "ct2"])
def test_a_runtime_decodes_up_to_its_token_cap(runtime, tiny_exports):
    """CTranslate2's Whisper decodes at most half the max_length it is given, and no more than max_length less
    the prompt: the runtime must ask for enough, or a dense 24-s window stops at half its cap and a long
    hotword prompt eats the rest (the random model never stops by itself)."""
    params = TranscribeParams(max_new_tokens=60, retry_no_repeat_ngram=0)
    transcriber = Transcriber.open(tiny_exports[runtime], params)
    clip = np.random.default_rng(0).normal(0, 0.1, 10 * 16000).astype(np.float32)
    hotwords = " ".join(["客服", "验证码", "手机号", "账户", "优惠券", "退款", "快递", "订单"] * 3)  # ~110 tokens
    for timestamps, prompt in ((False, None), (True, None), (False, hotwords), (True, hotwords)):
        [t] = transcriber.runtime.decode([clip], prompt, timestamps=timestamps)
        assert len(t.tokens) == 60 and t.hit_cap, (timestamps, prompt is not None, len(t.tokens))


@pytest.mark.parametrize("runtime", ["transformers", "ct2"])
def test_a_prompt_longer_than_whisper_keeps_for_one_is_cut_and_every_window_decodes(runtime, tiny_exports):
    """Whisper keeps 223 of its 448 decoder positions for a prompt. A longer hotword list (the service takes
    50 terms of 20 characters) is cut to them, the transcription gets the positions left, in plain and
    timestamped windows, a long and a short clip in one batch; text that reads like a special token is text."""
    transcriber = Transcriber.open(tiny_exports[runtime], TranscribeParams(retry_no_repeat_ngram=0))
    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.1, seconds * 16000).astype(np.float32) for seconds in (28, 3)]
    hotwords = "<|endoftext|> " + " ".join(f"客户服务中心热线电话号码查询{i}" for i in range(50))  # ~750 tokens
    for timestamps in (False, True):
        decoded = transcriber.runtime.decode(clips, hotwords, timestamps=timestamps)
        assert [t.error for t in decoded] == [None, None], timestamps
        # the random model never stops by itself: it decodes up to what the positions leave, and says so
        assert 200 < len(decoded[0].tokens) < 224 and decoded[0].hit_cap, (timestamps, len(decoded[0].tokens))


@pytest.mark.parametrize("runtime", ["transformers", "ct2"])
def test_a_runtime_times_the_words_of_clips_too_short_for_an_encoder_frame(runtime, tiny_exports):
    transcriber = Transcriber.open(tiny_exports[runtime], PARAMS)
    for samples in (0, 160, 320, 16000):
        [words] = transcriber.runtime.align([np.zeros(samples, np.float32)], ["您好"])
        assert [w.word for w in words] == ["您", "好"], samples
        assert all(0 <= w.start <= w.end <= samples / 16000 for w in words), (samples, words)


@pytest.mark.parametrize("runtime", ["transformers", "ct2"])
def test_a_runtime_decodes_with_beam_search(runtime, tiny_exports):
    """``num_beams`` above 1: every clip decoded, with and without timestamps and a prompt, its mean
    log-probability read (transformers' beam search has no per-token scores to read it from), none of the
    prefix or the prompt in its tokens. (The random model never ends a beam early, so a row cut by its
    scores keeps no prefix here: ``test_transcribe_base.py`` shows that case on a real model.)"""
    from transformers import AutoTokenizer

    prefix = set(AutoTokenizer.from_pretrained(tiny_exports["transformers"]).convert_tokens_to_ids(
        ["<|startofprev|>", "<|startoftranscript|>", "<|zh|>", "<|transcribe|>"]))
    transcriber = Transcriber.open(tiny_exports[runtime], dataclasses.replace(PARAMS, num_beams=3))
    clip = np.random.default_rng(0).normal(0, 0.1, 5 * 16000).astype(np.float32)
    for timestamps, prompt in itertools.product((False, True), (None, "客服 验证码")):
        [t] = transcriber.runtime.decode([clip], prompt, timestamps=timestamps)
        assert t.error is None and t.tokens and -50 < t.avg_logprob <= 0, (timestamps, prompt, t)
        assert not prefix & set(t.tokens) and "客服" not in t.text, (timestamps, prompt, t.tokens[:4], t.text)


def test_pieces_of_several_calls_are_decoded_together(tiny_exports, generated_call):
    wav, turns = generated_call
    transcriber = Transcriber.open(tiny_exports["ct2"], PARAMS)
    one = transcriber.transcribe(wav, channels="split")
    both = transcriber.transcribe_many([wav, wav.read_bytes()], channels="split")
    assert [s.start for s in both[0].segments] == [s.start for s in one.segments]
    assert [s.text for s in both[1].segments] == [s.text for s in one.segments]


def test_formats_call_centers_export_decode_to_the_same_audio(tmp_path):
    import av

    rate = 8000
    t = np.arange(3 * rate) / rate
    left = 0.3 * np.sin(2 * np.pi * 300 * t)
    stereo = np.stack([left, 0.3 * np.sin(2 * np.pi * 500 * t)], axis=1).astype(np.float32)
    sf.write(tmp_path / "mulaw.wav", stereo, rate, subtype="ULAW")
    sf.write(tmp_path / "alaw.wav", stereo, rate, subtype="ALAW")
    made = ["mulaw.wav", "alaw.wav"]
    for name, codec, layout, out_rate in (("call.mp3", "libmp3lame", "stereo", 16000), ("call.m4a", "aac", "stereo", 16000),
                                          ("call.opus", "libopus", "stereo", 16000), ("call.amr", "libopencore_amrnb", "mono", 8000)):
        try:
            with av.open(str(tmp_path / name), "w") as out:
                stream = out.add_stream(codec, rate=out_rate, layout=layout)
                samples = stereo if layout == "stereo" else stereo[:, :1]
                resampled = np.repeat(samples, out_rate // rate, axis=0)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(resampled.T), format="fltp", layout=layout)
                frame.rate = out_rate
                for packet in stream.encode(frame):
                    out.mux(packet)
                for packet in stream.encode(None):
                    out.mux(packet)
        except (av.error.FFmpegError, ValueError, av.codec.codec.UnknownCodecError):
            continue  # this PyAV build has no such encoder; decoding is what is tested
        made.append(name)
    assert {"mulaw.wav", "alaw.wav", "call.mp3", "call.m4a", "call.opus", "call.amr"} <= set(made), made
    for name in made:
        call = read_call(tmp_path / name)
        assert abs(call.duration_s - 3.0) < 0.2, name
        spectrum = np.abs(np.fft.rfft(call.samples[0]))
        assert abs(np.argmax(spectrum) * 16000 / len(call.samples[0]) - 300) < 10, name  # the left channel's tone
        assert call.channels == (1 if name.endswith(".amr") else 2), name


def test_bytes_that_name_other_files_are_not_audio_and_decoding_stops_at_the_limit(tmp_path, monkeypatch):
    """FFmpeg probes what bytes are: a concat playlist naming a file beside the process would have it read
    that file. And a small FLAC that holds ten minutes is decoded only up to the limit."""
    import tracemalloc

    from zhasr.transcribe.media import AudioTooLong, UnsupportedAudio

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    sf.write(tmp_path / "data" / "secret.wav", np.full(16000 * 7, 0.1, np.float32), 16000)
    with pytest.raises(UnsupportedAudio, match="upload: cannot decode audio"):
        read_call(b"ffconcat version 1.0\nfile data/secret.wav\n", "upload")
    sf.write(tmp_path / "ten-minutes.flac", np.zeros(600 * 16000, np.int16), 16000)
    blob = (tmp_path / "ten-minutes.flac").read_bytes()
    tracemalloc.start()
    try:
        with pytest.raises(AudioTooLong, match="long.flac: 600 s of audio, more than the limit of 60 s"):
            read_call(blob, "long.flac", max_duration_s=60.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12e6, peak  # 60 s of float32 is 3.8 MB; the ten minutes would be 38 MB


def test_bad_input_gets_its_outcome(tiny_exports, tmp_path, generated_call):
    transcriber = Transcriber.open(tiny_exports["ct2"], PARAMS)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("订单号 12345, call back tomorrow\n" * 20, encoding="utf-8")
    for path, message in ((empty, "empty file"), (text, "cannot decode audio"), (tmp_path / "absent.wav", "not found")):
        with pytest.raises(AudioError, match=message) as error:
            transcriber.transcribe(path)
        assert str(path) in str(error.value)
    wav, _ = generated_call
    cut = tmp_path / "cut.wav"
    cut.write_bytes(wav.read_bytes()[: wav.stat().st_size // 3])
    result = transcriber.transcribe(cut, channels="split")
    assert result.segments and any("cut short" in w for w in result.warnings)
    assert 60 < result.duration_s < 80
    sf.write(tmp_path / "short.wav", np.zeros(1600, np.float32), 16000)
    assert transcriber.transcribe(tmp_path / "short.wav").segments == ()
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "silence.wav", (rng.standard_normal(600 * 8000) * 1e-4).astype(np.float32), 8000,
             subtype="ULAW")
    silence = transcriber.transcribe(tmp_path / "silence.wav")
    assert silence.segments == () and silence.text == "" and silence.duration_s == 600.0
    three, rate = sf.read(wav, dtype="float32")
    sf.write(tmp_path / "three.wav", np.concatenate([three, three[:, :1]], axis=1), rate)
    with pytest.raises(AudioError, match="3 channels; split takes two-channel calls"):
        transcriber.transcribe(tmp_path / "three.wav", channels="split")
    assert transcriber.transcribe(tmp_path / "three.wav", channels="mix").segments


def test_guard_removes_non_speech_and_known_hallucinations():
    params = TranscribeParams()
    speech = Transcript("您好，请问有什么可以帮您", [], False, False, avg_logprob=-0.3, no_speech_prob=0.01)
    assert judge(speech, params) == ("您好，请问有什么可以帮您", (), None)
    assert judge(dataclasses.replace(speech, no_speech_prob=0.9, avg_logprob=-1.5), params)[2] == "no_speech"
    # Confident text is kept even when P(no speech) is high (Whisper's rule needs both).
    assert judge(dataclasses.replace(speech, no_speech_prob=0.9, avg_logprob=-0.2), params)[2] is None
    assert judge(dataclasses.replace(speech, text="字幕由Amara.org社区提供"), params)[2] == "hallucination"
    assert judge(dataclasses.replace(speech, text="請不吝點贊 訂閱 轉發 打賞支持明鏡與點點欄目"), params)[2] == "hallucination"
    assert judge(dataclasses.replace(speech, text="好的好的好的好的好的好的"), params) == ("好的", ("collapsed",), None)
    assert judge(dataclasses.replace(speech, text="", error="ct2: out of memory"), params) == ("", ("failed",), None)
    # cut at the token cap inside a character: the stray byte is dropped, not shown as U+FFFD
    assert judge(dataclasses.replace(speech, text="好的喽\ufffd"), params)[0] == "好的喽"
    assert strip_hallucinations("谢谢观看", params.hallucinations) == ""
    assert strip_hallucinations("您的订单已发货字幕由Amara.org社区提供", params.hallucinations) == "您的订单已发货"
    assert strip_hallucinations("谢谢观看我们的新品", params.hallucinations) == "谢谢观看我们的新品"


def _record() -> Transcription:
    segments = (Segment(0, 1.0, 3.25, "您好，请问有什么可以帮您", 0, "agent", -0.2, 0.01, 1.1),
                Segment(1, 4.5, 3725.125, "我的快递还没到", 1, "customer", -0.4, 0.02, 1.0, flags=("looped",)))
    return Transcription("您好，请问有什么可以帮您 我的快递还没到", segments, 3726.0, "zh", "zhasr-whisper v3", "ct2", "split")


def test_writers_give_openai_shapes_and_subtitles():
    t = _record()
    assert write(t, "text") == "[agent] 您好，请问有什么可以帮您\n[customer] 我的快递还没到\n"
    assert json.loads(write(t, "json")) == {"text": t.text}
    body = json.loads(write(t, "verbose_json"))
    assert body["language"] == "chinese" and body["duration"] == 3726.0 and body["task"] == "transcribe"
    assert [(s["start"], s["end"], s["speaker"], s["flags"]) for s in body["segments"]] == [
        (1.0, 3.25, "agent", []), (4.5, 3725.125, "customer", ["looped"])]
    assert write(t, "srt") == ("1\n00:00:01,000 --> 00:00:03,250\n[agent] 您好，请问有什么可以帮您\n\n"
                               "2\n00:00:04,500 --> 01:02:05,125\n[customer] 我的快递还没到\n")
    assert write(t, "vtt") == ("WEBVTT\n\n00:00:01.000 --> 00:00:03.250\n<v agent>您好，请问有什么可以帮您\n\n"
                               "00:00:04.500 --> 01:02:05.125\n<v customer>我的快递还没到\n")
    with pytest.raises(ValueError, match="expected one of text, json"):
        write(t, "docx")
    odd = dataclasses.replace(t, segments=(dataclasses.replace(t.segments[0], text="第一行\n\n第二行 a --> b <i>&"),))
    assert write(odd, "srt").split("\n")[2] == "[agent] 第一行 第二行 a --> b <i>&"  # a blank line ends a cue
    assert write(odd, "vtt").split("\n")[3] == "<v agent>第一行 第二行 a --&gt; b &lt;i&gt;&amp;"


def test_a_mono_call_asked_to_split_and_unusual_samples_are_read_as_the_same_speech(tiny_exports, generated_call,
                                                                                    tmp_path):
    """Unsigned 8-bit WAV is centred on its midpoint (it read as a 0.5 offset and the VAD heard no speech); NaN
    in an array is silence as in a file; a mono call asked to split is transcribed as mixed, its turns not
    merged across speakers; a call's two channels and the same samples as one channel are two cache keys."""
    from zhasr.transcribe.cache import audio_digest

    wav, _ = generated_call
    stereo, rate = sf.read(wav, dtype="float32")
    stereo = stereo[: 40 * rate]
    sf.write(tmp_path / "u8.wav", stereo, rate, subtype="PCM_U8")
    sf.write(tmp_path / "s16.wav", stereo, rate, subtype="PCM_16")
    u8, s16 = read_call(tmp_path / "u8.wav"), read_call(tmp_path / "s16.wav")
    assert abs(float(u8.samples.mean())) < 0.01 and np.abs(u8.samples - s16.samples).max() < 0.05
    transcriber = Transcriber.open(tiny_exports["ct2"], PARAMS)
    as_u8, as_s16 = transcriber.transcribe(u8, channels="split"), transcriber.transcribe(s16, channels="split")
    assert [s.channel for s in as_u8.segments] == [s.channel for s in as_s16.segments]

    mono = s16.mono()
    mixed, split = transcriber.transcribe(mono, channels="mix"), transcriber.transcribe(mono, channels="split")
    assert [(s.start, s.end) for s in split.segments] == [(s.start, s.end) for s in mixed.segments]
    assert split.channels == "mix" and "call" not in json.loads(write(split, "verbose_json"))
    holed = mono.copy()
    holed[::5000] = np.nan
    clean = np.where(np.isnan(holed), 0.0, holed).astype(np.float32)
    assert [(s.start, s.end, s.text) for s in transcriber.transcribe(holed).segments] == [
        (s.start, s.end, s.text) for s in transcriber.transcribe(clean).segments]
    assert audio_digest(s16.samples) != audio_digest(s16.samples.reshape(-1))


def test_cli_prints_only_the_transcript(project, tiny_exports, generated_call):
    wav, turns = generated_call
    done = subprocess.run([sys.executable, "-m", "cli", "transcribe", str(wav), "--model", str(tiny_exports["ct2"]),
                           "--channels", "split", "--format", "srt", "--set", "transcribe.max_new_tokens=8"],
                          capture_output=True, text=True, timeout=600, cwd=project)
    assert done.returncode == 0, done.stderr[-2000:]
    cues = done.stdout.split("\n\n")
    assert done.stdout.startswith("1\n00:00:0") and len(cues) == len(turns)
    assert all(c.splitlines()[2].startswith(("[agent] ", "[customer] ")) for c in cues)
    bad = subprocess.run([sys.executable, "-m", "cli", "transcribe", str(project / "params.yaml"),
                          "--model", str(tiny_exports["ct2"])], capture_output=True, text=True, timeout=600, cwd=project)
    assert bad.returncode == 2 and "params.yaml: cannot decode audio" in bad.stderr and bad.stdout == ""


def test_decoding_keeps_transformers_notes_about_its_own_generate_out_of_the_log(tiny_model_dir):
    """transformers writes three notes on every batch about how its Whisper ``generate`` calls the generic
    loop; a service would log them per request. Real warnings from the same loggers still come through."""
    import logging

    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from zhasr.model.decode import DecodeOptions, transcribe

    class Kept(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record.getMessage())

    kept, handler = [], Kept()
    loggers = [logging.getLogger(f"transformers.generation.{m}") for m in ("utils", "configuration_utils")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        model = WhisperForConditionalGeneration.from_pretrained(tiny_model_dir)
        processor = WhisperProcessor.from_pretrained(tiny_model_dir)
        clip = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
        for timestamps in (False, True):
            transcribe(model, processor, [clip, clip], DecodeOptions(), timestamps=timestamps)
        loggers[0].warning("a real warning")
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    assert kept == ["a real warning"], kept


def test_batches_decoded_side_by_side_give_every_clip_its_own_decoding(tiny_exports, generated_call):
    """ct2 on a CPU deals clips to one-thread workers, batches side by side, clips with and without
    timestamp tokens in one call: each clip gets back, in its place, the decoding it gets alone on both
    threads (the random model says the same words for every clip, so a clip is told by its P(no speech),
    which its audio decides)."""
    from zhasr.model.decode import DecodeOptions
    from zhasr.transcribe.ct2_runtime import Ct2Runtime

    wav, turns = generated_call
    samples = read_call(wav, wav.name, 3600.0).mono()
    clips = [samples[int(t.start * 16000) : int(t.end * 16000)] for t in turns[:19]]
    flags = [i % 3 == 0 for i in range(len(clips))]
    side = Ct2Runtime(tiny_exports["ct2"], DecodeOptions(PARAMS), threads=2)
    alone = Ct2Runtime(tiny_exports["ct2"], DecodeOptions(dataclasses.replace(PARAMS, parallel_batches=False)), threads=2)
    assert (side.workers, alone.workers) == (2, 1)
    expected = [alone.decode([clip], timestamps=flag)[0] for clip, flag in zip(clips, flags)]
    assert len({t.no_speech_prob for t in expected}) == len(clips)  # every clip tells itself apart
    assert [bool(t.timed) for t in expected] == flags  # the random model's timestamps make segments
    # 19 clips (7 with timestamps, 12 without: 4 batches on 2 workers); one clip (a lone batch)
    for got in (side.decode(clips, timestamps=flags), side.decode(clips[:1], timestamps=flags[:1])):
        assert [(t.text, t.no_speech_prob, t.timed) for t in got] == [(t.text, t.no_speech_prob, t.timed)
                                                                     for t in expected[: len(got)]]


# Real telephone turns that open with a short word: "对，" and a pause (Silero's 16 kHz mode started the
# piece 1.1 s late in this call), "叫做" (0.7 s late in the bench's real call).
FIRST_WORD_CLIPS = ("higgs_zh_man_sichuan.wav", "stepaudio_prompt_yuqian.wav")


@pytest.mark.skipif(not REAL_ZH.is_dir(), reason=f"{REAL_ZH}: real-zh clips not present beside the checkout")
def test_the_vad_hears_the_first_word_of_real_telephone_turns(tmp_path):
    from zhasr.data.audio import load_16k
    from zhasr.data.codecs import narrowband
    from zhasr.data.synth.call import write_call
    from zhasr.transcribe.vad import speech_spans

    rows = [json.loads(line) for line in (REAL_ZH / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    clips = [(narrowband(load_16k(REAL_ZH / r["audio"])), r["text"], r["audio"]) for r in rows]
    wav, turns = write_call(tmp_path, clips, 8000)  # every clip a turn on alternating channels, mu-law
    call = read_call(wav, wav.name, 600.0).samples
    spans = {c: speech_spans(call[c], PARAMS) for c in (0, 1)}
    for turn in (t for t in turns if t.clip in FIRST_WORD_CLIPS):
        starts = [a / 16000 for a, b in spans[turn.channel] if b / 16000 > turn.start and a / 16000 < turn.end]
        assert starts and abs(starts[0] - turn.start) <= 0.3, (turn.clip, turn.start, starts[:1])


def test_speech_past_a_window_is_cut_into_windows_without_a_sliver(monkeypatch):
    """60.001 s of speech heard as one span: two 30-s pieces, not a third of 1 ms (a segment of no length)."""
    import silero_vad

    from zhasr.transcribe.vad import VAD_RATE, speech_spans

    monkeypatch.setattr(silero_vad, "get_speech_timestamps_from_probs",
                        lambda probs, **kw: [{"start": 0, "end": int(60.001 * VAD_RATE)}])
    assert speech_spans(np.zeros(61 * 16000, np.float32), PARAMS) == [(0, 480_000), (480_000, 960_000)]


@pytest.mark.skipif(not REAL_ZH.is_dir(), reason=f"{REAL_ZH}: real-zh clips not present beside the checkout")
def test_the_vad_reads_a_track_as_silero_reads_it_frame_by_frame(monkeypatch):
    """The 8 kHz VAD encodes all frames at once and runs Silero's LSTM over them in blocks; the package's own
    ONNX model, fed one 32-ms frame at a time with its state carried, reads the same probabilities."""
    import silero_vad
    import soxr
    import torch

    from zhasr.data.audio import load_16k
    from zhasr.data.codecs import narrowband
    from zhasr.transcribe import vad

    monkeypatch.setattr(vad, "BLOCK", 100)  # several blocks: the LSTM's state must carry from one to the next
    track = narrowband(np.concatenate([load_16k(REAL_ZH / name) for name in FIRST_WORD_CLIPS]))
    ours = vad.speech_probabilities(track)
    heard = vad._attenuated(soxr.resample(track, 16000, vad.VAD_RATE))
    heard = np.pad(heard, (0, -len(heard) % vad.FRAME))
    model = silero_vad.load_silero_vad(onnx=True)
    theirs = [model(torch.from_numpy(frame), vad.VAD_RATE).item() for frame in heard.reshape(-1, vad.FRAME)]
    assert len(ours) == len(theirs) > 3 * 100
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert (ours > 0.5).mean() > 0.2 and (ours < 0.1).mean() > 0.05  # it heard speech and pauses


_REALLOCATE = """
import resource, sys, threading
import numpy as np
if sys.argv[1] == "kept":
    from zhasr.transcribe.allocator import keep_freed_memory
    assert keep_freed_memory()
faults = []
def reallocate():
    for _ in range(4):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = np.ones(100 * 2**20, dtype=np.uint8)  # 100 MB: over glibc's largest mmap threshold and a thread arena
        del block
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
reallocate()
worker = threading.Thread(target=reallocate)  # a runtime's worker thread, started after the call
worker.start()
worker.join()
print(sum(faults[1:4]), sum(faults[5:]))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the malloc settings are glibc's")
def test_the_runtime_reuses_freed_memory_instead_of_faulting_in_new_pages():
    """An encoder pass frees and allocates blocks of ~72 MB in every layer, in the runtime's worker threads:
    kept in the heap, a block allocated again costs no page faults, in the calling thread and in a thread
    started later (fresh pages: 25,600 for 100 MB in 4 kB pages, 50-600 in transparent huge pages)."""
    faults = {mode: [int(n) for n in subprocess.run([sys.executable, "-c", _REALLOCATE, mode], check=True,
                                                    capture_output=True, text=True,
                                                    cwd=Path(__file__).parents[1]).stdout.split()]
              for mode in ("default", "kept")}
    assert min(faults["default"]) > 3 * 20
    assert max(faults["kept"]) < 30


def test_a_call_transcript_is_cut_back_into_its_turns():
    from zhasr.data.synth.call import Turn
    from zhasr.evaluation.turns import per_turn
    from zhasr.transcribe.records import Segment, Transcription

    def segment(k, start, end, text, channel):
        return Segment(k, start, end, text, channel, "", None, None, 1.0)

    turns = [Turn(1.0, 3.0, 0, "agent", "", "a"), Turn(4.0, 6.0, 1, "customer", "", "b"),
             Turn(7.0, 9.0, 0, "agent", "", "c"), Turn(10.0, 11.0, 1, "customer", "", "d")]
    segments = (segment(0, 1.1, 2.0, "您好", 0), segment(1, 2.2, 3.1, "请讲", 0), segment(2, 4.0, 6.2, "我的手机号", 1),
                segment(3, 6.2, 6.6, "嗯", 0),  # over no turn of its channel: to the nearest one, never dropped
                segment(4, 7.3, 8.9, "好的", 0))
    call = Transcription("…", segments, 12.0, "zh", "m", "ct2", "split")
    parts = per_turn(call, turns)
    assert [p.text for p in parts] == ["您好 请讲", "我的手机号", "嗯 好的", ""]
    assert [s.id for s in parts[2].segments] == [3, 4]
