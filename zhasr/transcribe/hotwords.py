"""Hotwords: terms a caller puts in the decoder's prompt (names, products, the jargon of a line of business).

The prompt takes at most half of the decoder's 448 positions, so a request's terms are bounded; the same bounds
hold for the terms an API key carries (``zhasr serve-keys add --hotwords``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_TERMS = 50
MAX_TERM_CHARS = 20
_SEPARATORS = re.compile(r"[,，;；\s]+")


def check_hotwords(terms: Sequence[str]) -> None:
    """ValueError when ``terms`` are more than MAX_TERMS or one is longer than MAX_TERM_CHARS characters."""
    if len(terms) > MAX_TERMS or any(len(t) > MAX_TERM_CHARS for t in terms):
        raise ValueError(f"at most {MAX_TERMS} terms of at most {MAX_TERM_CHARS} characters, separated by commas "
                         "or spaces")


def parse_hotwords(text: str) -> list[str]:
    """The terms of ``text``, separated by commas, semicolons or spaces (ASCII or full-width); checked."""
    terms = [t for t in _SEPARATORS.split(text) if t]
    check_hotwords(terms)
    return terms
