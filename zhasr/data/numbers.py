"""One written form for numbers, so that "一百三十八号" and "138号" score as the same words.

Call-center labels spell numbers in characters; Whisper writes many of them in
digits. Scored as written, each such number costs several character errors that
say nothing about hearing. Published Chinese results score after number
normalization; this is ours, applied to references and hypotheses alike:

- amounts, counts, dates and ordinals become Arabic numerals (``cn2an``):
  "一千二百五十元" -> "1250元", "二零二四年三月五号" -> "2024年3月5号";
- digit strings read digit by digit stay digit strings: "七二九五三二" and
  "幺三八" -> "729532", "138" (phone numbers, order codes, card tails);
- "两" before a unit or measure word is 2: "两件" -> "2件";
- times: "3:15", "三点十五分" -> "3点15分"; "三点半" -> "3点半";
- decimals keep their point as "点": "12.5元", "十二点五元" -> "12点5元";
- percentages: "20%", "百分之二十" -> "百分之20";
- 万/亿 after digits are multiplied out: "3.5万", "三万五" -> "35000";
- thousands separators go: "1,250" -> "1250".

A lone "一" inside a word ("一下", "统一") also becomes "1", on both sides, so it
never counts as an error by itself.
"""

from __future__ import annotations

import re
import warnings
from decimal import Decimal

import cn2an

_CN_DIGIT = "零〇一二三四五六七八九两幺"
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_CLOCK = re.compile(r"(?<!\d)(\d{1,2}):(\d{2})(?!\d)")
# "两" as a number: before a unit, a measure word or another numeral
_LIANG = re.compile(r"两(?=[十百千万亿个件位台次块元角年月周天日号点分秒岁张只条本份家种倍样层箱瓶盒斤公里米])")
# "三点十五(分)": minutes are read with 十 (a decimal's digits never are)
_CN_TIME = re.compile(rf"([{_CN_DIGIT}十]{{1,3}})点([一二三四五]?十[一二三四五六七八九]?|零[一二三四五六七八九])(分?)")
# a digit string read digit by digit ("零二一", "幺三八"), not part of a number with units
_DIGIT_RUN = re.compile(r"(?<![十百千万亿点])[零〇一二三四五六七八九幺]{2,}(?![十百千万亿点])")
_DIGIT_VALUE = {ch: str(i) for i, ch in enumerate("零一二三四五六七八九")} | {"〇": "0", "幺": "1"}
_MYRIAD = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)([万亿])(?![\d零一二三四五六七八九十百千])")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")
_DECIMAL = re.compile(r"(?<=\d)\.(?=\d)")


def _cn_to_int(numeral: str) -> str:
    return str(cn2an.cn2an(numeral.replace("两", "二").replace("〇", "零"), "smart"))


def _time(match: re.Match) -> str:
    try:
        return f"{_cn_to_int(match[1])}点{int(_cn_to_int(match[2])):02d}分"
    except ValueError:  # not a numeral cn2an reads ("零十"): a recognizer's output is scored as it is
        return match[0]


def _digit_string(match: re.Match) -> str:
    return "".join(_DIGIT_VALUE[ch] for ch in match[0])


def _myriad(match: re.Match) -> str:
    value = Decimal(match[1]) * (10_000 if match[2] == "万" else 100_000_000)
    return str(int(value)) if value == value.to_integral_value() else match[0]


def canonical_numbers(text: str) -> str:
    """Numbers of ``text`` in one written form (see the module docstring); other characters unchanged.

    ``text`` should already be NFKC-normalized and simplified (zhasr.data.text.normalize does both first).
    """
    text = _THOUSANDS.sub("", text)
    text = _CLOCK.sub(r"\1点\2分", text)
    text = _LIANG.sub("二", text)
    text = _CN_TIME.sub(_time, text)
    text = _DIGIT_RUN.sub(_digit_string, text)
    with warnings.catch_warnings():  # cn2an warns on every run of numerals it leaves as they are
        warnings.simplefilter("ignore")
        text = cn2an.transform(text, "cn2an")
    text = _MYRIAD.sub(_myriad, text)
    text = _PERCENT.sub(r"百分之\1", text)
    return _DECIMAL.sub("点", text)
