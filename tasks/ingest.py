"""Ingest stage: every incoming batch decoded to 16 kHz mono, content-addressed, labels normalized."""

from __future__ import annotations

import mlflow
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlflow_services import tracking
from zhasr.context import StageContext
from zhasr.data.ingest import IngestReport, ingest_batches
from zhasr.data.manifest import atomic_write_json
from zhasr.labelling.pull_batch import provenance
from zhasr.progress import progress_bar


def run(ctx: StageContext) -> IngestReport:
    with tracking.stage_run(ctx, "ingest"), progress_bar("ingest") as progress:
        rows = ingest_batches(ctx.path("incoming"), ctx.path("dataset"), ctx.params.ingest, progress)
        report = IngestReport.of(rows)
        mlflow.log_metrics({"ingest_rows": report.rows, "ingest_decode_errors": report.decode_errors,
                            "ingest_hours": report.hours})
        log_label_lineage(ctx, report.batches)
        atomic_write_json(ctx.report("ingest"), report.to_dict())
    return report


def log_label_lineage(ctx: StageContext, batches: list[str]) -> None:
    """Tag the run with the Label Studio projects and annotations its pulled batches came from."""
    sources = {b: found for b in batches if (found := provenance(ctx.path("incoming") / b))}
    if not sources:
        return
    projects = sorted({s.source.describe() for s in sources.values()})
    annotations = sorted({a for s in sources.values() for a in s.annotations})
    mlflow.set_tags({"zhasr.labelstudio.projects": "; ".join(projects),
                     # MLflow keeps 8,000 characters of a tag; the full list is in the artifact
                     "zhasr.labelstudio.annotations": ",".join(map(str, annotations))[:7000]})
    tracking.log_json({b: s.to_dict() for b, s in sources.items()}, "ingest/labelstudio.json")


ingest_task = task(run, name="ingest", cache_policy=NO_CACHE)
