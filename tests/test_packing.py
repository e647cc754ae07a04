"""Full windows: pieces of a track packed into one window, the window's text placed back on its pieces,
timestamp tokens read into segments, the prompt-echo rule, and the engine's fallback to pieces one by one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from zhasr.config import TranscribeParams
from zhasr.model.decode import Transcript, timestamp_segments
from zhasr.transcribe import Transcriber
from zhasr.transcribe.guard import is_prompt_echo, judge
from zhasr.transcribe.packing import join_words, pack, place, spelled, window_audio, within_segments
from zhasr.transcribe.records import Segment, Word
from zhasr.transcribe.vad import Piece

RATE = 16000
CALL = TranscribeParams(whole_clip_s=0.0)  # the 8-s test audio is a call here, not a clip decoded whole


def s(seconds: float) -> int:
    return int(seconds * RATE)


def test_pieces_of_one_track_share_windows_up_to_the_limit_and_tracks_never_mix():
    pieces = [Piece(0, 0, s(0), s(5)), Piece(0, 1, s(1), s(4)), Piece(0, 0, s(9), s(15)),  # a 4-s pause on channel 0
              Piece(0, 0, s(15.5), s(22)), Piece(1, 0, s(0), s(3)), Piece(0, 0, s(30), s(35))]
    windows = pack(pieces, max_s=24.0, gap_s=1.0)
    by_piece = {k: w for w in windows for k in w.pieces}
    assert sorted(by_piece) == list(range(len(pieces)))  # every piece in exactly one window
    first = by_piece[0]
    assert first.pieces == (0, 2, 3)  # channel 0 of input 0, in time order, until 24 s would be passed
    # the 4-s pause is shortened to 1 s, the 0.5-s one kept as it was
    assert first.offsets == (0, s(6), s(6) + s(6) + s(0.5)) and first.length == s(6 + 6 + 0.5 + 6.5)
    assert by_piece[5] is not first and by_piece[5].pieces == (5,)  # would pass 24 s: a window of its own
    assert by_piece[1].pieces == (1,) and by_piece[4].pieces == (4,)  # other channel, other input: their own
    assert all(w.length <= s(24) for w in windows)
    assert [w.pieces for w in pack(pieces, 24.0, 1.0, enabled=False)] == [(k,) for k in range(len(pieces))]
    # across inputs (evaluation's question): pieces of the same channel of different inputs, silence between
    across = pack([Piece(0, 0, 0, s(3)), Piece(1, 0, 0, s(4))], 24.0, 1.0, key=lambda p: p.channel)
    assert [(w.pieces, w.offsets) for w in across] == [((0, 1), (0, s(4)))]


def test_window_audio_keeps_the_pieces_and_the_ends_of_a_shortened_pause():
    track = np.arange(s(20), dtype=np.float32)
    pieces = [Piece(0, 0, s(1), s(3)), Piece(0, 0, s(8), s(10))]
    (window,) = pack(pieces, 24.0, 1.0)
    audio = window_audio(window, pieces, lambda p: track)
    assert len(audio) == s(5)
    assert np.array_equal(audio[: s(2)], track[s(1) : s(3)])  # the first piece
    assert np.array_equal(audio[s(2) : s(2.5)], track[s(3) : s(3.5)])  # the pause's first half second ...
    assert np.array_equal(audio[s(2.5) : s(3)], track[s(7.5) : s(8)])  # ... and its last
    assert np.array_equal(audio[s(3) :], track[s(8) : s(10)])


def test_text_goes_to_the_piece_it_was_said_in_and_a_unit_over_two_pieces_is_refused():
    pieces = [Piece(0, 0, s(1), s(3)), Piece(0, 0, s(8), s(10))]
    (window,) = pack(pieces, 24.0, 1.0)  # pieces at 0-2 s and 3-5 s of the window
    words = [Word(0.1, 0.5, "您"), Word(0.5, 1.0, "好"), Word(2.2, 2.4, "，"), Word(3.2, 3.8, "请"), Word(4.0, 4.9, "讲")]
    first, second = place(window, pieces, words)
    assert join_words(first) == "您好，" and join_words(second) == "请讲"  # the pause's comma to the nearer piece
    assert second[0] == Word(0.2, 0.8, "请")  # times from the piece's own start
    assert place(window, pieces, [Word(1.0, 4.0, "您好请讲")]) is None  # a segment over both: cannot be told apart
    assert join_words([Word(0, 1, "order"), Word(1, 2, "12345"), Word(2, 3, "号")]) == "order 12345号"


def test_a_word_after_a_pause_goes_where_its_timestamp_segment_starts_and_keeps_the_text_as_written():
    pieces = [Piece(0, 0, s(1), s(3)), Piece(0, 0, s(8), s(10))]
    (window,) = pack(pieces, 24.0, 1.0)  # pieces at 0-2 s and 3-5 s of the window
    text = "号码13155 电子邮箱"
    # alignment gives the pause to the word after it: 电 from 1.6 s to 3.3 s, its middle nearer the first piece
    words = [Word(0.1, 0.6, "号码"), Word(0.6, 1.0, "13"), Word(1.0, 1.6, "155"), Word(1.6, 3.3, "电"),
             Word(3.3, 3.6, "子"), Word(3.6, 4.0, "邮箱")]
    assert [join_words(p) for p in place(window, pieces, words)] == ["号码13 155电", "子邮箱"]
    kept = within_segments(words, text, [(0.0, 1.8, "号码13155"), (3.1, 4.6, "电子邮箱")])
    assert kept[3] == Word(3.1, 3.3, "电") and kept[:3] == words[:3] and kept[4:] == words[4:]
    first, second = place(window, pieces, kept)
    assert spelled(text, [first, second]) == ["号码13155", "电子邮箱"]  # digits as the window wrote them
    assert within_segments(words, text, [(0.0, 1.8, "别的")]) == words  # segments not in the text: as they were
    assert spelled(text, [second, first]) is None  # units out of the text's order


def test_timestamp_tokens_become_segments():
    begin = 1000
    ts = lambda t: begin + round(t / 0.02)  # noqa: E731
    ids = [ts(0.0), 1, 2, ts(2.88), ts(2.88), 3, ts(5.68), ts(6.5), 4, 5]
    text, segments = timestamp_segments(ids, begin, lambda t: "".join(chr(0x4E00 + i) for i in t), 9.0)
    assert text == [1, 2, 3, 4, 5]
    assert segments == ((0.0, 2.88, "丁丂"), (2.88, 5.68, "七"), (6.5, 9.0, "丄丅"))  # the open last one runs to the end


def test_prompt_echo_is_removed_and_speech_with_a_hotword_is_not():
    prompt = "客服 验证码 手机号 账户 优惠券 订单 退款"
    assert is_prompt_echo("客服 验证码 手机号 账户 优惠券", prompt)
    assert is_prompt_echo("客服验证码手机号账户", prompt)
    assert not is_prompt_echo("我的订单什么时候退款", prompt)  # two terms inside real speech
    assert not is_prompt_echo("客服 验证码 手机号", None)
    assert is_prompt_echo("上一通电话客户问的是退款进度", "上一通电话客户问的是退款进度。")  # a sentence said back
    t = Transcript("客服 验证码 手机号 账户 优惠券", [], False, False, avg_logprob=-0.3, no_speech_prob=0.1)
    assert judge(t, TranscribeParams(), prompt)[2] == "prompt_echo"
    assert judge(t, TranscribeParams(), None)[2] is None


class EchoRuntime:
    """A model that answers every window with its prompt, the way Whisper does on silence after a
    prompt; without a prompt it says each piece's length in seconds, with timestamps when asked."""

    name = "echo"

    def decode(self, clips, prompt=None, timestamps=False):
        from zhasr.model.decode import timestamp_flags

        out = []
        for clip, timestamps in zip(clips, timestamp_flags(timestamps, len(clips))):
            if prompt:
                out.append(Transcript(prompt, [], False, False, avg_logprob=-0.2, no_speech_prob=0.1))
                continue
            seconds = len(clip) / RATE
            timed = ((0.0, seconds / 2 - 0.3, "前"), (seconds / 2 + 0.3, seconds, "后")) if timestamps else ()
            out.append(Transcript("前后" if timestamps else f"{seconds:.0f}秒", [], False, False, avg_logprob=-0.2,
                                  no_speech_prob=0.1, timed=timed))
        return out


