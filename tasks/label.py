"""Labelling with Label Studio: ``push`` sends calls with the champion's segments as predictions, the
ones worth most first; ``pull`` turns people's corrections into the next batch under ``paths.incoming``.
Both log an MLflow run (``label-push``, ``label-pull``) with a table of what they did."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import mlflow

from mlflow_services import registry, tracking
from tasks.transcribe import open_resolved, open_transcriber, resolve
from zhasr.archive.records import DONE, INDEX_JSONL, read_index
from zhasr.context import StageContext
from zhasr.data.audio import AudioError
from zhasr.data.importers.common import AUDIO_SUFFIXES
from zhasr.data.manifest import atomic_write_json
from zhasr.labelling.calls import StoredCall, store_call, task
from zhasr.labelling.export import read_export
from zhasr.labelling.interface import label_config
from zhasr.labelling.pull_batch import LabelSource, default_batch, pulled, write_batch
from zhasr.labelling.reports import FailedCall, LabelPull, LabelPush, PushedTask
from zhasr.labelling.selection import Candidate, choose, disagreement, numbers_heard
from zhasr.labelling.studio import Studio, api_token
from zhasr.progress import progress_bar
from zhasr.transcribe.confidence import call_confidence
from zhasr.transcribe.records import Transcription
from zhasr.transcribe.writers import from_verbose


def open_studio(ctx: StageContext) -> tuple[Studio, int]:
    """The Label Studio of ``label.url`` and the id of the ``label.project`` project (created when missing),
    allowed to serve the pushed calls' audio."""
    p = ctx.params.label
    studio = Studio(p.url, api_token(ctx.root / p.token_file))
    project_id = studio.project(p.project, label_config(ctx.params.transcribe.channel_roles))
    studio.serve_calls(project_id, ctx.path("labelling"))
    return studio, project_id


