"""The retraining flow: ingest -> validate -> train -> evaluate -> merge -> register.

All stages log into one MLflow run; the flow run's state and each task's
state are in Prefect. Run it with ``zhasr retrain`` or ``python -m flows.retrain``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tasks import tracking
from tasks.context import StageContext
from tasks.evaluate import evaluate_task
from tasks.ingest import ingest_task
from tasks.merge import merge_task
from tasks.register import register_task
from tasks.synth import synth_task
from tasks.train import train_task
from tasks.validate import validate_task
from zhasr.config import load_params
from zhasr.project import apply_default_env, project_root


@flow(name="retrain", log_prints=True)
def retrain(params_path: str | None = None, overrides: list[str] | None = None, synthesize: bool = False) -> dict[str, Any]:
    """Run every stage on ``params.yaml`` (plus ``overrides``); returns the register stage's summary."""
    root = project_root()
    params = load_params(Path(params_path) if params_path else root / "params.yaml", overrides or [])
    apply_default_env(root, params.model.base)
    logger = get_run_logger()
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
        train_task(ctx)
        evaluation = evaluate_task(ctx)
        merge_task(ctx)
        result = register_task(ctx)
    except BaseException:
        MlflowClient().set_terminated(run_id, "FAILED")
        raise
    MlflowClient().set_terminated(run_id, "FINISHED")
    logger.info("candidate CER %.4f, champion v%s CER %.4f: %s",
                evaluation["candidate"]["cer"], evaluation["champion"]["version"],
                evaluation["champion"]["cer"], result["reason"])
    return {**result, "mlflow_run_id": run_id}


if __name__ == "__main__":
    retrain()
