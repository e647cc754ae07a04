"""Export stage: the merged candidate written in each format of params.export, run in that format's own
runtime on every evaluated set, and judged against the merged model's CER: fit, unfit or inconclusive
(zhasr.evaluation.export_verdict). Fit and inconclusive exports are kept with the run; only fit ones are served."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import mlflow
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlflow_services import tracking
from zhasr.config import EXPORT_FORMATS, TranscribeParams
from zhasr.context import StageContext
from zhasr.data.ingest import EVALUATION_SETS
from zhasr.data.manifest import atomic_write_json, read_manifest
from zhasr.evaluation.clips import read_clip_scores
from zhasr.evaluation.export_verdict import (
    UNFIT,
    ExportReport,
    ExportResult,
    SetResult,
    limit_for,
    rise_over_merged,
    verdict,
)
from zhasr.evaluation.summary import EvaluationSummary
from zhasr.export.calibration import calibration_clips
from zhasr.export.formats import size_on_disk, write_export
from zhasr.model.decode import Stopwatch, real_time_factor
from zhasr.model.merge import MergeReport
from zhasr.progress import progress_bar
from zhasr.transcribe import Transcriber


def transcribe_export(fmt: str, path: Path, wavs: list[Path], language: str, threads: int,
                      max_tokens: int = 224, params: TranscribeParams | None = None) -> tuple[list[str], float]:
    """(one text per wav, seconds) through the transcription engine in the format's runtime, so an
    export is scored exactly as it serves. ``params`` default to the engine's, with ``threads`` and
    ``max_tokens``."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    params = dataclasses.replace(params or TranscribeParams(), threads=threads, max_new_tokens=max_tokens)
    transcriber = Transcriber.open(Path(path), params, language=language, runtime="auto")
    started = time.perf_counter()
    results = transcriber.transcribe_many(list(wavs), channels="mix", names=[str(w) for w in wavs])
    return [r.text for r in results], time.perf_counter() - started


def export_formats(ctx: StageContext, formats: list[str], merged_dir: Path,
                   reference_cer: dict[str, float]) -> list[ExportResult]:
    """One result per format: size, CER and RTF per set, the rise over the merged model with its interval,
    and the verdict."""
    p = ctx.params.export
    dataset = ctx.path("dataset")
    sets = {name: ctx.split_rows(name) for name in reference_cer}  # an evaluated set gone is an error below
    merged = {name: read_clip_scores(ctx.utterances(name)) for name in sets}
    for name, rows in sets.items():
        if [c.id for c in merged[name]] != [r.id for r in rows]:
            raise ValueError(f"{ctx.utterances(name)}: its clips differ from the {name} split of "
                             f"{ctx.dataset_manifest()}; run evaluate again")
    out_root = ctx.path("models") / "exports"
    calibration = (calibration_clips(read_manifest(ctx.dataset_manifest()), dataset, p.gptq_calibration_clips)
                   if "gptq-4bit" in formats else [])
    results = []
    with progress_bar("export") as progress:
        for done, fmt in enumerate(formats):
            with Stopwatch() as writing:
                path = write_export(fmt, merged_dir, out_root, calibration, ctx.params.model.language, p)
            on_sets: dict[str, SetResult] = {}
            for name, rows in sets.items():
                texts, seconds = transcribe_export(fmt, path, [dataset / r.audio for r in rows],
                                                   ctx.params.model.language, p.threads,
                                                   ctx.params.transcribe.max_new_tokens,
                                                   ctx.params.transcribe)
                cer, rise = rise_over_merged([r.text for r in rows], merged[name], texts,
                                             ctx.params.gate.bootstrap_samples, ctx.params.gate.confidence)
                on_sets[name] = SetResult(cer, rise, real_time_factor(seconds, sum(r.duration_s for r in rows)))
            limit = limit_for(fmt, p)
            results.append(ExportResult(fmt, str(path), round(size_on_disk(path) / 1e6, 1), round(writing.seconds, 1),
                                        on_sets, limit, verdict([r.rise for r in on_sets.values()], limit)))
            progress(done + 1, len(formats))
    return results


def run(ctx: StageContext, formats: list[str] | None = None) -> ExportReport:
    sets = ctx.read_report("evaluate", EvaluationSummary).sets
    merged = Path(ctx.read_report("merge", MergeReport).merged_dir)
    # The merged model equals base + adapter within merge.tolerance, so the candidate's CER is its CER.
    reference = {name: sets[name].candidate.cer for name in EVALUATION_SETS if name in sets}
    with tracking.stage_run(ctx, "export") as mlflow_run:
        results = export_formats(ctx, formats or ctx.params.export.formats, merged, reference)
        for k, result in enumerate(results):
            key = result.format.replace("-", "_")
            mlflow.log_metrics({f"export_{key}_{name}": value for name, value in result.flat().items()})
            mlflow.set_tag(f"zhasr.export.{result.format}", result.verdict)
            # kept with the run (and so with its model version); models/exports/ is overwritten
            if result.verdict != UNFIT:
                results[k] = result.kept(tracking.log_export(Path(result.path), result.format, mlflow_run.info.run_id))
        mlflow.log_table(pd.DataFrame([{"format": r.format, "verdict": r.verdict, **r.flat(), "uri": r.uri}
                                       for r in results]), artifact_file="export/exports.json")
        report = ExportReport(reference, results)
        atomic_write_json(ctx.report("export"), report.to_dict())
    return report


export_task = task(run, name="export", cache_policy=NO_CACHE)
