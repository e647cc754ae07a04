"""Character error rate for Chinese, on normalized text (see zhasr.text)."""

from __future__ import annotations

from dataclasses import dataclass

import jiwer

from zhasr.text import normalize


@dataclass(frozen=True)
class CerResult:
    cer: float  # corpus CER: (S + D + I) / N over all characters, 0-1 (can exceed 1)
    substitutions: int
    deletions: int
    insertions: int
    reference_chars: int  # N
    per_utterance: list[float]  # CER of each pair, same order as the input


def _chars(text: str) -> str:
    # Characters are the unit; spaces carry no information in Chinese text.
    return normalize(text).replace(" ", "")


def character_error_rate(references: list[str], hypotheses: list[str]) -> CerResult:
    """Corpus and per-utterance CER after normalization of both sides."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [_chars(r) for r in references]
    hyps = [_chars(h) for h in hypotheses]
    if any(not r for r in refs):
        raise ValueError("a reference is empty after normalization; validation should have rejected it")
    out = jiwer.process_characters(refs, hyps)
    total = sum(len(r) for r in refs)
    per_utt = [jiwer.cer(r, h) for r, h in zip(refs, hyps)]
    return CerResult(
        cer=(out.substitutions + out.deletions + out.insertions) / total,
        substitutions=out.substitutions, deletions=out.deletions, insertions=out.insertions,
        reference_chars=total, per_utterance=per_utt,
    )
