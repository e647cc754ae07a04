"""Error rates for Chinese and Chinese-English speech, on normalized text (see zhasr.data.text).

Every rate can be taken as written (``numbers=False``, "raw") or with numbers
in one written form on both sides (``numbers=True``, see zhasr.data.numbers).

- CER: every character is a token (spaces dropped), the primary metric.
- MER, the mixed error rate used for code-switched Mandarin-English: each Han
  character is a token and each Latin word (letters and digits) is a token, so
  "我的email地址" counts 5 tokens, not 9 characters.

Both come with per-utterance edit counts (for slices and the bootstrap) and
the aligned substitution, deletion and insertion pairs (for confusion tables).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import jiwer

from zhasr.data.text import HAN_RANGES, normalize

_MIXED_TOKEN = re.compile(rf"[{HAN_RANGES}]|[a-z0-9']+|\S")


@dataclass(frozen=True)
class UtteranceEdits:
    substitutions: int
    deletions: int
    insertions: int
    reference_len: int  # tokens in the reference

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        return self.errors / self.reference_len


@dataclass(frozen=True)
class ErrorRate:
    rate: float  # corpus rate: (S + D + I) / N over all tokens, 0-1 (can exceed 1)
    substitutions: int
    deletions: int
    insertions: int
    reference_len: int  # N
    utterances: list[UtteranceEdits]  # same order as the input
    confusions: Counter  # (reference token, hypothesis token) -> count; "" marks a deletion or insertion

    @property
    def per_utterance(self) -> list[float]:
        return [u.rate for u in self.utterances]

    # CER callers read these names
    @property
    def cer(self) -> float:
        return self.rate

    @property
    def reference_chars(self) -> int:
        return self.reference_len


def cer_tokens(text: str, numbers: bool = False) -> list[str]:
    """Characters of the normalized text, spaces dropped."""
    return list(normalize(text, numbers).replace(" ", ""))


def mixed_tokens(text: str, numbers: bool = False) -> list[str]:
    """``"我的email地址"`` -> ``["我", "的", "email", "地", "址"]``."""
    return _MIXED_TOKEN.findall(normalize(text, numbers))


def _error_rate(refs: list[list[str]], hyps: list[list[str]]) -> ErrorRate:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if any(not r for r in refs):
        raise ValueError("a reference is empty after normalization; validation should have rejected it")
    # jiwer aligns words: each token becomes one "word" (tokens hold no spaces).
    out = jiwer.process_words([" ".join(r) for r in refs], [" ".join(h) if h else "" for h in hyps])
    utterances, confusions = [], Counter()
    for ref, hyp, chunks in zip(refs, hyps, out.alignments):
        counts = Counter()
        for c in chunks:
            r, h = ref[c.ref_start_idx:c.ref_end_idx], hyp[c.hyp_start_idx:c.hyp_end_idx]
            if c.type == "substitute":
                counts["S"] += len(r)
                confusions.update(zip(r, h))
            elif c.type == "delete":
                counts["D"] += len(r)
                confusions.update((t, "") for t in r)
            elif c.type == "insert":
                counts["I"] += len(h)
                confusions.update(("", t) for t in h)
        utterances.append(UtteranceEdits(counts["S"], counts["D"], counts["I"], len(ref)))
    total = sum(u.reference_len for u in utterances)
    s, d, i = (sum(getattr(u, k) for u in utterances) for k in ("substitutions", "deletions", "insertions"))
    return ErrorRate((s + d + i) / total, s, d, i, total, utterances, confusions)


def character_error_rate(references: list[str], hypotheses: list[str], numbers: bool = False) -> ErrorRate:
    """Corpus and per-utterance CER after normalization of both sides."""
    return _error_rate([cer_tokens(r, numbers) for r in references], [cer_tokens(h, numbers) for h in hypotheses])


def mixed_error_rate(references: list[str], hypotheses: list[str], numbers: bool = False) -> ErrorRate:
    """MER: Han characters and Latin words as tokens."""
    return _error_rate([mixed_tokens(r, numbers) for r in references],
                       [mixed_tokens(h, numbers) for h in hypotheses])


def hotword_recall(references: list[str], hypotheses: list[str], hotwords: list[str]) -> dict[str, tuple[int, int]]:
    """``{hotword: (found, occurrences)}`` over all pairs; a word counts as found up to as often as the
    hypothesis contains it. Only hotwords that occur in some reference are listed."""
    words = [normalize(w).replace(" ", "") for w in hotwords]
    counts: dict[str, list[int]] = {}
    for ref, hyp in zip(references, hypotheses):
        r, h = "".join(cer_tokens(ref)), "".join(cer_tokens(hyp))
        for word in words:
            if word and (n := r.count(word)):
                entry = counts.setdefault(word, [0, 0])
                entry[0] += min(n, h.count(word))
                entry[1] += n
    return {w: (found, total) for w, (found, total) in counts.items()}


def is_hallucination(edits: UtteranceEdits) -> bool:
    """Output dominated by text that was never said: insertions at least half the reference length."""
    return edits.insertions >= max(1, edits.reference_len / 2)
