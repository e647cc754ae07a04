"""Export stage: the merged candidate written in each format of params.export, run in that format's own
runtime on every evaluated set, and judged against the merged model's CER: fit, unfit or inconclusive
(zhasr.export.verdict). Fit and inconclusive exports are kept with the run; only fit ones are served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import tracking
from tasks.context import StageContext
from tasks.evaluate import utterances_path
from zhasr.decode import Stopwatch, real_time_factor
from zhasr.export.calibration import calibration_clips
from zhasr.export.formats import LOW_BIT, size_on_disk, transcribe_export, write_export
from zhasr.export.gptq import GptqOptions
from zhasr.export.verdict import FIT, UNFIT, Rise, cer_rise, verdict
from zhasr.ingest import EVALUATION_SETS
from zhasr.manifest import atomic_write_json, read_json, read_jsonl
from zhasr.metrics import character_error_rate
from zhasr.progress import progress_bar


def export_rise(ctx: StageContext, rows: list[dict[str, Any]], merged: list[dict[str, Any]],
                texts: list[str]) -> tuple[float, Rise]:
    """The export's CER on the set's ``rows`` (numbers normalized, as evaluation scores) and its rise over
    the merged model, whose per-clip records of the set are ``merged`` (same order)."""
    scored = character_error_rate([r["text"] for r in rows], texts, numbers=True)
    rise = cer_rise([r["candidate_errors"] for r in merged], [e.errors for e in scored.utterances],
                    [e.reference_len for e in scored.utterances], samples=ctx.params.gate.bootstrap_samples,
                    confidence=ctx.params.gate.confidence)
    return scored.rate, rise


def export_formats(ctx: StageContext, formats: list[str], merged_dir: Path,
                   reference_cer: dict[str, float]) -> list[dict[str, Any]]:
    """One result row per format: size, CER and RTF per set, the rise over the merged model with its
    interval, and the verdict."""
    p = ctx.params.export
    dataset = ctx.path("dataset")
    manifest = read_jsonl(dataset / "manifest.jsonl")
    sets = {name: [r for r in manifest if r["split"] == name] for name in reference_cer}
    merged_records = {name: read_jsonl(utterances_path(ctx, name)) for name in sets}
    for name, rows in sets.items():
        if [r["id"] for r in merged_records[name]] != [r["id"] for r in rows]:
            raise ValueError(f"{utterances_path(ctx, name)}: its clips differ from the {name} split of "
                             f"{dataset / 'manifest.jsonl'}; run evaluate again")
    out_root = ctx.path("models") / "exports"
    calibration = calibration_clips(manifest, dataset, p.gptq_calibration_clips) if "gptq-4bit" in formats else []
    gptq = GptqOptions(group_size=p.gptq_group_size)
    results = []
    with progress_bar("export") as progress:
        for done, fmt in enumerate(formats):
            with Stopwatch() as writing:
                path = write_export(fmt, merged_dir, out_root, calibration, ctx.params.model.language, gptq)
            rises: dict[str, Rise] = {}
            row: dict[str, Any] = {"format": fmt, "path": str(path), "size_mb": round(size_on_disk(path) / 1e6, 1),
                                   "write_s": round(writing.seconds, 1)}
            for name, rows in sets.items():
                texts, seconds = transcribe_export(fmt, path, [dataset / r["audio"] for r in rows],
                                                   ctx.params.model.language, p.threads,
                                                   ctx.params.transcribe.max_new_tokens,
                                                   ctx.params.transcribe_settings())
                cer, rises[name] = export_rise(ctx, rows, merged_records[name], texts)
                row.update({f"cer_{name}": cer, f"cer_{name}_increase": rises[name].rise,
                            f"cer_{name}_increase_low": rises[name].low, f"cer_{name}_increase_high": rises[name].high,
                            f"rtf_{name}": real_time_factor(seconds, sum(r["duration_s"] for r in rows))})
            limit = p.low_bit_max_cer_increase if fmt in LOW_BIT else p.max_cer_increase
            row.update(limit=limit, verdict=verdict(rises.values(), limit))
            row["fit"] = row["verdict"] == FIT
            results.append(row)
            progress(done + 1, len(formats))
    return results


def log_export(path: Path, fmt: str, run_id: str) -> str:
    """Log an export file or folder under ``exports/<fmt>/`` of the active run; returns its ``runs:/`` URI."""
    if path.is_file():
        mlflow.log_artifact(str(path), f"exports/{fmt}")
    else:
        mlflow.log_artifacts(str(path), f"exports/{fmt}")
    return f"runs:/{run_id}/exports/{fmt}"


def run(ctx: StageContext, formats: list[str] | None = None) -> dict[str, Any]:
    merged = read_json(ctx.report("merge"), "merge")
    evaluation = read_json(ctx.report("evaluate"), "evaluate")
    # The merged model equals base + adapter within merge.tolerance, so the candidate's CER is its CER.
    reference = {name: evaluation[name]["candidate"]["cer"] for name in EVALUATION_SETS if name in evaluation}
    with tracking.stage_run(ctx, "export") as mlflow_run:
        results = export_formats(ctx, formats or ctx.params.export.formats, Path(merged["merged_dir"]), reference)
        for row in results:
            key = row["format"].replace("-", "_")
            mlflow.log_metrics({f"export_{key}_{m}": row[m] for m in row
                                if m.startswith(("cer_", "rtf_")) or m in ("size_mb", "write_s")})
            mlflow.set_tag(f"zhasr.export.{row['format']}", row["verdict"])
            # kept with the run (and so with its model version); models/exports/ is overwritten
            if row["verdict"] != UNFIT:
                row["artifact"] = log_export(Path(row["path"]), row["format"], mlflow_run.info.run_id)
        mlflow.log_table(pd.DataFrame(results), artifact_file="export/exports.json")
        summary = {"reference_cer": reference, "exports": results}
        atomic_write_json(ctx.report("export"), summary)
    return summary


export_task = task(run, name="export", cache_policy=NO_CACHE)
