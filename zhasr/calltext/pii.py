"""Personal data in call text: phone, ID-card and bank-card numbers, verification codes and e-mail
addresses, found in every written form a transcript or a label uses.

A number may be written in digits ("13812345678"), in Chinese numerals read digit by digit
("幺三八一二三四五六七八"), mixed ("138一二三四5678"), and with spaces, dashes or commas between
groups ("138-1234-5678", "138，1234，5678"). Each run of digits is read as one digit string, then
tested kind by kind:

- **id_card**: 18 characters (the last may be X, said "叉"), the resident ID's ISO 7064 MOD 11-2
  check digit, a province code and a real birth date; or, as a misheard digit leaves one, 15 to 19
  digits with a province code and a year of birth in its place (``id_card_shaped``);
- **bank_card**: 16 to 19 digits that pass Luhn, or that start with UnionPay's 62 (``unionpay_shaped``);
- **phone**: 11 digits with a mainland mobile prefix (13x-19x, the allocated second digits), optionally
  after 86; or 0 and a 2-3 digit area code and 7-8 digits;
- **code**: 3 to 8 digits after a word that names a code (验证码, 密码, 取件码, 安全码, ...);
- **email**: local part, "@" (or "艾特", "at"), a domain, a dot (or "点", "dot") and a top-level domain;
  or as a recognizer writes one said aloud: a Latin name, a mail domain (163, qq, ...) and a Latin "com";
- **number** (only when named, not in "all"): any other run of ``NUMBER_DIGITS`` digits or more, order
  and waybill numbers too: the net for personal numbers a recognizer garbled past recognition.

A speech recognizer gets a digit wrong now and then, and one wrong digit breaks a checksum. So a run
that follows a word naming its kind ("身份证号", "卡号", "手机", "电话") within ``CONTEXT_CHARS`` is taken
when its length is within a few digits of the kind's, checksum or not: the context says what it is.
Without such a word a run needs its checksum (or mobile prefix) to be taken, which keeps order
numbers, amounts and dates out; a hotline or short service number (400/800, 95xxx) is never a phone.
Recognizers also write words and digits as homophones ("身份正好" for 身份证号, "验证马" for 验证码, "要"
for 幺), so the words are matched by their pinyin (without tones, zh/z, ch/c, sh/s, n/l and -ng/-n
taken as one), a character that sounds like a digit is read as one between two digits, and one that
sounds like 幺 ("要", "药") as a 1 just before digits. A few short words count only as written, as their
sound is common: 证号 (ID card), 号码 (phone) and 码是 (code) would be 正好, 好吗 and 马是.

A number garbled past reading is still taken by its naming word: the stretch after the word where at
least half the characters are digits or sound like one, with three quarters of the kind's shortest
length of them (a *named stretch*); after "邮箱", what follows up to its "点" (".com") or its Latin
"com"; after "发到", up to a mail domain and a Latin "com". A ".com" heard in characters ("点康古") ends
an address even where its naming word was misheard: from that word or "发到", else from its clause's start.

The checks are in ``checks``, words matched by their sound in ``heard``, e-mail addresses in ``email``.
"""

from __future__ import annotations

import bisect
import itertools
import re
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from pypinyin import lazy_pinyin

from zhasr.calltext.checks import (
    id_card_shaped,
    mobile_prefixed,
    service_number,
    unionpay_shaped,
    valid_bank_card,
    valid_id_card,
    valid_phone,
)
from zhasr.calltext.email import addresses_after_words, addresses_by_their_end, written_addresses
from zhasr.calltext.heard import CONNECTORS, heard, is_han, sounds
from zhasr.config import RedactKind

NUMBER = "number"  # any other long digit run, when asked for by name
KINDS = tuple(k for k in typing.get_args(RedactKind) if k != NUMBER)  # personal data: what "all" redacts
NUMBER_DIGITS = 7


def placeholder(kind: str) -> str:
    """What replaces personal data of ``kind`` in redacted text: "[PHONE]"."""
    return f"[{kind.upper()}]"


PLACEHOLDERS = tuple(placeholder(kind) for kind in (*KINDS, NUMBER))


