"""Prune stage: registry retention (register.keep_newest, register.keep_champions) applied to the transcriber's
registered model and the number detector's; see mlflow_services.retention for what is kept."""

from __future__ import annotations

import logging

import mlflow
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlflow_services import retention, tracking
from zhasr.context import StageContext

log = logging.getLogger(__name__)


def registered_models(ctx: StageContext) -> list[str]:
    """The models zhasr registers: register.model_name, and detector.model_name when set."""
    return [name for name in (ctx.params.register.model_name, ctx.params.detector.model_name) if name]


def run(ctx: StageContext, names: list[str] | None = None, dry_run: bool = False) -> list[retention.RetentionReport]:
    """Prune each of ``names`` (default: ``registered_models``). Unless ``dry_run``, logged on the stage's run (the
    flow's when there is one): ``registry_pruned_versions``, ``registry_freed_mb`` and each version's fate as the
    table ``prune/versions.json``."""
    tracking.configure(ctx)
    names = names or registered_models(ctx)
    if dry_run:
        return [retention.prune(name, ctx.params.register, dry_run=True) for name in names]
    with tracking.stage_run(ctx, "prune"):
        reports = [retention.prune(name, ctx.params.register) for name in names]
        mlflow.log_metrics({"registry_pruned_versions": sum(len(r.pruned) for r in reports),
                            "registry_freed_mb": sum(r.freed_bytes for r in reports) / 1e6})
        mlflow.log_table(pd.DataFrame([{"model": r.model_name, **vars(v)} for r in reports for v in r.versions],
                                      columns=["model", "version", "kept", "why", "freed_bytes"]),
                         artifact_file="prune/versions.json")
    for r in reports:
        if r.pruned:
            log.info("%s: pruned v%s (%.0f MB freed); kept %s", r.model_name, ", v".join(r.pruned), r.freed_bytes / 1e6,
                     ", ".join(f"v{v.version} ({v.why})" for v in r.versions if v.kept))
    return reports


prune_task = task(run, name="prune", cache_policy=NO_CACHE)
