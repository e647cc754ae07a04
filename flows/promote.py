"""Gate, register and approval on the evaluation already in reports/: ``zhasr promote``.

For a re-decision without retraining, e.g. after the gate rules in params.yaml
changed; the retraining flow runs the same stages after evaluating.
"""

from __future__ import annotations

from prefect import flow

from flows.approval import Promotion, after_register
from tasks.gate import gate_task
from tasks.prune import prune_task
from tasks.register import register_task
from zhasr.context import StageContext


@flow(name="promote", log_prints=True)
def promote(params_path: str | None = None, overrides: list[str] | None = None) -> Promotion:
    ctx = StageContext.load(params_path, overrides)
    gate_task(ctx)
    registered = register_task(ctx)
    prune_task(ctx, ctx.params.register.model_name)
    return after_register(ctx, registered)
