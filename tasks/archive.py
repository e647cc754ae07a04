"""Bulk transcription's stage: one shard of calls on whichever worker runs it, the model kept open in the
worker process across shards; and the end of a run (the index, its totals in MLflow)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import mlflow
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlflow_services import tracking
from tasks.transcribe import ResolvedModel, detector_model, detector_stamp, open_resolved
from zhasr.archive.listing import ArchiveCall
from zhasr.archive.records import DONE, FAILED, ArchiveRun, CallFailure, CallRecord, all_records, write_index
from zhasr.archive.shard import ShardResult, transcribe_shard
from zhasr.context import StageContext
from zhasr.transcribe import Transcriber

# per worker process, the engines of the last model and detector build asked for: (the model's, the detector's or None)
_OPEN: dict[tuple[str, str, str, str | None], tuple[Transcriber, Transcriber | None]] = {}


def _engines(ctx: StageContext, model: ResolvedModel, threads: int) -> tuple[Transcriber, Transcriber | None]:
    """The model's engine and, where redaction is asked and ``transcribe.detector`` names one, the number
    detector's (the build it names now: a new approved version or a folder swapped in is opened)."""
    key = (str(model.model_dir), model.identity, repr(ctx.params.transcribe),
           detector_stamp(ctx) if ctx.params.transcribe.redact else None)
    if key not in _OPEN:
        _OPEN.clear()  # a long-lived worker holds one model: the new champion's replaces the old
        if threads:  # a local cluster's share of the cores; on a cluster of its own a worker keeps torch's default
            import torch

            torch.set_num_threads(threads)
        detector = detector_model(ctx) if ctx.params.transcribe.redact else None
        _OPEN[key] = open_resolved(ctx, model), open_resolved(ctx, detector) if detector else None
    return _OPEN[key]


def run_shard(ctx: StageContext, model: ResolvedModel, calls: list[ArchiveCall],
              known: dict[tuple[str, int, int], str], threads: int = 1) -> ShardResult:
    """Records of ``calls`` with ``model`` under ``archive.out``; calls done before are not done again."""
    transcriber, detector = _engines(ctx, model, threads)
    p = ctx.params.transcribe
    return transcribe_shard(calls, transcriber, output_root(ctx), model.name or str(model.model_dir), model.identity,
                            ctx.params.archive.formats, known, p.max_audio_s, p.redact, p.itn, detector)


shard_task = task(run_shard, name="transcribe-shard", cache_policy=NO_CACHE,
                  task_run_name="shard from {calls[0].call_id}")


def finish(ctx: StageContext, model: ResolvedModel, records: list[CallRecord], wall_s: float, workers: int,
           skipped: set[str], copied: set[str]) -> ArchiveRun:
    """Rewrite the index from every record kept; log this run's totals to MLflow; its summary."""
    out = output_root(ctx)
    write_index(out, all_records(out))
    made = [r for r in records if r.call_id not in skipped]  # in this run
    statuses = Counter(r.status for r in made)
    decoded = [r for r in made if r.status == DONE and r.call_id not in copied]
    hours = sum(r.duration_s for r in decoded) / 3600
    summary = ArchiveRun(str(out), model.identity, calls=len(records), done=statuses[DONE], failed=statuses[FAILED],
                         skipped=len(skipped), copied=len(copied), audio_hours=round(hours, 4), wall_s=round(wall_s, 1),
                         workers=workers,
                         audio_hours_per_hour=round(hours * 3600 / wall_s, 2) if wall_s else 0.0,
                         failures=[CallFailure(r.call_id, r.reason) for r in made if r.status == FAILED])
    with tracking.stage_run(ctx, "transcribe-archive", began_s_ago=wall_s):
        mlflow.set_tags({"zhasr.archive.model_version": model.identity, "zhasr.archive.out": str(out)})
        mlflow.log_metrics({k: getattr(summary, k) for k in ("calls", "done", "failed", "skipped", "copied",
                                                             "audio_hours", "audio_hours_per_hour", "wall_s")})
        tracking.log_json(summary.to_dict(), "archive/summary.json")
        if made:  # what this run did, a row a call (the index holds every run's)
            mlflow.log_table({"call_id": [r.call_id for r in made], "status": [r.status for r in made],
                              "minutes": [round(r.duration_s / 60, 2) for r in made],
                              "confidence": [r.mean_confidence for r in made], "wall_s": [r.wall_s for r in made],
                              "reason": [r.reason for r in made]}, "archive/calls.json")
    return summary


def local_workers(setting: int) -> int:
    """``archive.workers``, or one worker per 2 CPU cores."""
    return setting or max(1, (os.cpu_count() or 2) // 2)


def output_root(ctx: StageContext) -> Path:
    return ctx.root / ctx.params.archive.out
