"""Numbers written as digits for people to read: "三百二十八元" -> "328元", "幺三八一二三四五六七八" ->
"13812345678", "二零二六年三月五号" -> "2026年3月5号", "下午三点十五分" -> "下午3:15", "百分之二十" -> "20%".

Inverse text normalization for display, not for scoring (``zhasr.data.numbers`` writes one form of both
sides for that). It converts only what is certainly a number, so words built of numerals keep them:
"一下", "统一", "一心一意", "星期一", "一个问题" and "一五一十" stay as they are.

- digit strings read digit by digit (at least three numerals, or two before 年): each numeral a digit,
  separators kept ("幺三八 一二三四" -> "138 1234");
- percentages: 百分之 and a value;
- clock times: a numeral hour before 点 followed by minutes, 半, 钟 or 整, or after a time of day;
- values with a unit: a numeral with 十/百/千/万/亿 or a decimal before a measure word or unit
  (``cn2an``); a single numeral only before a unit of money, date, age or duration.
"""

from __future__ import annotations

import re

import cn2an

_NUMERAL = "零〇一二三四五六七八九幺"
_DIGIT_VALUE = {ch: str(i) for i, ch in enumerate("零一二三四五六七八九")} | {"〇": "0", "幺": "1"}
_VALUE = "零〇一二两三四五六七八九十百千万亿"
# idioms whose numerals read like a digit string
_IDIOMS = ("一五一十", "七七八八", "一二一", "三三两两", "十之八九", "九九八十一")

_RUN = re.compile(rf"(?<![{_VALUE}点])[{_NUMERAL}](?:[ \-]?[{_NUMERAL}0-9]){{2,}}(?![{_VALUE}点])"
                  rf"|(?<![{_VALUE}点])[{_NUMERAL}]{{2}}(?=年)")
_PERCENT = re.compile(rf"百分之([{_VALUE}]+(?:点[{_NUMERAL}]+)?)")
_TIME_OF_DAY = "上午|下午|晚上|凌晨|中午|早上|傍晚|夜里"
_CLOCK = re.compile(rf"(?<![{_VALUE}])([一二两三四五六七八九十]{{1,3}})点"
                    rf"(?:([一二三四五]?十[一二三四五六七八九]?|零[一二三四五六七八九])(?:分|(?![{_VALUE}]|元|块|角|毛))"
                    rf"|(半|钟|整))")
_DAYTIME_HOUR = re.compile(rf"({_TIME_OF_DAY})([一二两三四五六七八九十]{{1,3}})点")
_MEASURES = ("元|块(?!儿)|角|毛|分钟|分|小时|秒|年|个月|月|号|日|天|周|星期|岁|个|件|次|位|台|张|只|条|本|份|家|种|倍|"
             "层|楼|栋|室|箱|瓶|盒|斤|公斤|克|公里|米|期|折|单|笔|元钱|块钱|G|寸")
_SINGLE_UNITS = "元|块(?!儿)|角|月|号|日|岁|小时|分钟|秒|楼|层|栋|折|期"
_BIG_VALUE = re.compile(rf"(?<![{_VALUE}点几数])((?=[{_VALUE}]*[十百千万亿])[{_VALUE}]+(?:点[{_NUMERAL}]+)?"
                        rf"|[{_VALUE}]+点[{_NUMERAL}]+)(?=(?:{_MEASURES}))")
_SINGLE = re.compile(rf"(?<![{_VALUE}点第])([一二三四五六七八九])(?=(?:{_SINGLE_UNITS}))")


def _value(numeral: str) -> str:
    value = cn2an.cn2an(numeral.replace("两", "二").replace("〇", "零"), "smart")
    return str(int(value)) if float(value).is_integer() else str(value)


def _safe(convert):
    """A converter that leaves the match as it is when cn2an cannot read it."""
    def apply(match: re.Match) -> str:
        try:
            return convert(match)
        except (ValueError, KeyError):
            return match[0]
    return apply


def _digits(match: re.Match) -> str:
    return "".join(_DIGIT_VALUE.get(ch, ch) for ch in match[0])


def _clock(match: re.Match) -> str:
    hour, minutes, word = match[1], match[2], match[3]
    if minutes:
        return f"{_value(hour)}:{int(_value(minutes)):02d}"
    return f"{_value(hour)}点{word}"


def numbers_to_digits(text: str) -> str:
    """``text`` with its numbers as digits (see the module docstring); everything else unchanged."""
    kept = {}
    for k, idiom in enumerate(_IDIOMS):  # fenced off from every rule
        if idiom in text:
            kept[f"\x00{k}\x00"] = idiom
            text = text.replace(idiom, f"\x00{k}\x00")
    text = _PERCENT.sub(_safe(lambda m: f"{_value(m[1])}%"), text)
    text = _CLOCK.sub(_safe(_clock), text)
    text = _DAYTIME_HOUR.sub(_safe(lambda m: f"{m[1]}{_value(m[2])}点"), text)
    text = _RUN.sub(_digits, text)
    text = _BIG_VALUE.sub(_safe(lambda m: _value(m[1])), text)
    text = _SINGLE.sub(lambda m: _DIGIT_VALUE[m[1]], text)
    for fence, idiom in kept.items():
        text = text.replace(fence, idiom)
    return text