def parse_kinds(value: str) -> list[str]:
    """Kinds named by a user: "all" (the personal kinds), "none", or kinds separated by commas or spaces;
    ValueError naming an unknown one."""
    value = value.strip()
    if value in ("", "none", "false"):
        return []
    kinds = list(KINDS) if value in ("all", "true") else [k for k in re.split(r"[,，\s]+", value) if k]
    check_kinds(kinds)
    return kinds


def check_kinds(kinds: Iterable[str]) -> None:
    unknown = [k for k in kinds if k not in (*KINDS, NUMBER)]
    if unknown:
        raise ValueError(f"unknown kind {unknown[0]!r}; expected all, none or some of {', '.join((*KINDS, NUMBER))}")
CONTEXT_CHARS = 12  # how far before a run (in characters) a word naming its kind counts
AFTER_CHARS = 8  # ... and how far after it ("…，这是我的身份证")

_DIGIT_VALUE = {str(d): str(d) for d in range(10)} | {chr(0xFF10 + d): str(d) for d in range(10)} | {
    ch: str(i) for i, ch in enumerate("零一二三四五六七八九")} | {"〇": "0", "幺": "1", "洞": "0", "两": "2"}
_CHECK_X = "Xx叉Ｘｘ"  # the ID card's check character 10
# between digit groups ("." only between digits: a spoken "点" is not one; "。" where a recognizer heard a
# pause inside a number)
_SEPARATORS = " -–—,，、·.。()（）"
_MAX_GAP = 2  # separator characters allowed between two digits of one run

# code words heard by their last two syllables, their start misheard ("我收到的印振马48667", "卡背面的单权码4115",
# "短信里的条件马士七零八八五一"): only a run of digits after them is a code (``_run_only``)
_CODE_WORD_TAILS = ("证码", "全码", "验码", "件码", "态码", "信码")
# words that say what the following number is
_CONTEXT_WORDS = {
    "id_card": ("身份证", "证件号", "身份号码"),
    "bank_card": ("卡号", "银行卡", "信用卡", "账号", "储蓄卡", "借记卡", "张卡"),
    "phone": ("手机", "电话", "联系方式", "打给我", "回拨", "来电"),
    "code": ("验证码", "校验码", "动态码", "动态密码", "短信码", "取件码", "提货码", "激活码", "安全码", "密码", "口令",
             "授权码", *_CODE_WORD_TAILS),
}
# Naming words matched only as written (by sound, 证号 is 正好, 号码 好吗 and 码是 马是), and only where no
# other naming word, nor a word saying "not personal data", runs up to them (身份证号码, 营业执照证号, 起码是).
# 证号 is what is left of 身份证号 when 身份 is misheard ("认识证号码"); 码是, of a code word whose start was
# misheard ("卡背面的三拳码是953"); 号码 names a phone number only after a word pointing at one ("新号码",
# "这个号码"), not in 发票号码 or 会员号码.
_WRITTEN_CONTEXT_WORDS = {
    "id_card": re.compile(r"证号"),
    "phone": re.compile(r"(?:^|(?<=[^\u4e00-\u9fff])|(?<=[的新个这那换]))号码"),
    "code": re.compile(r"(?<!号)码是"),  # 号码是: a phone number's word, or 发票号码 and its kin
}
_WRITTEN_WORD_REACH = 4  # characters between a "not personal data" word and a written naming word it governs
# after these (and a code word's tail) only a run of digits is a code: a stretch that sounds like digits is too
# often a size or a price
_RUN_ONLY_WORDS = ("码是",)
# words that say the following number is none of them (checksums pass by chance: 1 in 10 for Luhn);
# matched as written: by sound, "新号" would be "型号"
_NOT_PERSONAL_WORDS = ("订单", "单号", "运单", "快递", "工号", "尾号", "后四位", "编号", "流水号", "批次", "型号", "金额",
                       "邮编", "编码", "条码", "二维码", "代码", "页码", "起码", "尺码", "价码", "货码", "条形码", "执照", "合格证",
                       "许可证")