def _two_tone_bursts() -> np.ndarray:
    """Two 2-s bursts of noise-like speech-band sound 2 s apart: two pieces of one track."""
    rng = np.random.default_rng(0)
    audio = np.zeros(s(8), dtype=np.float32)
    for start in (1.0, 5.0):
        t = np.arange(s(2)) / RATE
        audio[s(start) : s(start + 2)] = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t))
                                          + 0.02 * rng.standard_normal(s(2))).astype(np.float32)
    return audio


def test_a_window_that_echoes_its_prompt_falls_back_and_each_echo_is_removed(monkeypatch):
    from zhasr.transcribe import engine

    pieces = [(s(1), s(3)), (s(5), s(7))]
    monkeypatch.setattr(engine, "speech_spans", lambda samples, params, one_speaker=True: pieces)
    transcriber = Transcriber(EchoRuntime(), CALL, "zh")
    result = transcriber.transcribe(_two_tone_bursts(), hotwords=["客服", "验证码", "手机号", "账户"])
    assert result.segments == ()
    assert [(r.start, r.reason, r.text) for r in result.removed] == [(1.0, "prompt_echo", "客服 验证码 手机号 账户"),
                                                                    (5.0, "prompt_echo", "客服 验证码 手机号 账户")]
    assert result.timings.windows == 1 and result.timings.unplaced == 1  # decoded once packed, then piece by piece


