"""Evaluate stage: the merged candidate and the registry's champion decoded on the same frozen sets.

The domain test split (every batch so far), the judging half of the real speech, wideband and through
each telephone channel (the base model's CER beside each, with the candidate's change and its interval);
CER (numbers normalized, and raw), MER, hotword recall, loops, hallucinations, real-time factor, CER
by slice (seen and unseen sentences among them); review tables and charts in MLflow. Decodings come
from the decode cache where it holds them: the champion is decoded once per clip.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import mlflow
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlflow_services import review, tracking
from tasks.decoding import Model, ct2_copies, decode_sets, load_clips, references, whole_clip_decoding
from zhasr.config import GateParams
from zhasr.context import StageContext
from zhasr.data.ingest import GENERAL_SPEECH_SETS
from zhasr.data.manifest import ManifestRow, atomic_write_json
from zhasr.evaluation.bootstrap import points_with_interval
from zhasr.evaluation.clips import ClipScore, candidate_gain, write_clip_scores
from zhasr.evaluation.gate import WHOLE_CLIP_SUFFIX, judged_general_sets
from zhasr.evaluation.metrics import character_error_rate
from zhasr.evaluation.scoring import SystemOutput, score_set
from zhasr.evaluation.slices import estimate_snr_db, slice_labels
from zhasr.evaluation.summary import SYSTEMS, BaseFigures, EvaluationSummary, SetSummary, SystemMetrics
from zhasr.export.ct2 import prune_copies
from zhasr.model.merge import MergeReport

METRICS = ("cer", "cer_raw", "mer", "hotword_recall", "loop_rate", "hallucination_rate", "hit_token_cap", "rtf")


def sentence_rates(summary: SetSummary) -> dict[str, float]:
    """``{"cer_<seen|unseen>[_raw]_<system>": rate}`` from the sentence slices of a set's summary."""
    return {f"cer_{s.value}{'_raw' if raw else ''}_{system}": s.cer(system, raw) for s in summary.slices
            if s.kind == "sentence" and s.value != "unknown" for system in SYSTEMS for raw in (False, True)}


def log_set(name: str, summary: SetSummary, clips: list[ClipScore]) -> None:
    """MLflow: metrics ``<metric>[_<set>]_<system>``, the per-clip table, confusion pairs, the slice chart."""
    suffix = "" if name == "test" else f"_{name}"
    for system in SYSTEMS:
        metrics = summary.system(system)
        mlflow.log_metrics({f"{m}{suffix}_{system}": getattr(metrics, m) for m in METRICS
                            if getattr(metrics, m) is not None})
    mlflow.log_metrics({f"{m}{suffix}_base": getattr(summary.base, m) for m in ("cer", "cer_raw", "candidate_change")})
    if name == "test":
        mlflow.log_metrics(sentence_rates(summary))
    mlflow.log_table(pd.DataFrame([asdict(c) for c in clips]), artifact_file=f"eval/{name}_utterances.json")
    mlflow.log_table(review.confusion_table(summary), artifact_file=f"eval/{name}_confusion_pairs.json")
    mlflow.log_table(pd.DataFrame([asdict(s) for s in summary.slices]), artifact_file=f"eval/{name}_slices.json")
    tracking.log_figure_png(review.cer_by_slice_figure(summary.slices, name), f"plots/cer_by_slice_{name}.png")


def base_figures(rows: list[ManifestRow], output: SystemOutput | None, clips: list[ClipScore],
                 champion: SystemMetrics, bootstrap: GateParams) -> BaseFigures:
    """The base model's CER (numbers normalized) and raw CER on a set (the champion's while it is the
    champion: ``output`` None), and the candidate's change against it with its paired bootstrap interval
    (CER points as fractions, positive = the candidate is worse; a speaker's clips resampled together): where
    the candidate sits between the model it started from and its fine-tuned self."""
    if output is None:
        (cer, cer_raw), errors = (champion.cer, champion.cer_raw), None
    else:
        references, hypotheses = [r.text for r in rows], [t.text for t in output.transcripts]
        scored = character_error_rate(references, hypotheses, numbers=True)
        cer, cer_raw = scored.rate, character_error_rate(references, hypotheses).rate
        errors = [u.errors for u in scored.utterances]
    change = candidate_gain(clips, errors, samples=bootstrap.bootstrap_samples, confidence=bootstrap.confidence)
    return BaseFigures(cer, cer_raw, *change.as_loss())


