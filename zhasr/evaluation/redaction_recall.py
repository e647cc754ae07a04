"""How much personal data redaction finds: recall and precision per kind on sentences of
``zhasr.data.synth.personal``, whose number, its kind and its place in the text are known.

On reference text a number counts as found when a span of its kind covers it. On a decoding (where the
recognizer may have garbled it) when a span of its kind was found and none of its digits are left readable:
no 4 consecutive digits of it in any written form (an e-mail address: its name's letters) remain in the
redacted text. A decoding is scored as its text alone, or as a ``Heard`` pair: the served model's text with
what a number-trained detector heard taken out of it by time (``finish_text(..., heard=)``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from zhasr.calltext.pii import KINDS, NUMBER, Found, redact
from zhasr.data.synth.personal import PiiSentence
from zhasr.transcribe.records import Transcription
from zhasr.transcribe.redaction import finish_text

_DIGIT = {ch: str(i) for i, ch in enumerate("零一二三四五六七八九")} | {"〇": "0", "幺": "1"}


def digit_view(text: str) -> str:
    """The text's digits in order, numerals read as digits; everything else dropped."""
    return "".join(_DIGIT.get(ch, ch) for ch in text if ch.isdigit() or ch in _DIGIT)


def leaks(row: PiiSentence, redacted: str) -> bool:
    """Whether ``redacted`` (a decoding of ``row`` after redaction) still lets its number be read."""
    if row.kind == "email":
        name = re.sub(r"\d", "", row.value.split("@")[0])
        return name.lower() in redacted.lower().replace(" ", "")
    digits, window = digit_view(redacted), min(4, len(row.value))
    value = row.value.replace("X", "")
    return any(value[i:i + window] in digits for i in range(len(value) - window + 1))


@dataclass(frozen=True)
class Heard:
    """A sentence as the served model decoded it and as the number detector heard it, both with word times."""

    decoded: Transcription
    heard: Transcription


def redacted(item: str | Heard, kinds: tuple[str, ...]) -> tuple[str, list[Found]]:
    """A decoding's redacted text and its spans: of the text alone, or with what the detector heard."""
    if isinstance(item, str):
        return redact(item, kinds)
    t = finish_text(item.decoded, kinds, heard=item.heard)
    return t.text, [Found(r.kind, r.text_start, r.text_end) for r in t.redactions]


@dataclass(frozen=True)
class KindScore:
    """One kind's figures, fractions in [0, 1]; the last three only for decodings."""

    sentences: int  # holding a number of this kind
    recall: float
    precision: float  # spans of this kind that fall on a number of this kind (1.0 without spans)
    spans: int  # found as this kind, in every sentence
    on_personal_data: float  # spans of this kind that fall on a number of any kind
    leak_free: float | None = None  # sentences with none of the number's digits left readable, whatever was found
    digits_right: float | None = None  # sentences whose decoding holds the whole number (what the model heard)
    leak_free_with_number: float | None = None  # leak-free when the opt-in kind "number" is asked too


@dataclass(frozen=True)
class RedactionScore:
    """Per-kind figures of a set, and what its sentences without personal data drew."""

    kinds: dict[str, KindScore]
    clean_sentences: int  # without personal data
    masked_by_number: int  # of those, masked by the opt-in kind "number"
    decoded: bool  # scored on decodings (else on reference text)

    @property
    def mean_recall(self) -> float:
        """Unweighted over the kinds the set holds."""
        held = [s.recall for s in self.kinds.values() if s.sentences]
        return sum(held) / len(held) if held else 0.0

    @property
    def on_personal_data(self) -> float:
        """Of every span found, the share that falls on a number of any kind (1.0 without spans)."""
        spans = sum(s.spans for s in self.kinds.values())
        on = sum(s.on_personal_data * s.spans for s in self.kinds.values())
        return on / spans if spans else 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score(rows: list[PiiSentence], items: list[str] | list[Heard], decoded: bool) -> RedactionScore:
    """``items[i]`` (reference text, a decoding's text, or a ``Heard`` pair) of ``rows[i]``, scored."""
    hit, leak_free, total, spans, right, personal, digits_right, netted = (Counter() for _ in range(8))
    for row, item in zip(rows, items, strict=True):
        text = item if isinstance(item, str) else item.decoded.text
        without, found = redacted(item, KINDS)
        with_number, extra = redacted(item, (*KINDS, NUMBER))
        netted[row.kind] += not row.kind and any(f.kind == NUMBER for f in extra) or bool(row.kind) and not leaks(
            row, with_number)
        for f in found:
            spans[f.kind] += 1
            on_number = bool(row.kind) and (decoded or (f.start < row.end and row.start < f.end))
            right[f.kind] += on_number and f.kind == row.kind
            personal[f.kind] += on_number
        if not row.kind:
            continue
        total[row.kind] += 1
        if decoded:
            clean = not leaks(row, without)
            leak_free[row.kind] += clean
            hit[row.kind] += clean and any(f.kind == row.kind for f in found)
            digits_right[row.kind] += (row.value.replace("X", "") in digit_view(text) if row.kind != "email"
                                       else row.value.lower() in text.lower().replace(" ", ""))
        else:
            hit[row.kind] += any(f.kind == row.kind and f.start <= row.start and f.end >= row.end for f in found)
    share = lambda counts, kind: counts[kind] / max(1, total[kind]) if decoded else None  # noqa: E731
    kinds = {kind: KindScore(total[kind], hit[kind] / max(1, total[kind]),
                             right[kind] / spans[kind] if spans[kind] else 1.0, spans[kind],
                             personal[kind] / spans[kind] if spans[kind] else 1.0,
                             share(leak_free, kind), share(digits_right, kind), share(netted, kind))
             for kind in KINDS}
    return RedactionScore(kinds, sum(1 for r in rows if not r.kind), netted[""], decoded)
