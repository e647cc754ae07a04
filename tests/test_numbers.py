"""Number-aware scoring: a label and a hypothesis that say the same number score as the same text."""

import pytest

from zhasr.data.text import normalize
from zhasr.evaluation.metrics import character_error_rate

# (as the label spells it, as Whisper may write it, the form both become)
SAME_NUMBER = [
    # amounts and counts
    ("退款金额是一千二百五十元", "退款金额是1250元", "退款金额是1250元"),
    ("一共三百五十块钱", "一共350块钱", "1共350块钱"),
    ("九十九块九", "99块9", "99块9"),
    ("一千二百五十元五角", "1250元5角", "1250元5角"),
    ("一千零五元", "1,005元", "1005元"),
    ("两百块", "200块", "200块"),
    ("买了两件商品", "买了2件商品", "买了2件商品"),
    ("三万五", "3.5万", "35000"),
    ("一百二十万", "120万", "1200000"),
    ("一万元", "1万元", "10000元"),
    ("十二点五元", "12.5元", "12点5元"),
    ("余额还有四十五块钱", "余额还有45块钱", "余额还有45块钱"),
    ("门牌一百零五号", "门牌105号", "门牌105号"),
    ("第一次", "第1次", "第1次"),
    # dates
    ("二零二四年三月五日", "2024年3月5日", "2024年3月5日"),
    ("两千零二十四年", "2024年", "2024年"),
    ("十一月十一号", "11月11号", "11月11号"),
    ("二零二四年十二月一号", "2024年12月1号", "2024年12月1号"),
    # times
    ("下午三点半", "下午3点半", "下午3点半"),
    ("三点十五分", "3:15", "3点15分"),
    ("七点零五分", "7:05", "7点05分"),
    ("晚上八点四十", "晚上8:40", "晚上8点40分"),
    ("明天两点", "明天2点", "明天2点"),
    # digit strings: phone numbers, codes, card tails, read digit by digit
    ("手机号一三八零零一三八零零零", "手机号13800138000", "手机号13800138000"),
    ("尾号幺三八", "尾号138", "尾号138"),
    ("区号零二一", "区号021", "区号021"),
    ("验证码是八四七二九一", "验证码是847291", "验证码是847291"),
    ("订单号七二九五三二", "订单号729532", "订单号729532"),
    ("工号一二三四", "工号1234", "工号1234"),
    ("订单AB一二三", "订单ab123", "订单ab123"),
    # percentages and decimals
    ("百分之二十", "20%", "百分之20"),
    ("百分之三点五", "3.5%", "百分之3点5"),
    ("打九点九折", "打9.9折", "打9点9折"),
    # mixed letters and numerals
    ("五G套餐", "5G套餐", "5g套餐"),
    ("全角１２３元", "全角123元", "全角123元"),
]


@pytest.mark.parametrize("label, written, canonical", SAME_NUMBER, ids=[c[0] for c in SAME_NUMBER])
def test_both_ways_of_writing_a_number_read_the_same(label, written, canonical):
    assert normalize(label, numbers=True) == canonical
    assert normalize(written, numbers=True) == canonical
    assert character_error_rate([label], [written], numbers=True).rate == 0.0


def test_raw_cer_still_counts_the_number_style_and_numbers_off_keeps_the_label():
    label, written = "订单号是七二九五三二", "订单号是729532"
    raw = character_error_rate([label], [written])
    assert raw.rate == pytest.approx(6 / 10)  # six characters against six digits, as written
    assert character_error_rate([label], [written], numbers=True).rate == 0.0
    assert normalize(label) == "订单号是七二九五三二"


def test_a_wrong_number_is_still_an_error_and_words_with_a_numeral_stay_equal():
    wrong = character_error_rate(["退款一千二百元"], ["退款1300元"], numbers=True)
    assert wrong.substitutions == 1 and wrong.reference_len == 7  # "1200" against "1300": one digit
    # a numeral inside a word is read the same on both sides: never an error by itself
    assert character_error_rate(["我查一下统一的单号"], ["我查一下统一的单号"], numbers=True).rate == 0.0
    assert normalize("我查一下", numbers=True) == "我查1下"


def test_a_time_cn2an_cannot_read_is_scored_as_written():
    """A recognizer's "零十点十" once raised out of cn2an and stopped the dev evaluation inside training."""
    assert normalize("零十点十", numbers=True) == "零十点十"
    assert character_error_rate(["十点十分"], ["零十点十"], numbers=True).reference_len > 0
