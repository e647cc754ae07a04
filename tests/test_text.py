import pytest

from zhasr.data.text import normalize
from zhasr.evaluation.metrics import character_error_rate


@pytest.mark.parametrize("raw, expected", [
    ("您好，請問有什麼可以幫您？", "您好请问有什么可以帮您"),
    ("訂單號ＡＢ１２３", "订单号ab123"),
    ("我 要 退 款 。", "我要退款"),
    ("Hello,  World!", "hello world"),
    ("VIP 会员", "vip会员"),
    ("「退货」——运费《险》", "退货运费险"),
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_cer_ignores_punctuation_script_and_width():
    result = character_error_rate(["您好，請問"], ["您好请问。"])
    assert result.cer == 0.0


def test_cer_counts_edits():
    result = character_error_rate(["您好请问", "订单号"], ["您好请", "订单号码"])
    assert (result.deletions, result.insertions, result.reference_chars) == (1, 1, 7)
    assert result.cer == pytest.approx(2 / 7)
    assert result.per_utterance == pytest.approx([0.25, 1 / 3])


def test_cer_rejects_empty_reference():
    with pytest.raises(ValueError, match="empty"):
        character_error_rate(["。"], ["好"])
