"""The retraining flow: ingest -> validate -> train -> merge -> evaluate -> gate -> export -> register -> prune ->
approval.

All stages log into one MLflow run; the flow run's state and each task's
state are in Prefect. Run it with ``zhasr retrain`` or ``python -m flows.retrain``;
``zhasr schedule`` serves it on a cron (flows/schedule.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.approval import Promotion, after_register
from tasks.evaluate import evaluate_task, headline
from tasks.export import export_task
from tasks.gate import gate_task
from tasks.ingest import ingest_task
from tasks.merge import merge_task
from tasks.pipeline import nothing_new, pipeline_run, skip
from tasks.prune import prune_task
from tasks.register import register_task
from tasks.synth import synth_task
from tasks.train import train_task
from tasks.validate import validate_task
from zhasr.context import StageContext


@dataclass(frozen=True)
class RetrainOutcome:
    """What a retraining run did: nothing, for ``reason``, or a registered version with the reviewer's answer
    and each set's CER (``tasks.evaluate.headline``)."""

    reason: str = ""  # why nothing was trained
    mlflow_run_id: str | None = None
    promotion: Promotion | None = None  # None when nothing was trained
    cer: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.promotion is not None

    def to_dict(self) -> dict[str, Any]:
        if self.promotion is None:
            return {"trained": False, "reason": self.reason, "mlflow_run_id": self.mlflow_run_id}
        return {**self.promotion.to_dict(), "trained": True, "mlflow_run_id": self.mlflow_run_id, "cer": self.cer}


@flow(name="retrain", log_prints=True)
def retrain(params_path: str | None = None, overrides: list[str] | None = None, synthesize: bool = False,
            only_if_new_data: bool = False) -> RetrainOutcome:
    """Run every stage on ``params.yaml`` (plus ``overrides``). ``only_if_new_data`` (scheduled runs): stop
    early, training nothing, when no new validated batch arrived since the newest registered version."""
    ctx = StageContext.load(params_path, overrides)
    logger = get_run_logger()
    if only_if_new_data and (reason := nothing_new(ctx)):
        logger.info("nothing to train: %s", reason)
        return RetrainOutcome(reason)
    with pipeline_run(ctx, run_name=f"retrain-{flow_run.get_name() or 'local'}",
                      tags={"prefect.flow_run_id": str(flow_run.get_id() or "")}) as ctx:
        logger.info("MLflow run %s", ctx.mlflow_run_id)
        if synthesize:
            synth_task(ctx)
        ingest_task(ctx)
        validate_task(ctx)
        if only_if_new_data and (reason := nothing_new(ctx)):
            logger.info("nothing to train: %s", reason)
            skip(ctx, reason)
            return RetrainOutcome(reason, ctx.mlflow_run_id)
        # A retried flow run (schedule.retries) continues training from its last checkpoint.
        train_task(ctx, resume=(flow_run.run_count or 1) > 1)
        merge_task(ctx)
        evaluation = evaluate_task(ctx)
        gate_task(ctx)
        if ctx.params.export.formats:
            export_task(ctx)
        result = register_task(ctx)
        prune_task(ctx, ctx.params.register.model_name)
    test = evaluation.sets["test"]
    logger.info("candidate CER %.4f, champion v%s CER %.4f: %s", test.candidate.cer, evaluation.champion_version,
                test.champion.cer, result.reason)
    return RetrainOutcome("", ctx.mlflow_run_id, after_register(ctx, result), headline(evaluation))


if __name__ == "__main__":
    retrain()
