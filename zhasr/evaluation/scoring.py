"""Scoring of one evaluation set decoded by two systems, candidate and champion, clip by clip.

``score_set`` returns the set's summary (zhasr.evaluation.summary) and one ClipScore per clip;
the gate, the MLflow review artifacts and the model card all read these.
``cer`` (and MER, the slices and the per-clip errors) is scored with numbers in
one written form on both sides (zhasr.data.numbers); ``cer_raw`` as written.
"""

from __future__ import annotations

from dataclasses import dataclass

from zhasr.data.manifest import ManifestRow
from zhasr.evaluation.clips import ClipScore
from zhasr.evaluation.metrics import (
    UtteranceEdits,
    character_error_rate,
    hotword_recall,
    is_hallucination,
    mixed_error_rate,
)
from zhasr.evaluation.slices import SLICE_KINDS, slice_error_rates
from zhasr.evaluation.summary import SYSTEMS, HotwordCount, SetSummary, SliceRates, SystemMetrics
from zhasr.model.decode import Transcript, real_time_factor
from zhasr.transcribe.records import Transcription


@dataclass(frozen=True)
class SystemOutput:
    transcripts: list[Transcript | Transcription]  # one per clip, in row order
    decode_seconds: float  # wall time of decoding the whole set


def system_metrics(references: list[str], output: SystemOutput, audio_seconds: float, hotwords: list[str],
                   ) -> tuple[SystemMetrics, dict[str, list], tuple[list[UtteranceEdits], list[UtteranceEdits]]]:
    """Corpus metrics of one system, its per-clip columns (text, CER, errors, flags) and per-clip edits
    (numbers normalized, raw)."""
    hypotheses = [t.text for t in output.transcripts]
    cer = character_error_rate(references, hypotheses, numbers=True)
    raw = character_error_rate(references, hypotheses)
    mer = mixed_error_rate(references, hypotheses, numbers=True)
    recall = hotword_recall(references, hypotheses, hotwords)
    clips = len(references)
    hallucinated = [is_hallucination(u) for u in cer.utterances]
    found, occurrences = sum(f for f, _ in recall.values()), sum(n for _, n in recall.values())
    loops = sum(t.looped for t in output.transcripts)
    metrics = SystemMetrics(
        cer=cer.rate, cer_raw=raw.rate, mer=mer.rate, substitutions=cer.substitutions, deletions=cer.deletions,
        insertions=cer.insertions, reference_chars=cer.reference_len, loops=loops, loop_rate=loops / clips,
        hallucination_rate=sum(hallucinated) / clips, hit_token_cap=sum(t.hit_cap for t in output.transcripts),
        retried=sum(t.retried for t in output.transcripts),
        rtf=real_time_factor(output.decode_seconds, audio_seconds),
        hotword_recall=found / occurrences if occurrences else None,
        hotwords={w: HotwordCount(f, n) for w, (f, n) in sorted(recall.items())},
        confusions=[(r, h, n) for (r, h), n in cer.confusions.most_common(50)],
    )
    columns = {
        "text": hypotheses, "cer": cer.per_utterance, "errors": [u.errors for u in cer.utterances],
        "cer_raw": raw.per_utterance,
        "looped": [t.looped for t in output.transcripts], "hallucinated": hallucinated,
    }
    return metrics, columns, (cer.utterances, raw.utterances)


def score_set(rows: list[ManifestRow], slices: list[dict[str, str]], outputs: dict[str, SystemOutput],
              hotwords: list[str]) -> tuple[SetSummary, list[ClipScore]]:
    """``rows``: the set's clips; ``slices``: one label dict per row (see zhasr.evaluation.slices);
    ``outputs``: ``{"candidate": ..., "champion": ...}``.

    Returns ``(summary, clips)``: the set's summary (no base figures yet) and one ClipScore per row.
    """
    references = [r.text for r in rows]  # normalized while scored: numbers need their punctuation
    audio_seconds = sum(r.duration_s for r in rows)
    metrics, columns, edits, per_slice = {}, {}, {}, {}
    for system in SYSTEMS:
        metrics[system], columns[system], edits[system] = system_metrics(references, outputs[system],
                                                                         audio_seconds, hotwords)
        per_slice[f"{system}_cer"] = slice_error_rates(slices, edits[system][0])
        per_slice[f"{system}_cer_raw"] = slice_error_rates(slices, edits[system][1])
    summary = SetSummary(
        clips=len(rows), hours=audio_seconds / 3600, candidate=metrics["candidate"], champion=metrics["champion"],
        slices=[SliceRates(kind, value, clips, **{key: rates[(kind, value)][0] for key, rates in per_slice.items()})
                for (kind, value), (_, clips) in sorted(per_slice["candidate_cer"].items(),
                                                        key=lambda kv: (SLICE_KINDS.index(kv[0][0]), kv[0][1]))])
    clips = []
    for i, (row, labels) in enumerate(zip(rows, slices)):
        readings = {system if key == "text" else f"{system}_{key}": values[i]
                    for system in SYSTEMS for key, values in columns[system].items()}
        clips.append(ClipScore(id=row.id, reference=row.text_norm, duration_s=row.duration_s,
                               reference_chars=edits["candidate"][0][i].reference_len, **labels, **readings))
    return summary, clips
