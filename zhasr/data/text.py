"""One text normalizer, shared by ingest (training labels) and evaluation (scoring).

Policy, the way published Chinese ASR results are scored:
1. Unicode NFKC: full-width letters, digits and punctuation become half-width.
2. Traditional to simplified characters (OpenCC ``t2s``).
3. Punctuation and symbols (Unicode categories P* and S*) are removed.
4. Latin letters are lower-cased; whitespace between Han characters is removed,
   whitespace between Latin words collapses to one space.
5. Numbers are kept as written: a label that writes "25元" and a hypothesis
   "二十五元" differ. Scoring also reads them in one written form
   (``numbers=True``, see zhasr.data.numbers), before punctuation goes, so "12.5" and
   "3:15" keep their meaning.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc

from zhasr.data.numbers import canonical_numbers

HAN_RANGES = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SPACE_AROUND_HAN = re.compile(rf"\s*([{HAN_RANGES}])\s*")
_SPACES = re.compile(r"\s+")
HAN_CHAR = re.compile(rf"[{HAN_RANGES}]")


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def _strip_punctuation(text: str) -> str:
    return "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)


def normalize(text: str, numbers: bool = False) -> str:
    """Normalized label: ``"您好，請問訂單ＡＢ１２３"`` -> ``"您好请问订单ab123"``; with ``numbers``,
    ``"订单一二三，共两件"`` -> ``"订单123共2件"``."""
    text = unicodedata.normalize("NFKC", text)
    text = _t2s().convert(text)
    if numbers:
        text = canonical_numbers(text)
    text = _strip_punctuation(text).lower()
    text = _SPACE_AROUND_HAN.sub(r"\1", text)
    return _SPACES.sub(" ", text).strip()


def to_simplified(text: str) -> str:
    """Traditional to simplified only, punctuation kept (for display of hypotheses)."""
    return _t2s().convert(text)
