"""Merge stage: the trained adapter folded into a plain Hugging Face Whisper directory, at the largest
weight that keeps general speech within the gate's limit.

The adapter is merged at ``merge.adapter_weight``. While the tuning half of the real speech (wideband
or through any telephone channel) decodes worse than the better of the base model and the champion by
more than ``gate.max_regression_loss`` (and, with ``merge.guard_beyond_noise``, by more than its noise:
the loss's interval, speakers resampled, lies above zero), it is merged again at a smaller weight
(``zhasr.model.merge.next_adapter_weight``), down to ``merge.min_adapter_weight``. The judging half is
never looked at here: the gate judges the weight kept on speech it was not chosen on. Every weight
tried is logged.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlflow_services import tracking
from tasks.decoding import Model, decode_sets, load_clips, references
from zhasr.context import StageContext
from zhasr.data.audio import load_16k
from zhasr.data.ingest import TUNING_SETS
from zhasr.data.manifest import ManifestRow, atomic_write_json
from zhasr.evaluation.metrics import UtteranceEdits, character_error_rate
from zhasr.export.formats import size_on_disk
from zhasr.model.merge import (
    GeneralSpeechLoss,
    GuardedSet,
    MergeReport,
    WeightTried,
    merge_adapter,
    merge_difference,
    next_adapter_weight,
)
from zhasr.model.train import TrainReport

GUARDED_SETS = TUNING_SETS  # the tuning half of the real speech, wideband and through each telephone channel


class MergeMismatch(RuntimeError):
    """The merged model's outputs differ from the adapter model's by more than merge.tolerance."""


def check_clip(ctx: StageContext):
    """A test clip to compare adapter and merged outputs on (silence when the split is empty)."""
    rows = ctx.split_rows("test") if ctx.dataset_manifest().is_file() else []
    return load_16k(ctx.path("dataset") / rows[0].audio) if rows else np.zeros(16000, np.float32)


def set_edits(ctx: StageContext, model: Model, sets: dict[str, list[ManifestRow]],
              clips: dict[str, list[np.ndarray]]) -> dict[str, list[UtteranceEdits]]:
    """``{set: edits of each clip}`` of ``model`` (numbers normalized, as evaluation scores), decoded through
    the cache."""
    outputs, _ = decode_sets(ctx, model, clips)
    return {name: character_error_rate([r.text for r in rows], [t.text for t in outputs[name].transcripts],
                                       numbers=True).utterances for name, rows in sets.items()}


def corpus_cer(edits: list[UtteranceEdits]) -> float:
    return sum(e.errors for e in edits) / max(1, sum(e.reference_len for e in edits))


def merge_at(ctx: StageContext, weight: float, out_dir: Path) -> float:
    """Merge at ``weight`` into ``out_dir``; its largest logit difference from base + adapter."""
    train, p = ctx.read_report("train", TrainReport), ctx.params.merge
    base, adapter = Path(train.base_model_dir), Path(train.adapter_dir)
    merge_adapter(base, adapter, out_dir, dtype=p.dtype, weight=weight)
    difference = merge_difference(base, adapter, out_dir, check_clip(ctx), weight,
                                  ctx.params.model.language)
    if difference > p.tolerance:
        raise MergeMismatch(f"{out_dir}: logits differ from base + adapter by {difference:.3g} > "
                            f"merge.tolerance={p.tolerance:g} ({p.dtype})")
    return difference


def guarded_merge(ctx: StageContext, out_dir: Path) -> tuple[float, float, list[WeightTried]]:
    """(weight kept, its logit difference, every weight tried with the CER and the loss on each guarded set
    against their reference, the better of base and champion)."""
    p, gate = ctx.params.merge, ctx.params.gate
    sets = ctx.evaluation_rows(GUARDED_SETS)
    weight = p.adapter_weight
    difference = merge_at(ctx, weight, out_dir)
    if not sets:
        return weight, difference, []
    clips = load_clips(ctx, sets)
    scored = [set_edits(ctx, model, sets, clips) for model in references(ctx)[1].values()]
    reference = {name: min((edits[name] for edits in scored), key=corpus_cer) for name in sets}
    tried = []
    while True:
        edits = set_edits(ctx, Model.of("candidate", out_dir), sets, clips)
        losses = {name: GeneralSpeechLoss.of([e.errors for e in edits[name]], [e.errors for e in reference[name]],
                                             [e.reference_len for e in edits[name]], [r.speaker for r in rows],
                                             gate.bootstrap_samples, gate.confidence)
                  for name, rows in sets.items()}
        tried.append(WeightTried(weight, {n: GuardedSet(corpus_cer(edits[n]), corpus_cer(reference[n]), losses[n])
                                          for n in sets}))
        over = {n: loss.loss for n, loss in losses.items() if loss.over(gate.max_regression_loss, p.guard_beyond_noise)}
        if not over or weight <= p.min_adapter_weight:
            return weight, difference, tried
        worst = max(over, key=over.get)
        start = Model.of("start", Path(ctx.read_report("train", TrainReport).base_model_dir))  # base or champion
        start_loss = corpus_cer(set_edits(ctx, start, sets, clips)[worst]) - corpus_cer(reference[worst])
        weight = next_adapter_weight(weight, over[worst], start_loss, gate.max_regression_loss, p.min_adapter_weight)
        difference = merge_at(ctx, weight, out_dir)


def run(ctx: StageContext) -> MergeReport:
    out_dir = ctx.path("models") / "candidate"
    p = ctx.params.merge
    with tracking.stage_run(ctx, "merge"):
        weight, difference, tried = guarded_merge(ctx, out_dir)
        size_mb = size_on_disk(out_dir) / 2**20
        mlflow.log_metrics({"merged_size_mb": size_mb, "merge_max_logit_diff": difference, "adapter_weight": weight,
                            "adapter_weights_tried": len(tried)})
        if tried:
            mlflow.log_table(pd.DataFrame([t.row() for t in tried]), artifact_file="merge/adapter_weights.json")
        report = MergeReport(str(out_dir), round(size_mb, 1), p.dtype, weight, tried, difference, p.tolerance)
        atomic_write_json(ctx.report("merge"), report.to_dict())
    return report


merge_task = task(run, name="merge", cache_policy=NO_CACHE)