class UnsureAligningRuntime(EchoRuntime):
    """Echo's windows, with a P(no speech) above the guard's threshold, and word times whose words the
    alignment gives low probabilities (speech said fast or through a codec)."""

    def decode(self, clips, prompt=None, timestamps=False):
        return [dataclasses.replace(t, no_speech_prob=0.9) for t in super().decode(clips, prompt, timestamps)]

    def align(self, clips, texts):
        out = []
        for clip, text in zip(clips, texts):
            seconds = len(clip) / RATE
            out.append((Word(0.2, seconds / 2 - 0.4, "前", probability=0.05),
                        Word(seconds / 2 + 0.4, seconds - 0.2, "后", probability=0.05)) if text else ())
        return out


def test_word_times_do_not_change_which_pieces_of_a_window_the_guard_keeps(monkeypatch):
    from zhasr.transcribe import engine

    monkeypatch.setattr(engine, "speech_spans", lambda samples, params, one_speaker=True: [(s(1), s(3)), (s(5), s(7))])
    transcriber = Transcriber(UnsureAligningRuntime(), CALL, "zh")
    plain, timed = (transcriber.transcribe(_two_tone_bursts(), words=words) for words in (False, True))
    assert [(seg.start, seg.text) for seg in timed.segments] == [(seg.start, seg.text) for seg in plain.segments] == [
        (1.0, "前"), (5.0, "后")]
    assert timed.removed == () and [w.word for seg in timed.segments for w in seg.words] == ["前", "后"]


def test_a_clean_window_is_placed_by_its_timestamps_without_decoding_again(monkeypatch):
    from zhasr.transcribe import engine

    monkeypatch.setattr(engine, "speech_spans", lambda samples, params, one_speaker=True: [(s(1), s(3)), (s(5), s(7))])
    packed = Transcriber(EchoRuntime(), CALL, "zh").transcribe(_two_tone_bursts())
    assert [(seg.start, seg.end, seg.text) for seg in packed.segments] == [(1.0, 3.0, "前"), (5.0, 7.0, "后")]
    assert packed.timings.windows == 1 and packed.timings.unplaced == 0
    alone = Transcriber(EchoRuntime(), dataclasses.replace(CALL, pack_pieces=False), "zh")
    assert [seg.text for seg in alone.transcribe(_two_tone_bursts()).segments] == ["2秒", "2秒"]
    # a clip (one track, shorter than whole_clip_s) is decoded whole, not cut at its pause
    whole = Transcriber(EchoRuntime(), TranscribeParams(), "zh").transcribe(_two_tone_bursts())
    assert [(seg.start, seg.end, seg.text) for seg in whole.segments] == [(0.0, 8.0, "8秒")]
    # ... and split channels keep their pieces (turns), as a call's channels do
    stereo = np.stack([_two_tone_bursts(), np.zeros(s(8), np.float32)])
    split = Transcriber(EchoRuntime(), TranscribeParams(), "zh").transcribe(stereo, channels="split")
    assert [(seg.start, seg.text) for seg in split.segments if seg.speaker == "agent"] == [(1.0, "前"), (5.0, "后")]


