"""The retraining flow: ingest -> validate -> train -> merge -> evaluate -> gate -> export -> register -> approval.

All stages log into one MLflow run; the flow run's state and each task's
state are in Prefect. Run it with ``zhasr retrain`` or ``python -m flows.retrain``;
``zhasr schedule`` serves it on a cron (flows/schedule.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.approval import after_register
from tasks import registry, tracking
from tasks.context import StageContext
from tasks.evaluate import evaluate_task, headline
from tasks.export import export_task
from tasks.gate import gate_task
from tasks.ingest import ingest_task
from tasks.merge import merge_task
from tasks.register import register_task
from tasks.synth import synth_task
from tasks.train import train_task
from tasks.validate import validate_task
from zhasr.config import load_params
from zhasr.ingest import pending_batches
from zhasr.manifest import file_md5
from zhasr.project import apply_default_env, project_root


def nothing_new(ctx: StageContext) -> str | None:
    """Why there is nothing to train on (no new batch, dataset unchanged since the last version), else None."""
    tracking.configure(ctx)
    last = registry.last_trained_dataset(ctx.params.register.model_name)
    manifest = ctx.path("dataset") / "manifest.jsonl"
    if last is None or pending_batches(ctx.path("incoming"), ctx.path("dataset")) or not manifest.is_file():
        return None
    if file_md5(manifest) != last[1]:
        return None
    return (f"no new validated batch under {ctx.path('incoming')}: the dataset ({last[1][:8]}) is the one "
            f"v{last[0]} was trained on")


@flow(name="retrain", log_prints=True)
def retrain(params_path: str | None = None, overrides: list[str] | None = None, synthesize: bool = False,
            only_if_new_data: bool = False) -> dict[str, Any]:
    """Run every stage on ``params.yaml`` (plus ``overrides``); returns the register stage's summary
    with the approval outcome. ``only_if_new_data`` (scheduled runs): stop early, training nothing,
    when no new validated batch arrived since the newest registered version."""
    root = project_root()
    params = load_params(Path(params_path) if params_path else root / "params.yaml", overrides or [])
    apply_default_env(root, params.model.base)
    logger = get_run_logger()
    if only_if_new_data and (reason := nothing_new(StageContext(root, params))):
        logger.info("nothing to train: %s", reason)
        return {"trained": False, "reason": reason}
    run_id = tracking.start_pipeline_run(
        StageContext(root, params), run_name=f"retrain-{flow_run.get_name() or 'local'}",
        tags={"prefect.flow_run_id": str(flow_run.get_id() or "")},
    )
    ctx = StageContext(root, params, mlflow_run_id=run_id)
    logger.info("MLflow run %s", run_id)
    try:
        if synthesize:
            synth_task(ctx)
        ingest_task(ctx)
        validate_task(ctx)
        if only_if_new_data and (reason := nothing_new(ctx)):
            logger.info("nothing to train: %s", reason)
            MlflowClient().set_tag(run_id, "zhasr.skipped", reason)
            MlflowClient().set_terminated(run_id, "FINISHED")
            return {"trained": False, "reason": reason, "mlflow_run_id": run_id}
        # A retried flow run (schedule.retries) continues training from its last checkpoint.
        train_task(ctx, resume=(flow_run.run_count or 1) > 1)
        merge_task(ctx)
        evaluation = evaluate_task(ctx)
        gate_task(ctx)
        if params.export.formats:
            export_task(ctx)
        result = register_task(ctx)
    except BaseException:
        MlflowClient().set_terminated(run_id, "FAILED")
        raise
    MlflowClient().set_terminated(run_id, "FINISHED")
    logger.info("candidate CER %.4f, champion v%s CER %.4f: %s", evaluation["test"]["candidate"]["cer"],
                evaluation["champion_version"], evaluation["test"]["champion"]["cer"], result["reason"])
    return {**after_register(ctx, result), "trained": True, "mlflow_run_id": run_id, "cer": headline(evaluation)}


if __name__ == "__main__":
    retrain()