# lengths a number of each kind may have when a word names it (ID cards issued before 1999: 15 digits)
# (a local landline without its area code: 7 or 8 digits)
_LENGTHS = {"id_card": range(14, 21), "bank_card": range(12, 21), "phone": range(7, 14), "code": range(3, 9)}
# a named stretch of a phone number is measured against a mobile number's length less two: against 7, too
# many stretches that only sound like digits were taken (decoded precision 81-87 %)
_STRETCH_LENGTHS = _LENGTHS | {"phone": range(9, 14)}
_LONGEST = max(r.stop - 1 for r in _LENGTHS.values())  # digits in the longest number of any kind
_UNITS = set("十百千万亿")
_DIGIT_SOUNDS = {"ling": "0", "yi": "1", "yao": "1", "er": "2", "san": "3", "si": "4", "wu": "5", "liu": "6", "qi": "7",
                 "ba": "8", "jiu": "9"}
# a named stretch (see _named_stretches): syllables heard as digits (merged sounds; 球 for 九) and how
# many syllables that are not may come in a row before the stretch has the kind's shortest length
_DIGIT_LIKE = {"nin", "yi", "yao", "er", "lian", "san", "si", "wu", "niu", "qi", "ba", "jiu", "qiu"}
_STRETCH_GAP = 3
_STRETCH_SHARE = 0.75  # of the kind's shortest length that a stretch must sound like digits: some are lost


@dataclass(frozen=True)
class Found:
    kind: str  # one of KINDS, or NUMBER
    start: int  # character offsets in the text, end exclusive
    end: int


@dataclass(frozen=True)
class _Run:
    start: int
    end: int
    digits: str  # the run's digits (and a final X), separators left out
    groups: tuple[tuple[int, int, str], ...]  # (start, end, digits) of each group between separators


def _runs(text: str) -> list[_Run]:
    """Maximal runs of digit characters, at most ``_MAX_GAP`` separators between two groups. After a
    separator, a lone Chinese numeral starts a word ("，一共"), not a group."""
    runs: list[_Run] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] not in _DIGIT_VALUE:
            i += 1
            continue
        groups: list[tuple[int, int, str]] = []
        lead = i > 0 and is_han(text[i - 1]) and text[i - 1] not in _UNITS and lazy_pinyin(text[i - 1])[0] == "yao"
        while True:
            g, digits = (i - 1, "1") if lead and not groups else (i, "")  # "要三八…": 幺 heard as 要
            while i < n and (text[i] in _DIGIT_VALUE or (sounded := _heard_digit(text, i))):
                digits += _DIGIT_VALUE.get(text[i]) or sounded
                i += 1
            if i < n and text[i] in _CHECK_X and 14 <= sum(len(x[2]) for x in groups) + len(digits) <= 18:
                i, digits = i + 1, digits + "X"  # the ID card's check character
            groups.append((g, i, digits))
            j = i
            while j < n and j - i < _MAX_GAP and text[j] in _SEPARATORS:
                j += 1
            if j == i or not _starts_group(text, j):
                if j > i and _last_digit_by_check(text, j, "".join(x[2] for x in groups)):
                    groups.append((j, j + 1, "1"))
                    i = j + 1
                break
            i = j
        runs.append(_Run(groups[0][0], i, "".join(x[2] for x in groups), tuple(groups)))
    return runs


def _without_first(run: _Run, text: str) -> _Run | None:
    """The run less its first character where a Han character comes before written digits, as the end of the
    word before: "要" read as 幺 ("我要13812345678"), a name's numeral ("张三13812345678"); None where it
    does not (a number said in numerals keeps its first one)."""
    start, end, digits = run.groups[0]
    if not (is_han(text[run.start]) and len(digits) >= 2 and text[run.start + 1].isdigit()):
        return None
    return _Run(start + 1, run.end, run.digits[1:], ((start + 1, end, digits[1:]), *run.groups[1:]))


def _whole(found: list[Found], run: _Run) -> bool:
    return len(found) == 1 and (found[0].start, found[0].end) == (run.start, run.end)


def _last_digit_by_check(text: str, j: int, digits: str) -> bool:
    """Whether a lone "一" at ``j`` that looks like a word's start ("…，一三四三，一是我本人的") is the last
    digit of the number before it: with it the number passes a card's check, without it none."""
    after = text[j + 1:j + 2]
    if text[j:j + 1] != "一" or after in _UNITS or after == "点":
        return False
    checks = (valid_bank_card, valid_id_card)
    return not any(check(digits) for check in checks) and any(check(digits + "1") for check in checks)