def run(ctx: StageContext) -> EvaluationSummary:
    rows = ctx.evaluation_rows()
    if "test" not in rows:
        raise ValueError(f"{ctx.path('dataset') / 'manifest.jsonl'}: the test split is empty")
    trained_templates = {r.template for split in ("train", "dev") for r in ctx.split_rows(split) if r.template}
    candidate = Model.of("candidate", Path(ctx.read_report("merge", MergeReport).merged_dir))
    with tracking.stage_run(ctx, "evaluate"):
        clips = load_clips(ctx, rows)
        # general speech a second time as whole clips without a prompt, where the service decodes otherwise
        whole_clip = whole_clip_decoding(ctx.params.transcribe)
        again = ({f"{name}{WHOLE_CLIP_SUFFIX}": clips[name] for name in GENERAL_SPEECH_SETS if name in clips}
                 if whole_clip != ctx.params.transcribe else {})
        rows |= {name: rows[name.removesuffix(WHOLE_CLIP_SUFFIX)] for name in again}
        champion, models = references(ctx)
        models = {"candidate": candidate, **models}
        outputs, cache = {}, {}
        for label, model in models.items():
            outputs[label], cache[label] = decode_sets(ctx, model, clips)
            if again:
                more, counts = decode_sets(ctx, model, again, whole_clip)
                outputs[label] |= more
                cache[label] = {kind: cache[label].get(kind, 0) + counts.get(kind, 0)
                                for kind in cache[label].keys() | counts.keys()}
        clips |= again
        prune_copies(ct2_copies(ctx), {ct2_copies(ctx) / m.weights[:16] for m in models.values()})
        mlflow.log_metrics({f"decode_cache_{kind}_{system}": n for system, counts in cache.items()
                            for kind, n in counts.items()})
        sets = {}
        for name, set_rows in rows.items():
            slices = [slice_labels(r, estimate_snr_db(c), trained_templates) for r, c in zip(set_rows, clips[name])]
            set_summary, clip_scores = score_set(set_rows, slices, {s: outputs[s][name] for s in SYSTEMS},
                                             ctx.params.evaluate.hotwords)
            # the base model: the champion's figures while it is the champion, else its own decodings
            base = base_figures(set_rows, outputs["base"][name] if "base" in outputs else None,
                                clip_scores, set_summary.champion, ctx.params.gate)
            sets[name] = replace(set_summary, base=base)
            log_set(name, sets[name], clip_scores)
            write_clip_scores(ctx.utterances(name), clip_scores)
        summary = EvaluationSummary(str(champion.version), cache,
                                    "decoded again" if again else "the service's own", sets)
        atomic_write_json(ctx.report("evaluate"), summary.to_dict())
    return summary


def headline(summary: EvaluationSummary) -> dict[str, dict[str, str]]:
    """CER of each set (and of the test split's seen and unseen sentences) by system, numbers normalized
    and raw, and the candidate's change against the base model with its bootstrap interval:
    ``{"test": {"champion": "75.40% (raw 78.10%)", ..., "candidate - base": "+0.62 pts [-1.10, +2.30]"}, ...}``."""
    def rates(cer: float, raw: float) -> str:
        return f"{cer:.2%} (raw {raw:.2%})"

    def change(base: BaseFigures) -> str:
        return points_with_interval(base.candidate_change, base.candidate_change_low, base.candidate_change_high)

    sets = summary.sets
    out = {name: {"base": rates(s.base.cer, s.base.cer_raw)}
                 | {system: rates(s.system(system).cer, s.system(system).cer_raw) for system in SYSTEMS}
                 | {"candidate - base": change(s.base), "clips": s.clips}
           for name in ("test", *judged_general_sets(sets)) if (s := sets.get(name))}
    for s in sets["test"].slices:
        if s.kind == "sentence" and s.value != "unknown":
            out[f"test, {s.value} sentences"] = {
                system: rates(s.cer(system), s.cer(system, raw=True)) for system in SYSTEMS} | {"clips": s.clips}
    return out


evaluate_task = task(run, name="evaluate", cache_policy=NO_CACHE)
