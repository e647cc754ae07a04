"""Words as a speech recognizer writes them: homophones of what was said. Text is compared by its toneless
pinyin with zh/z, ch/c, sh/s, n/l and -ng/-n taken as one."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from pypinyin import lazy_pinyin

CONNECTORS = "是为：: "  # between a naming word and what it names
_SOUND_MERGES = ((re.compile(r"^([zcs])h"), r"\1"), (re.compile(r"^l"), "n"), (re.compile(r"ng$"), "n"))


def is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


def _sound(syllable: str) -> str:
    for pattern, replacement in _SOUND_MERGES:
        syllable = pattern.sub(replacement, syllable)
    return syllable


@lru_cache(maxsize=4096)
def sounds(text: str) -> tuple[str, ...]:
    """One toneless, merged syllable per character (non-Han characters as they are)."""
    return tuple(_sound(p) if len(p) > 1 or p.isalpha() else p for p in lazy_pinyin(text, errors=lambda s: list(s)))


def heard(words: Sequence[str], text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of each of ``words`` heard in ``text`` (none inside a longer one). A
    word of three syllables or more is heard with one of them misheard ("动态立马" for 动态密码), as long as
    its first and last are right."""
    syllables = sounds(text)
    if len(syllables) != len(text):
        return []
    spans = set()
    for word in words:
        target = sounds(word)
        allowed = 1 if len(target) >= 3 else 0
        for i in range(len(syllables) - len(target) + 1):
            window = syllables[i:i + len(target)]
            misses = sum(a != b for a, b in zip(window, target))
            if misses <= allowed and window[0] == target[0] and window[-1] == target[-1]:
                spans.add((i, i + len(target)))
    # the longest word heard there: "邮箱地址" is a naming word, not "邮箱" and then an address "地址…"
    return sorted(s for s in spans if not any(o != s and o[0] <= s[0] and s[1] <= o[1] for o in spans))