def _heard_digit(text: str, i: int) -> str:
    """The digit a Han character between two digits sounds like ("要" between digits: 1), else ""."""
    ch = text[i]
    if not (0 < i < len(text) - 1 and text[i - 1] in _DIGIT_VALUE and text[i + 1] in _DIGIT_VALUE and is_han(ch)
            and ch not in _UNITS):
        return ""
    return _DIGIT_SOUNDS.get(lazy_pinyin(ch)[0], "")


def _starts_group(text: str, j: int) -> bool:
    if j >= len(text) or text[j] not in _DIGIT_VALUE:
        return False
    after = text[j + 1] if j + 1 < len(text) else ""
    if after in _UNITS or after == "点":  # a value ("三百", "五点"), not a digit of this number
        return False
    return text[j] not in "一两" or not after or after in _DIGIT_VALUE or not is_han(after)


def _run_only(word: str) -> bool:
    """Whether a naming word heard as ``word`` names a run of digits only (``_RUN_ONLY_WORDS``)."""
    return word in _RUN_ONLY_WORDS or sounds(word) in {sounds(tail) for tail in _CODE_WORD_TAILS}


def _not_personal(text: str) -> list[tuple[int, int]]:
    """(start, end) of every word in ``text`` saying the number near it is not personal data."""
    return [(m.start(), m.end()) for w in _NOT_PERSONAL_WORDS for m in re.finditer(re.escape(w), text)]


@lru_cache(maxsize=1024)
def _naming_words(text: str) -> dict[str, list[tuple[int, int]]]:
    """Where each kind's naming words are heard in ``text``. A code word heard over a phone word is the
    phone word: "手机号码" sounds like 激活码 with one syllable misheard. A word of
    ``_WRITTEN_CONTEXT_WORDS`` counts where no other naming word runs up to it, and no word saying "not
    personal data" ends within ``_WRITTEN_WORD_REACH`` characters before it ("订单的号码")."""
    named = {kind: heard(words, text) for kind, words in _CONTEXT_WORDS.items()}
    named["code"] = [(s, e) for s, e in named["code"] if not any(s < pe and ps < e for ps, pe in named["phone"])]
    others = [span for spans in named.values() for span in spans]
    negative = _not_personal(text)
    for kind, pattern in _WRITTEN_CONTEXT_WORDS.items():
        named[kind] = sorted(named[kind] + [
            (m.start(), m.end()) for m in pattern.finditer(text)
            if not any(s < m.start() <= e for s, e in others)
            and not any(s < m.start() <= e + _WRITTEN_WORD_REACH for s, e in negative)])
    return named


def _context_kinds(text: str, start: int, end: int) -> set[str] | None:
    """The kinds named by a word just before ``start`` (or, failing that, just after ``end``); None when a
    word saying "not personal data" (an order number, a staff number) is nearer before than any of them."""
    window, words = start - CONTEXT_CHARS, _naming_words(text)  # words of the whole text: none cut in two
    named = {kind: max((e for s, e in spans if window <= s and e <= start), default=-1) for kind, spans in words.items()}
    negative = max((e for s, e in _not_personal(text) if window <= s and e <= start), default=-1)
    if negative >= 0 and all(at < negative for at in named.values()):
        return None
    kinds = {kind for kind, at in named.items() if at >= 0}
    if not kinds:
        kinds = {kind for kind, spans in words.items() if any(end <= s and e <= end + AFTER_CHARS for s, e in spans)}
    return kinds