@pytest.mark.parametrize("bad", [{"pack_window_s": 40.0}, {"pack_gap_s": -1.0}])
def test_packing_settings_are_range_checked(bad):
    from zhasr.config import ConfigError, params_from_dict

    with pytest.raises(ConfigError, match=f"transcribe.{next(iter(bad))}"):
        params_from_dict({"transcribe": bad})


def _segment(start: float, end: float, channel: int, text: str) -> Segment:
    return Segment(id=-1, start=start, end=end, text=text, channel=channel, speaker=("agent", "customer")[channel],
                   avg_logprob=-0.2 if channel else -0.4, no_speech_prob=0.1, compression_ratio=1.0,
                   words=(Word(start, end, text),))


def test_a_two_channel_call_tells_its_parties_apart_by_loudness():
    """Mixed, a two-channel call's pieces still become turns: each piece's party is the channel that carries
    it, when one does."""
    from zhasr.transcribe.media import CallAudio

    rng, second = np.random.default_rng(0), 16000
    agent, customer = np.zeros(4 * second), np.zeros(4 * second)
    agent[: 2 * second] = rng.normal(0, 0.1, 2 * second)
    customer[2 * second :] = rng.normal(0, 0.1, 2 * second)
    leaking = np.stack([agent + 0.1 * customer, customer + 0.1 * agent]).astype(np.float32)  # -20 dB of echo
    call = CallAudio(leaking, 8000, "pcm_mulaw")
    assert call.louder_channel(0.0, 2.0) == 0 and call.louder_channel(2.0, 4.0) == 1
    assert call.louder_channel(1.0, 3.0) is None  # both parties at once
    assert CallAudio(np.stack([agent, agent]).astype(np.float32), 8000, "pcm_mulaw").louder_channel(0.0, 2.0) is None
    assert CallAudio(agent[None].astype(np.float32), 8000, "pcm_mulaw").louder_channel(0.0, 2.0) is None
    # a call whose second channel is dead holds both parties on the first: nothing tells them apart
    segments = [_segment(0.2, 1.8, 0, "您好"), _segment(2.2, 3.8, 0, "我要退款")]
    assert Transcriber._parties("mix", call, segments) == [0, 1]
    dead = CallAudio(np.stack([agent + customer, np.zeros_like(agent)]).astype(np.float32), 8000, "pcm_mulaw")
    assert Transcriber._parties("mix", dead, segments) == [None, None]
    assert Transcriber._parties("split", dead, segments) == [0, 0]


def test_pieces_of_one_channel_with_nobody_between_become_one_turn():
    from zhasr.transcribe.engine import merge_turns

    segments = [_segment(0.0, 2.0, 0, "您好"), _segment(3.0, 5.0, 0, "请问"),  # 1-s pause: one turn
                _segment(5.5, 7.0, 1, "我要退款"),  # the customer answers
                _segment(7.5, 9.0, 0, "好的"), _segment(12.0, 13.0, 0, "稍等"),  # 3-s pause: two turns
                _segment(13.5, 14.0, 1, "嗯")]
    channels = [s.channel for s in segments]
    turns = merge_turns(segments, channels, pause_s=2.0, max_s=30.0)
    assert [(t.start, t.end, t.channel, t.text) for t in turns] == [
        (0.0, 5.0, 0, "您好请问"), (5.5, 7.0, 1, "我要退款"), (7.5, 9.0, 0, "好的"), (12.0, 13.0, 0, "稍等"),
        (13.5, 14.0, 1, "嗯")]
    assert [w.word for w in turns[0].words] == ["您好", "请问"] and turns[0].avg_logprob == pytest.approx(-0.4)
    # a turn is never longer than max_s; 0 s of pause merges nothing
    assert len(merge_turns(segments[:2], channels[:2], pause_s=2.0, max_s=4.0)) == 2
    assert len(merge_turns(segments, channels, pause_s=0.0, max_s=30.0)) == len(segments)
    # where nobody can tell whose a piece is, it stays a segment of its own
    assert len(merge_turns(segments, [None] * len(segments), pause_s=2.0, max_s=30.0)) == len(segments)