def call_files(paths: list[Path]) -> list[Path]:
    """The audio files named, folders read recursively (by suffix), in a stable order."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def indexed_transcripts(index: Path, model_version: str) -> tuple[list[tuple[Path, Transcription]], list[FailedCall]]:
    """The calls ``transcribe-archive`` transcribed with ``model_version`` (from its ``index.jsonl``) with their
    transcripts, and its failed calls."""
    records = [r for r in read_index(index) if r.model_version == model_version]
    if not records:
        raise LookupError(f"{index}: no call transcribed by {model_version}; "
                          "run zhasr transcribe-archive with it first")
    done, failed = [], []
    for record in records:
        body = next((o for o in record.outputs if o.endswith(".json")), None)
        if record.status != DONE or body is None:
            failed.append(FailedCall(record.path, record.reason or "no verbose_json transcript in the index"))
            continue
        done.append((Path(record.path), from_verbose(json.loads((index.parent / body).read_text(encoding="utf-8")))))
    return done, failed


def push(ctx: StageContext, paths: list[Path], model: str | None = None, strategy: str | None = None,
         budget_min: float | None = None) -> LabelPush:
    """Transcribe the calls under ``paths`` with ``model`` (default: the champion; split channels where
    stereo), choose the ones worth labelling first within the budget, and add them as tasks. A path named
    ``index.jsonl`` is a ``transcribe-archive`` index: its calls' transcripts by that model are used as they
    are. A call the project already has (same audio sha256) is not sent again; one that cannot be decoded
    is reported."""
    p = ctx.params.label
    strategy = strategy or p.strategy
    budget_s = 60 * (p.budget_min if budget_min is None else budget_min)
    studio, project_id = open_studio(ctx)
    known = studio.pushed(project_id)
    resolved = resolve(ctx, model)
    version = Path(resolved.identity).name  # "zhasr-whisper v3", or the model folder's name and build
    work: list[tuple[Path, Transcription | None]] = []
    failed: list[FailedCall] = []
    for path in map(Path, paths):
        if path.name == INDEX_JSONL:
            done, bad = indexed_transcripts(path, resolved.identity)
            work += done
            failed += bad
        else:
            work += [(f, None) for f in call_files([path])]
    transcriber = open_resolved(ctx, resolved) if any(r is None for _, r in work) else None
    challenger = None
    if strategy == "disagreement":
        challenger = open_transcriber(ctx, f"models:/{ctx.params.register.model_name}@{registry.CHALLENGER}")
    calls: dict[str, tuple[StoredCall, Transcription]] = {}
    candidates, repeated = [], []
    with tracking.stage_run(ctx, "label-push"), progress_bar("label push: calls") as progress:
        for done, (path, result) in enumerate(work):
            progress(done, len(work))
            try:
                stored, audio = store_call(path, ctx.path("labelling"), ctx.params.transcribe.max_audio_s)
            except AudioError as exc:
                failed.append(FailedCall(str(path), str(exc)))
                continue
            if stored.audio_sha256 in known:
                repeated.append(str(path))
                continue
            known.add(stored.audio_sha256)
            if stored.call_id in calls:  # two files of one name in different folders
                stored = dataclasses.replace(stored, call_id=f"{stored.call_id}-{stored.audio_sha256[:8]}")
            channels = "split" if stored.channels > 1 else "mix"
            result = result or transcriber.transcribe(audio, channels=channels, name=str(path))
            other = challenger.transcribe(audio, channels=channels, name=str(path)) if challenger else None
            calls[stored.call_id] = (stored, result)
            candidates.append(Candidate(stored.call_id, stored.duration_s, round(1 - call_confidence(result), 4),
                                        f"{stored.channels}ch@{stored.source_rate}",
                                        disagreement(result.text, other.text) if other else None,
                                        numbers_heard(result.text)))
        progress(len(work), len(work))
        chosen = choose(candidates, strategy, budget_s, seed=ctx.params.synth.seed)
        task_ids = studio.add_tasks(project_id, [task(calls[c.call_id][0], calls[c.call_id][1], version)
                                                 for c in chosen])
        table = [PushedTask(rank=k + 1, call_id=c.call_id, task_id=t, minutes=round(c.duration_s / 60, 2),
                            uncertainty=c.uncertainty, disagreement=c.disagreement, numbers=c.numbers, kind=c.kind)
                 for k, (c, t) in enumerate(zip(chosen, task_ids))]
        source = LabelSource(studio.url, project_id, p.project)
        summary = LabelPush(p.project, project_id, source.project_url, model_version=version,
                            strategy=strategy, budget_min=budget_s / 60, calls_given=len(work) + len(failed),
                            calls_pushed=len(chosen), minutes_pushed=round(sum(c.duration_s for c in chosen) / 60, 2),
                            already_in_project=repeated, failed=failed, tasks=table)
        mlflow.set_tags({"zhasr.labelstudio.project": source.describe(),
                         "zhasr.labelstudio.model_version": version})
        mlflow.log_metrics({"label_calls_pushed": len(chosen), "label_minutes_pushed": summary.minutes_pushed,
                            "label_calls_failed": len(failed)})
        if table:
            mlflow.log_table({f.name: [getattr(t, f.name) for t in table] for f in dataclasses.fields(PushedTask)},
                             "label/push_tasks.json")
        atomic_write_json(ctx.report("label_push"), summary.to_dict())
    return summary


def pull(ctx: StageContext, batch: str | None = None) -> LabelPull:
    """The project's full JSON export into a new batch: one clip per corrected region; rejected regions to
    ``<quarantine>/<batch>/``. Annotations pulled before (same id and updated_at) are not pulled again."""
    p = ctx.params.label
    studio, project_id = open_studio(ctx)
    with tracking.stage_run(ctx, "label-pull"):
        export = studio.export(project_id)
        read = read_export(export, min_region_s=p.min_region_s, max_region_s=p.max_region_s,
                           pulled=pulled(ctx.path("labelling")))
        source = LabelSource(studio.url, project_id, p.project)
        result = write_batch(read.regions, read.rejected, source,
                             labelling_dir=ctx.path("labelling"), incoming=ctx.path("incoming"),
                             quarantine=ctx.path("quarantine"), batch=batch)
        result = dataclasses.replace(result, already_pulled=read.already_pulled)
        kept = None
        if read.regions or read.rejected:  # the export this pull took rows from or refused some of, as it came
            name = result.batch_dir.name if result.batch_dir else batch or default_batch(project_id)
            kept = ctx.path("labelling") / "exports" / f"{name}.json"
            atomic_write_json(kept, export)
        summary = LabelPull(p.project, project_id, source.project_url,
                            batch_dir=str(result.batch_dir) if result.batch_dir else None, rows=result.rows,
                            rejected=result.rejected, already_pulled=result.already_pulled,
                            unlabelled_tasks=read.unlabelled, minutes=result.minutes,
                            corrected_share=result.corrected_share, annotations=list(result.annotations),
                            reasons=[r.reason for r in read.rejected], export_file=str(kept) if kept else None)
        mlflow.set_tag("zhasr.labelstudio.project", source.describe())
        mlflow.log_metrics({"label_rows": result.rows, "label_rejected": result.rejected,
                            "label_minutes": result.minutes, "label_corrected_share": result.corrected_share})
        if read.rejected:
            columns = ("task_id", "annotation_id", "region_id", "reason")
            mlflow.log_table({c: [getattr(r, c) for r in read.rejected] for c in columns}, "label/rejected.json")
        atomic_write_json(ctx.report("label_pull"), summary.to_dict())
    return summary