def _kind_of(digits: str, context: set[str] | None, kinds: Sequence[str], whole: bool = False) -> str | None:
    """The kind a digit string is: a kind the context names whose check it passes, then one the context
    names whose length it has, then any kind whose check it passes (Luhn passes one number in ten by chance:
    a 17-digit ID heard a digit short after "身份证" is an ID card, not a bank card), then any kind whose
    shape it has (a misheard digit breaks a check, not the shape; UnionPay's 62 before an ID card's, as
    Gansu's ID numbers start 62 too). A ``whole`` run of 10 or 12 digits with a mobile prefix is a mobile
    number heard a digit short or long, named or not. Near a word saying "not personal data" (None) only a
    resident ID passing its every check is taken: its check digit, province and birth date together pass
    by chance about once in 500, far rarer than an order number passing Luhn."""
    if context is None:
        return "id_card" if "id_card" in kinds and valid_id_card(digits) else None
    checks = {"id_card": valid_id_card, "bank_card": valid_bank_card, "phone": valid_phone}
    shapes = {"bank_card": unionpay_shaped, "id_card": id_card_shaped}
    order = [k for k in ("id_card", "bank_card", "phone", "code") if k in kinds
             and not (k == "phone" and service_number(digits))]
    named = [k for k in order if k in context]
    passes = [k for k in order if k in checks and checks[k](digits)
              or k == "phone" and whole and len(digits) in (10, 12) and mobile_prefixed(digits)]
    shaped = [k for k, shape in shapes.items() if k in order and shape(digits)]
    return next((k for k in named if k in passes), None) or next(
        (k for k in named if len(digits) in _LENGTHS[k]), None) or next(iter(passes + shaped), None)


def _in_run(run: _Run, context: set[str] | None, kinds: Sequence[str]) -> list[Found]:
    """The run as one number, else its longest stretches of whole groups that are one. In a run longer
    than any phone number, a phone number needs a phone word naming it or the rest of the run taken too
    (two numbers said back to back): a stretch of a garbled card number has a mobile prefix and a phone
    number's length by chance."""
    kind = _kind_of(run.digits, context, kinds, whole=True)
    if kind:
        return [Found(kind, run.start, run.end)]
    if service_number(run.digits):  # "400-812-3456": no part of a hotline is a phone number
        kinds = [k for k in kinds if k != "phone"]
    found: list[Found] = []
    groups = run.groups
    ends = list(itertools.accumulate(len(x[2]) for x in groups))  # digits up to the end of each group
    g = 0
    while g < len(groups):
        before = ends[g - 1] if g else 0
        # stretches no longer than the longest number of any kind: a long run costs its length, not its cube
        last = min(len(groups), bisect.bisect_right(ends, before + _LONGEST)) - 1
        for h in range(last, g - 1, -1):
            if (g, h) == (0, len(groups) - 1):
                continue
            kind = _kind_of("".join(x[2] for x in groups[g:h + 1]), context, kinds)
            if kind:
                found.append(Found(kind, groups[g][0], groups[h][1]))
                g = h
                break
        g += 1
    covered = all(any(f.start <= start and end <= f.end for f in found) for start, end, _ in groups)
    if len(run.digits) > max(_LENGTHS["phone"]) and "phone" not in (context or ()) and not covered:
        return [f for f in found if f.kind != "phone"]
    return found


def _digit_like(text: str) -> list[bool]:
    """Per character: a digit, a numeral, or a Han character that sounds like one; not one that counts
    digits ("后四位是1940": the last four, a tail, not a number)."""
    syllables = sounds(text)
    syllables = syllables if len(syllables) == len(text) else tuple(text)
    return [(ch in _DIGIT_VALUE or (is_han(ch) and ch not in _UNITS and sound in _DIGIT_LIKE))
            and text[i + 1:i + 2] != "位" for i, (ch, sound) in enumerate(zip(text, syllables))]


def _stretch_after(text: str, like: list[bool], start: int, lengths: range) -> tuple[int, int] | None:
    """(start, end) of the digit-like stretch from ``start``: characters that sound like digits, at most
    ``_STRETCH_GAP`` others in a row until it is as long as the kind's shortest number, none after (a
    number longer than the kind's is masked whole, not cut at its length); None when fewer than
    ``_STRETCH_SHARE`` of that shortest length sound like digits, or less than half of the stretch does."""
    while start < len(text) and text[start] in CONNECTORS:  # "是" after the naming word is not 四
        start += 1
    start = next((j for j in range(start, min(len(text), start + _STRETCH_GAP + 1)) if like[j]), -1)
    if start < 0:
        return None
    count, gap, last = 0, 0, -1
    for j in range(start, len(text)):
        if like[j]:
            count, gap, last = count + 1, 0, j
        elif text[j] in "。？！?!":
            break
        elif text[j] not in _SEPARATORS:
            gap += 1
            if gap > _STRETCH_GAP or count >= lengths.start:
                break
    if count < _STRETCH_SHARE * lengths.start or count < (last + 1 - start) / 2:
        return None
    return start, last + 1


