"""Prune stage: registry retention (register.keep_newest, register.keep_champions) applied to the transcriber's
registered model and the number detector's; see mlflow_services.retention for what is kept."""

from __future__ import annotations

import logging

import mlflow
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlflow_services import retention, tracking
from tasks.transcribe import MODEL_URI
from zhasr.config import Params
from zhasr.context import StageContext

log = logging.getLogger(__name__)


def registered_models(ctx: StageContext) -> list[str]:
    """The models zhasr registers: register.model_name, and detector.model_name when set."""
    return [name for name in (ctx.params.register.model_name, ctx.params.detector.model_name) if name]


def pinned_versions(params: Params) -> dict[str, dict[str, str]]:
    """``{model: {version: setting}}`` of every setting that names a version by number (``models:/NAME/3``)."""
    pins: dict[str, dict[str, str]] = {}
    for key, value in params.flat().items():
        if isinstance(value, str) and (match := MODEL_URI.match(value)) and match["version"]:
            pins.setdefault(match["name"], {})[match["version"]] = key
    return pins


def run(ctx: StageContext, names: list[str] | None = None, dry_run: bool = False) -> list[retention.RetentionReport]:
    """Prune each of ``names`` (LookupError for one that is not registered), or each of ``registered_models`` that
    is. Unless ``dry_run``, logged on the stage's run (the flow's when there is one): ``registry_pruned_versions``,
    ``registry_freed_mb`` and each version's fate as the table ``prune/versions.json``."""
    tracking.configure(ctx)
    pins = pinned_versions(ctx.params)

    def prune_all() -> list[retention.RetentionReport]:
        reports = []
        for name in names or registered_models(ctx):
            try:
                reports.append(retention.prune(name, ctx.params.register, pins.get(name), dry_run=dry_run))
            except LookupError:
                if names:
                    raise
        return reports

    if dry_run:
        return prune_all()
    with tracking.stage_run(ctx, "prune"):
        reports = prune_all()
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


def after_registering(ctx: StageContext, name: str) -> list[retention.RetentionReport]:
    """``run`` on ``name`` where a flow or a stage has just registered a version of it. A failure is logged, not
    raised: the new version and its approval matter more than the space, and the next prune finishes the work."""
    try:
        return run(ctx, [name])
    except Exception as exc:  # any store's error: S3, HTTP, a file system
        log.warning("%s: pruning old versions failed (the next prune finishes it): %s", name, exc)
        return []


prune_task = task(after_registering, name="prune", cache_policy=NO_CACHE)
