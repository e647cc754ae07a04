"""E-mail addresses in call text: as written ("zhangsan@163.com"), as a recognizer writes one said aloud
(a Latin name, a mail domain and a Latin "com": "suyen0625 163 com"), after a word naming one ("邮箱") up to
its "点" or "com", and ended by a ".com" heard in Chinese characters ("点康古") or by a mail domain and a Latin
"com" ("幺桧银三零一二来特13 9点com")."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pypinyin import lazy_pinyin

from zhasr.calltext.heard import CONNECTORS, heard, sounds

_EMAIL_WORDS = ("邮箱", "电子邮件", "邮件地址")
_SEND_TO_WORDS = ("发到",)  # "发票请发到…": an e-mail address only when a mail domain and a Latin "com" end it
_EMAIL_CHARS = 28  # the longest stretch taken as an e-mail address after its naming word
# ".com" as a recognizer writes it in Chinese characters: "dian" (点, or 变 / 片 / 店 as heard), 儿 maybe,
# "kang" and "mu" ("点康糊", "点儿康谋", "变康古", "点坑墓"): both syllables of "com", the first as said (with
# its -ng: "十点看母婴店" is a time and a verb), the second not "fu" ("八点康复")
_COM_DOT, _COM_FIRST = {"dian", "bian", "pian", "tian"}, {"kang", "keng", "kong"}
_COM_SECOND = {"mu", "mou", "mo", "gu", "hu", "wu", "ku"}
_ADDRESS_BREAKS = "。？！?!，,；;"  # an address heard by its ".com" does not start before one of these

_LOCAL = r"[A-Za-z0-9][A-Za-z0-9._\-]*"
_AT = r"(?:\s*(?:@|＠|艾特|爱特)\s*|\s+at\s+)"
_DOT = r"(?:\s*(?:\.|点)\s*|\s+dot\s+)"
_TLD = r"(?:com|cn|net|org)(?![A-Za-z])"
_LATIN_TLD = re.compile(rf"(?<![A-Za-z]){_TLD}", re.IGNORECASE)
# a mail domain as said: three digits (163, 126, 139, 188: written as digits or numerals, a recognizer's
# space maybe inside: "13 9") or a provider
_MAIL_DIGIT = r"[\d零一二三四五六七八九幺]"
_MAIL_DOMAIN = rf"(?:{_MAIL_DIGIT}(?: ?{_MAIL_DIGIT}){{2}}|qq|gmail|foxmail|hotmail|outlook|sina|sohu|yeah|aliyun|icloud)"
# a mail domain and its top-level domain; after a mail domain "com" may run into the next word's letters
# ("13 9 comm uch ux ing": "com 就行" heard in Latin letters)
_MAIL_END = re.compile(rf"(?<![A-Za-z]){_MAIL_DOMAIN}\s*(?:点|\.)?\s*(?:com|{_TLD})", re.IGNORECASE)
# an address as a recognizer writes it, with no naming word before it: a Latin name, "@" or a space, a mail
# domain, "com" ("suyen0625 163 com"); not a web address ("www.baidu.com") nor a product ("iPhone 15 CN")
_SPOKEN_EMAIL = re.compile(rf"(?<![A-Za-z0-9.])(?!www)[A-Za-z][A-Za-z0-9]{{2,}}(?:\s*(?:@|＠|艾特|爱特)\s*|\s+)"
                           rf"{_MAIL_END.pattern}", re.IGNORECASE)
_EMAIL = re.compile(rf"(?<![A-Za-z0-9._\-])(?:{_LOCAL}){_AT}[A-Za-z0-9\-]+(?:{_DOT}[A-Za-z0-9\-]+)*{_DOT}"
                    r"(?:com|cn|net|org|edu|gov|info|io|hk|tw)(?![A-Za-z])", re.IGNORECASE)


def _window_end(text: str, start: int) -> int:
    """Where ``_EMAIL_CHARS`` characters after ``start`` end, spaces not counted (a recognizer spells a name
    it does not know in spaced syllables: "ch eng j ia oh aw 65")."""
    counted = 0
    for j in range(start, len(text)):
        counted += not text[j].isspace()
        if counted > _EMAIL_CHARS:
            return j
    return len(text)


def _email_after(text: str, start: int, end_of_address: re.Pattern[str] | None = None) -> tuple[int, int] | None:
    """(start, end) of what follows an e-mail's naming word to its last "点" and the top-level domain after
    it (its Latin letters, or the first character "com" was heard as), or, with no "点" heard, to its last
    Latin top-level domain or mail domain's "com" ("jianyong367 139 com", "13 9 comm uch"); with
    ``end_of_address``, to its last match only. Within ``_EMAIL_CHARS`` characters (spaces not counted) and
    the sentence, at least 6 characters; None without an end."""
    while start < len(text) and text[start] in CONNECTORS:
        start += 1
    stop = _window_end(text, start)
    end = next((j for j in range(start, stop) if text[j] in "。？！?!，,"), stop)
    dot = text.rfind("点", start, end)
    if 0 <= dot < end - 1 and end_of_address is None:
        tld = re.match(r"\s*[A-Za-z]+", text[dot + 1:end]) or re.match(r"[^\s\d]", text[dot + 1:end])
        end = dot + 1 + tld.end() if tld else dot + 1
    else:  # searched in the whole text, so that "company" past the window is not read as "com"
        ends = [m.end() for pattern in ((end_of_address,) if end_of_address else (_LATIN_TLD, _MAIL_END))
                for m in pattern.finditer(text, start) if m.end() <= end]
        if not ends:
            return None
        end = max(ends)
    return (start, end) if end - start >= 6 else None


def _heard_com_ends(text: str) -> list[tuple[int, int]]:
    """(offset of its "dian", end) of each ".com" heard in characters (``_COM_DOT`` ...)."""
    syllables, said, ends = sounds(text), lazy_pinyin(text, errors=lambda s: list(s)), []
    if not len(syllables) == len(said) == len(text):
        return []
    for i in range(len(text)):
        j = i + 1 + (text[i + 1:i + 2] == "儿")
        if syllables[i] in _COM_DOT and j + 1 < len(text) and said[j] in _COM_FIRST and syllables[j + 1] in _COM_SECOND:
            ends.append((i, j + 2))
    return ends


def _address_before(text: str, dot: int, after: Sequence[tuple[int, int]]) -> int:
    """Where an address ending at ``dot`` starts: after the first word of ``after`` (naming words, "发到") in
    its clause, else where the clause starts; within ``_EMAIL_CHARS``, past any connector ("是")."""
    floor = max(dot - _EMAIL_CHARS, *(i + 1 for i in range(max(0, dot - _EMAIL_CHARS), dot)
                                       if text[i] in _ADDRESS_BREAKS), 0)
    start = min((end for begin, end in after if floor <= begin and end <= dot), default=floor)
    while start < dot and text[start] in CONNECTORS:
        start += 1
    return start


def written_addresses(text: str) -> list[tuple[int, int]]:
    """(start, end) of each address written out, or said with a Latin name and "com" (``_SPOKEN_EMAIL``)."""
    spans = [(m.start(), m.end()) for m in _EMAIL.finditer(text)]
    return spans + [(m.start(), m.end()) for m in _SPOKEN_EMAIL.finditer(text)
                    if not any(s < m.end() and m.start() < e for s, e in spans)]


def addresses_by_their_end(text: str) -> list[tuple[int, tuple[int, int] | None]]:
    """(where the address starts, (start, end) or None) for each ".com" heard in characters and each mail
    domain followed by a Latin "com" ("12 6点com"): from a naming word or "发到" in its clause, else from the
    clause's start; None when less than 3 characters come before it."""
    words, found = heard(_EMAIL_WORDS + _SEND_TO_WORDS, text), []
    for dot, end in _heard_com_ends(text) + [(m.start(), m.end()) for m in _MAIL_END.finditer(text)]:
        start = _address_before(text, dot, words)
        found.append((start, (start, end) if dot - start >= 3 else None))
    return found


def addresses_after_words(text: str) -> list[tuple[int, tuple[int, int] | None]]:
    """(the naming word's start, (start, end) or None) for each address named: after "邮箱", to its "点" or
    Latin "com"; after "发到", to a mail domain and a Latin "com"."""
    return ([(start, _email_after(text, end)) for start, end in heard(_EMAIL_WORDS, text)]
            + [(start, _email_after(text, end, _MAIL_END)) for start, end in heard(_SEND_TO_WORDS, text)])