def _named_stretches(text: str, kinds: Sequence[str]) -> list[Found]:
    """Numbers a recognizer garbled past reading ("手机号码要撇发了三六三五七五要"): after a word naming a kind,
    the stretch that sounds like digits for about the kind's length, as that kind; after "邮箱", what
    follows to its ".com", and after "发到", to a mail domain and a Latin "com" only (where both are heard,
    the first stretch taken wins: ``_with_stretches``); before those, an address ended by a ".com" heard in
    characters or by a mail domain and a Latin "com". A word saying "not personal data" in between keeps a stretch out; so does a web address
    ("www")."""
    like, named, spans = _digit_like(text), _naming_words(text), []
    if "email" in kinds:  # first: a ".com" says what the stretch is more surely than a naming word before it
        spans += [("email", start, span) for start, span in addresses_by_their_end(text)]
    for kind in ("id_card", "bank_card", "phone", "code"):
        if kind in kinds:
            spans += [(kind, start, _stretch_after(text, like, end, _STRETCH_LENGTHS[kind]))
                      for start, end in named[kind] if not _run_only(text[start:end])]
    if "email" in kinds:
        spans += [("email", start, span) for start, span in addresses_after_words(text)]
    return [Found(kind, *span) for kind, start, span in spans
            if span and not any(w in text[start:span[1]] for w in _NOT_PERSONAL_WORDS)
            and not (kind == "phone" and service_number(
                "".join(_DIGIT_VALUE.get(ch, "") for ch in text[span[0]:span[1]])))
            and not (kind == "email" and "www" in text[span[0]:span[1]].lower())]


def _with_stretches(found: list[Found], stretches: list[Found]) -> list[Found]:
    """``found`` with the named stretches that overlap nothing found, and those (but codes) that overlap
    only spans of other kinds inside them (part of a garbled card number read as a phone number, or as a
    code), or any span inside an e-mail stretch (an address found by its shape from "san" of "zhang san"):
    those spans give way to the stretch."""
    for stretch in stretches:
        overlapping = [f for f in found if f.start < stretch.end and stretch.start < f.end]
        inside = all((f.kind != stretch.kind or f.kind == "email") and stretch.start <= f.start and f.end <= stretch.end
                     for f in overlapping)
        if not overlapping or (inside and stretch.kind != "code"):
            found = [f for f in found if f not in overlapping] + [stretch]
    return found


def redact(text: str, kinds: Iterable[str] = KINDS) -> tuple[str, list[Found]]:
    """``text`` with each span of ``kinds`` replaced by its placeholder, and the spans (offsets in ``text``
    as it was)."""
    found = find_pii(text, kinds)
    for f in reversed(found):
        text = text[:f.start] + placeholder(f.kind) + text[f.end:]
    return text, found


def find_pii(text: str, kinds: Iterable[str] = KINDS) -> list[Found]:
    """Spans of personal data of the given kinds in ``text``, in text order, not overlapping."""
    kinds = tuple(kinds)
    check_kinds(kinds)
    found: list[Found] = []
    if "email" in kinds:
        found += [Found("email", start, end) for start, end in written_addresses(text)]
    taken = [(f.start, f.end) for f in found]
    for run in _runs(text):
        if any(s < run.end and run.start < e for s, e in taken):
            continue
        if len(run.digits) >= 3:
            in_run = _in_run(run, _context_kinds(text, run.start, run.end), kinds)
            if (rest := _without_first(run, text)) and not _whole(in_run, run):
                again = _in_run(rest, _context_kinds(text, rest.start, rest.end), kinds)
                in_run = again if again and (not in_run or _whole(again, rest)) else in_run
            if not in_run and NUMBER in kinds and len(run.digits) >= NUMBER_DIGITS:
                in_run = [Found(NUMBER, run.start, run.end)]
            found += in_run
    return sorted(_with_stretches(found, _named_stretches(text, kinds)), key=lambda f: f.start)
