"""Error rates, hotword recall, the paired bootstrap and slices, on hand-checked examples."""

import numpy as np
import pytest

from zhasr.evaluation.bootstrap import paired_bootstrap_gain
from zhasr.evaluation.metrics import (
    UtteranceEdits,
    character_error_rate,
    hotword_recall,
    is_hallucination,
    mixed_error_rate,
    mixed_tokens,
)
from zhasr.evaluation.slices import estimate_snr_db, noise_level, slice_error_rates


def test_mixed_tokens_split_han_characters_and_latin_words():
    assert mixed_tokens("我的 E-mail 地址是ＡＢＣ１２３") == ["我", "的", "e", "mail", "地", "址", "是", "abc123"]


def test_mer_counts_an_english_word_as_one_token():
    # CER sees 5 wrong characters of "email"; MER sees one wrong word.
    cer = character_error_rate(["我的email地址"], ["我的邮件地址"])
    mer = mixed_error_rate(["我的email地址"], ["我的邮件地址"])
    assert mer.utterances == [UtteranceEdits(substitutions=1, deletions=0, insertions=1, reference_len=5)]
    assert mer.rate == pytest.approx(2 / 5)
    assert cer.rate == pytest.approx(5 / 9)


def test_edit_counts_and_confusion_pairs():
    result = character_error_rate(["您好请问", "订单号"], ["您好亲", "订单号码"])
    assert [(u.substitutions, u.deletions, u.insertions) for u in result.utterances] == [(1, 1, 0), (0, 0, 1)]
    assert result.confusions == {("请", "亲"): 1, ("问", ""): 1, ("", "码"): 1}
    assert result.cer == pytest.approx(3 / 7)


def test_hotword_recall_counts_occurrences():
    recall = hotword_recall(["订单号订单", "我要退款", "你好"], ["订单号", "我要退货", "订单"], ["订单", "退款", "快递"])
    assert recall == {"订单": (1, 2), "退款": (0, 1)}  # 快递 never said; the hypothesis' extra 订单 is no hit


def test_hallucination_is_insertion_dominated_output():
    assert is_hallucination(UtteranceEdits(0, 0, 5, 10))
    assert not is_hallucination(UtteranceEdits(4, 0, 4, 10))


def test_bootstrap_interval_excludes_zero_only_for_a_consistent_gain():
    lens = [10] * 30
    clear = paired_bootstrap_gain([1] * 30, [4] * 30, lens)
    assert clear.gain == pytest.approx(0.3) and clear.low == pytest.approx(0.3) and clear.excludes_zero
    rng = np.random.default_rng(1)
    noisy = paired_bootstrap_gain(list(rng.integers(0, 6, 30)), list(rng.integers(0, 6, 30)), lens)
    assert noisy.low < 0 < noisy.high and not noisy.excludes_zero
    with pytest.raises(ValueError, match="same non-zero number"):
        paired_bootstrap_gain([1], [1, 2], [3])


def test_bootstrap_resamples_a_speakers_clips_together():
    # 11 clips of one speaker, each 2 errors worse on the candidate, and 6 speakers of one clip each, 2 better
    cand, champ = [4] * 11 + [1] * 6, [2] * 11 + [3] * 6
    lens, speakers = [30] * 17, ["A2"] * 11 + [f"s{i}" for i in range(6)]
    by_clip = paired_bootstrap_gain(cand, champ, lens)
    by_speaker = paired_bootstrap_gain(cand, champ, lens, speakers=speakers)
    assert by_speaker.gain == by_clip.gain and (by_clip.units, by_speaker.units) == (17, 7)
    # seven draws of a voice, not seventeen: the interval is wider
    assert by_speaker.high - by_speaker.low > 1.5 * (by_clip.high - by_clip.low)
    # one speaker per clip is the clip bootstrap
    assert paired_bootstrap_gain(cand, champ, lens, speakers=[f"{i:02d}" for i in range(17)]) == by_clip
    with pytest.raises(ValueError, match="one speaker per clip"):
        paired_bootstrap_gain(cand, champ, lens, speakers=["A2"])


def test_snr_estimate_orders_clips_by_noise():
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    speech = np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)  # tone with pauses
    snrs = [estimate_snr_db(speech + rng.normal(0, 10 ** (-snr / 20) * 0.7, t.size)) for snr in (35, 20, 5)]
    assert snrs[0] > snrs[1] > snrs[2]
    assert [noise_level(s) for s in (35.0, 25.0, 10.0)] == ["clean", "moderate", "noisy"]
    assert estimate_snr_db(np.zeros(16000)) == 0.0


def test_slice_error_rates_pool_errors_per_slice():
    labels = [{"batch": "b", "band": "telephone", "noise": "clean", "speaker": "s1"},
              {"batch": "b", "band": "wideband", "noise": "clean", "speaker": "s2"}]
    edits = [UtteranceEdits(1, 0, 0, 10), UtteranceEdits(3, 0, 0, 10)]
    rates = slice_error_rates(labels, edits)
    assert rates[("batch", "b")] == (0.2, 2)
    assert rates[("band", "telephone")] == (0.1, 1) and rates[("band", "wideband")] == (0.3, 1)
