"""E-mail addresses in call text: as written ("zhangsan@163.com"), as a recognizer writes one said aloud
(a Latin name, a mail domain and a Latin "com": "suyen0625 163 com"), after a word naming one ("邮箱") up to
its "点" or "com", and ended by a ".com" heard in Chinese characters ("点康古")."""

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
# a mail domain as said: three digits (163, 126, 139, 188: written as digits or numerals) or a provider
_MAIL_DOMAIN = r"(?:[\d零一二三四五六七八九幺]{3}|qq|gmail|foxmail|hotmail|outlook|sina|sohu|yeah|aliyun|icloud)"
_MAIL_END = re.compile(rf"(?<![A-Za-z0-9]){_MAIL_DOMAIN}\s*(?:点|\.)?\s*{_TLD}", re.IGNORECASE)
# an address as a recognizer writes it, with no naming word before it: a Latin name, "@" or a space, a mail
# domain, "com" ("suyen0625 163 com"); not a web address ("www.baidu.com") nor a product ("iPhone 15 CN")
_SPOKEN_EMAIL = re.compile(rf"(?<![A-Za-z0-9.])(?!www)[A-Za-z][A-Za-z0-9]{{2,}}(?:\s*(?:@|＠|艾特|爱特)\s*|\s+)"
                           rf"{_MAIL_END.pattern}", re.IGNORECASE)
_EMAIL = re.compile(rf"(?<![A-Za-z0-9._\-])(?:{_LOCAL}){_AT}[A-Za-z0-9\-]+(?:{_DOT}[A-Za-z0-9\-]+)*{_DOT}"
                    r"(?:com|cn|net|org|edu|gov|info|io|hk|tw)(?![A-Za-z])", re.IGNORECASE)


def _email_after(text: str, start: int, end_of_address: re.Pattern[str] | None = None) -> tuple[int, int] | None:
    """(start, end) of what follows an e-mail's naming word to its last "点" and the top-level domain after
    it (its Latin letters, or the first character "com" was heard as), or, with no "点" heard, to its last
    Latin top-level domain ("jianyong367 139 com"); with ``end_of_address``, to its last match only.
    Within ``_EMAIL_CHARS`` characters and the sentence, at least 6 characters; None without an end."""
    while start < len(text) and text[start] in CONNECTORS:
        start += 1
    stop = min(len(text), start + _EMAIL_CHARS)
    end = next((j for j in range(start, stop) if text[j] in "。？！?!，,"), stop)
    dot = text.rfind("点", start, end)
    if 0 <= dot < end - 1 and end_of_address is None:
        tld = re.match(r"\s*[A-Za-z]+", text[dot + 1:end]) or re.match(r"[^\s\d]", text[dot + 1:end])
        end = dot + 1 + tld.end() if tld else dot + 1
    else:  # searched in the whole text, so that "company" past the window is not read as "com"
        ends = [m.end() for m in (end_of_address or _LATIN_TLD).finditer(text, start) if m.end() <= end]
        if not ends:
            return None
        end = ends[-1]
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


def addresses_by_their_com(text: str) -> list[tuple[int, tuple[int, int] | None]]:
    """(where the address starts, (start, end) or None) for each ".com" heard in characters: from a naming
    word or "发到" in its clause, else from the clause's start; None when less than 3 characters come before it."""
    words, found = heard(_EMAIL_WORDS + _SEND_TO_WORDS, text), []
    for dot, end in _heard_com_ends(text):
        start = _address_before(text, dot, words)
        found.append((start, (start, end) if dot - start >= 3 else None))
    return found


def addresses_after_words(text: str) -> list[tuple[int, tuple[int, int] | None]]:
    """(the naming word's start, (start, end) or None) for each address named: after "邮箱", to its "点" or
    Latin "com"; after "发到", to a mail domain and a Latin "com"."""
    return ([(start, _email_after(text, end)) for start, end in heard(_EMAIL_WORDS, text)]
            + [(start, _email_after(text, end, _MAIL_END)) for start, end in heard(_SEND_TO_WORDS, text)])
