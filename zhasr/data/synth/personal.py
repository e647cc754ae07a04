"""Call-center sentences that carry personal data, for measuring redaction: phone, ID-card and bank-card
numbers, verification codes and e-mail addresses, each said one way and written one of several ways,
and sentences with numbers that are not personal data (orders, amounts, dates, times, staff numbers).

Each sentence has what the voice says (numerals read digit by digit, "幺" for 1 in phone numbers, a
pause between groups) and a reference text in one written form: as said, in digits, in groups with
spaces or dashes, or mixed (digits and numerals). Numbers are valid: a phone number has an allocated
mobile prefix, an ID-card number a province, a birth date and its check character, a bank card passes
Luhn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pypinyin import Style, lazy_pinyin

from zhasr.calltext.checks import id_check_char, luhn_ok
from zhasr.config import PersonalNaming
from zhasr.data.synth.voice import to_pinyin
from zhasr.data.synth.words import DIGITS, GIVEN_NAMES, SURNAMES, count_zh, int_zh

FORMS = ("said", "digits", "spaced", "dashed", "mixed")

_TEMPLATES = {
    "phone": ("我的[手机号]是{n}。", "您好，我的[电话]是{n}，麻烦尽快联系我。", "请记一下，{n}，这是我的联系方式。",
              "收件人[电话]{n}，地址不变。", "你打这个号码{n}就能找到我。", "好的，跟您核对一下，[手机号码]{n}对吗？",
              "我换号了，新号码是{n}。", "有问题请回拨{n}，谢谢。"),
    "id_card": ("我的[身份证号]是{n}。", "[身份证号码]{n}，您核对一下。", "[证件号]是{n}。", "好的，{n}，这是我的[身份证]。",
                "请报一下您的[身份证号]。好的，{n}。", "我[身份证号码]是{n}，名字是本人。"),
    "bank_card": ("我的[银行卡号]是{n}。", "退款请打到这张卡上，[卡号]{n}。", "[卡号]是{n}，开户行是建设银行。",
                  "[信用卡号]{n}，请帮我查一下账单。", "这张卡{n}是我本人的。", "请核对一下[卡号]，{n}，对吗？"),
    "code": ("[验证码]是{n}，请在五分钟内输入。", "我收到的[验证码]是{n}。", "[取件码]{n}，麻烦帮我看一下。",
             "您的[动态密码]是{n}。", "短信里的[校验码]是{n}对吗？", "卡背面的[安全码]是{n}。"),
    "email": ("我的[邮箱]是{n}。", "发到我的[邮箱]{n}就行。", "[电子邮箱]{n}，您记一下。", "发票请发到{n}，谢谢。"),
}
# The nouns that name a number of each kind, as callers say them; each holds a word the rules read as naming
# it (calltext.pii, calltext.email). A frame's own noun is in brackets; with naming "any" it is replaced by one
# drawn from its kind's list, so a model trained on a few frames hears every noun.
NAMING_WORDS = {
    "phone": ("手机号", "手机号码", "电话", "电话号码", "联系电话", "手机"),
    "id_card": ("身份证号", "身份证号码", "证件号", "证件号码", "身份证"),
    "bank_card": ("卡号", "银行卡号", "银行卡", "信用卡号", "借记卡号", "储蓄卡号"),
    "code": ("验证码", "短信验证码", "校验码", "动态码", "动态密码", "取件码", "提货码", "激活码", "安全码", "授权码",
             "密码"),
    "email": ("邮箱", "电子邮箱", "邮箱地址", "电子邮件"),
}
_NOUN = re.compile(r"\[(.+?)\]")
_OTHER = ("订单号是{order}，麻烦您帮我查一下。", "快递单号{order}，显示还在转运中心。", "退款金额是{amount}。",
          "我{date}下的单，一共买了{count}件商品。", "手机尾号{tail}。", "您好，工号{staff}为您服务。",
          "师傅{time}上门可以吗？", "这个月多扣了我{amount}。", "手机号后四位是{tail}。", "运单号{order}已经签收了。")
_PROVINCES = (11, 12, 13, 31, 32, 33, 34, 35, 37, 41, 42, 43, 44, 45, 50, 51, 53, 61, 62, 65)
_MOBILE_PREFIXES = ("130", "131", "132", "135", "136", "137", "138", "139", "150", "151", "152", "158", "159",
                    "166", "176", "177", "180", "181", "186", "187", "188", "189", "198", "199")
_DOMAINS = (("163", "com"), ("126", "com"), ("139", "com"), ("188", "com"))


@dataclass(frozen=True)
class PiiSentence:
    said: str  # what the voice says: Han characters and punctuation only (pinyin for the e-mail's letters)
    text: str  # the reference text, the number in ``form``
    kind: str  # one of zhasr.calltext.pii.KINDS, or "" for a sentence without personal data
    value: str  # the number's digits (the address for an e-mail), "" without
    start: int  # the number's characters in ``text``
    end: int
    form: str  # one of FORMS
    pinyin_override: str | None = None  # espeak-ng pinyin when ``said`` holds Latin letters (e-mail)
    frame: int = 0  # which sentence frame of its kind (or of the sentences without personal data) it fills

    @property
    def pinyin(self) -> str:
        """What espeak-ng is given to say the sentence."""
        return self.pinyin_override or to_pinyin(self.said)


Frames = Literal["all", "even", "odd"]  # the sentence frames drawn from, by their index


def _frame(rng: np.random.Generator, count: int, frames: Frames) -> int:
    """A frame index below ``count``; "all" draws exactly as sets made before frames could be chosen."""
    if frames == "all":
        return int(rng.integers(count))
    allowed = range(0 if frames == "even" else 1, count, 2)
    return allowed[int(rng.integers(len(allowed)))]


def _named(template: str, kind: str, naming: PersonalNaming, rng: np.random.Generator) -> str:
    """``template`` with its bracketed noun kept (``naming`` "frame") or replaced by one drawn from
    ``NAMING_WORDS[kind]`` ("any"); a frame without one ("这张卡{n}", "请回拨{n}") draws nothing."""
    match = _NOUN.search(template)
    if match is None:
        return template
    noun = match[1]
    if naming == "any":
        words = NAMING_WORDS[kind]
        noun = words[int(rng.integers(len(words)))]
    return template[:match.start()] + noun + template[match.end():]


def _digits(rng: np.random.Generator, n: int) -> str:
    return "".join(str(int(d)) for d in rng.integers(0, 10, n))


def phone_number(rng: np.random.Generator) -> str:
    return _MOBILE_PREFIXES[int(rng.integers(len(_MOBILE_PREFIXES)))] + _digits(rng, 8)


def id_card_number(rng: np.random.Generator) -> str:
    born = f"{int(rng.integers(1950, 2006))}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
    first17 = f"{_PROVINCES[int(rng.integers(len(_PROVINCES)))]}{_digits(rng, 4)}{born}{_digits(rng, 3)}"
    return first17 + id_check_char(first17)


def bank_card_number(rng: np.random.Generator) -> str:
    body = "62" + _digits(rng, int(rng.choice([13, 14, 15, 16])))
    return next(body + check for check in "0123456789" if luhn_ok(body + check))


def _groups(kind: str, value: str) -> list[str]:
    sizes = {"phone": (3, 4, 4), "id_card": (6, 8, 4), "bank_card": (4,) * 5}.get(kind, (len(value),))
    out, at = [], 0
    for size in sizes:
        if at < len(value):
            out.append(value[at:at + size])
            at += size
    if at < len(value):
        out[-1] += value[at:]
    return out


def _numerals(digits: str, yao: bool) -> str:
    return "".join("叉" if d == "X" else ("幺" if yao and d == "1" else DIGITS[int(d)]) for d in digits)


def _written(groups: list[str], form: str, yao: bool) -> str:
    """The number in a written form other than as said."""
    if form == "spaced":
        return " ".join(groups)
    if form == "dashed":
        return "-".join(groups)
    if form == "mixed":  # digits and numerals in turn, by group (a single group by halves)
        parts = groups if len(groups) > 1 else [groups[0][:len(groups[0]) // 2], groups[0][len(groups[0]) // 2:]]
        return "".join(g if i % 2 == 0 else _numerals(g, yao) for i, g in enumerate(parts))
    return "".join(groups)


def _email(rng: np.random.Generator, form: str) -> tuple[str, str, str, str]:
    """(written, said, pinyin, address) of an e-mail address: a name in pinyin, digits, a mail domain."""
    name = SURNAMES[int(rng.integers(len(SURNAMES)))] + GIVEN_NAMES[int(rng.integers(len(GIVEN_NAMES)))]
    letters = lazy_pinyin(name)
    tones = lazy_pinyin(name, style=Style.TONE3, neutral_tone_with_five=True)
    number = _digits(rng, int(rng.integers(2, 5)))
    domain, tld = _DOMAINS[int(rng.integers(len(_DOMAINS)))]
    address = f"{''.join(letters)}{number}@{domain}.{tld}"
    said = f"{''.join(letters)}{_numerals(number, False)}艾特{_numerals(domain, True)}点{tld}"
    pinyin = " ".join([*tones, *lazy_pinyin(_numerals(number, False) + "艾特" + _numerals(domain, True) + "点",
                                            style=Style.TONE3, neutral_tone_with_five=True), "kang1", "mu3"])
    written = {"said": f"{''.join(letters)}{number} 艾特 {domain} 点 {tld}",
               "spaced": f"{''.join(letters)}{number} @ {domain} . {tld}"}.get(form, address)
    return written, said, pinyin, address


def personal_sentence(rng: np.random.Generator, kind: str, form: str, frames: Frames = "all",
                      naming: PersonalNaming = "frame") -> PiiSentence:
    """One sentence with a number of ``kind`` written in ``form``, in one of ``frames``, named by the frame's
    own noun or (``naming`` "any") by any of ``NAMING_WORDS[kind]``."""
    frame = _frame(rng, len(_TEMPLATES[kind]), frames)
    template = _named(_TEMPLATES[kind][frame], kind, naming, rng)
    head, tail = template.split("{n}")
    if kind == "email":
        written, said, pinyin, value = _email(rng, form)
        pinyin = " ".join(p for p in (to_pinyin(head) if head else "", pinyin, to_pinyin(tail) if tail else "") if p)
        return PiiSentence(head + said + tail, head + written + tail, kind, value, len(head), len(head) + len(written),
                           form, pinyin, frame)
    value = {"phone": phone_number, "id_card": id_card_number, "bank_card": bank_card_number}.get(
        kind, lambda r: _digits(r, int(r.choice([3, 4, 6, 6, 8]) if "安全码" not in template else 3)))(rng)
    groups = _groups(kind, value)
    yao = kind == "phone" and rng.random() < 0.7
    pause = kind != "code" and rng.random() < 0.5
    number_said = ("，" if pause else "").join(_numerals(g, yao) for g in groups)
    written = number_said if form == "said" else _written(groups, form, yao)
    return PiiSentence(head + number_said + tail, head + written + tail, kind, value, len(head),
                       len(head) + len(written), form, frame=frame)


def other_sentence(rng: np.random.Generator, form: str, frames: Frames = "all") -> PiiSentence:
    """A sentence with numbers that are not personal data (order number, amount, date, time, staff number)."""
    frame = _frame(rng, len(_OTHER), frames)
    template = _OTHER[frame]
    order = _digits(rng, int(rng.integers(10, 20)))
    slots_said = {"order": _numerals(order, False), "amount": int_zh(int(rng.integers(10, 5000))) + "元",
                  "date": f"{int_zh(int(rng.integers(1, 13)))}月{int_zh(int(rng.integers(1, 29)))}号",
                  "count": count_zh(int(rng.integers(1, 10))), "tail": _numerals(_digits(rng, 4), False),
                  "staff": _numerals(_digits(rng, int(rng.integers(3, 6))), False),
                  "time": f"下午{count_zh(int(rng.integers(1, 6)))}点"}
    said = template.format(**slots_said)
    text = template.format(**{**slots_said, "order": order if form in ("digits", "spaced", "dashed") else
                              slots_said["order"]})
    return PiiSentence(said, text, "", "", 0, 0, form, frame=frame)


def personal_set(seed: int, per_kind: int, others: int, kinds=tuple(_TEMPLATES), frames: Frames = "all",
                 naming: PersonalNaming = "frame") -> list[PiiSentence]:
    """``per_kind`` sentences of each kind and ``others`` without personal data, forms in turn; ``frames``
    "even" and "odd" split every kind's sentence frames in two, for training on one half and judging on the
    other; ``naming`` as ``personal_sentence``'s."""
    rng = np.random.default_rng(seed)
    out = [personal_sentence(rng, kind, FORMS[i % len(FORMS)], frames, naming) for kind in kinds
           for i in range(per_kind)]
    return out + [other_sentence(rng, FORMS[i % len(FORMS)], frames) for i in range(others)]
