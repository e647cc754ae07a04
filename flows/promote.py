"""Gate, register and approval on the evaluation already in reports/: ``zhasr promote``.

For a re-decision without retraining, e.g. after the gate rules in params.yaml
changed; the retraining flow runs the same stages after evaluating.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from flows.approval import after_register
from tasks.context import StageContext
from tasks.gate import gate_task
from tasks.register import register_task
from zhasr.config import load_params
from zhasr.project import apply_default_env, project_root


@flow(name="promote", log_prints=True)
def promote(params_path: str | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    root = project_root()
    params = load_params(Path(params_path) if params_path else root / "params.yaml", overrides or [])
    apply_default_env(root, params.model.base)
    ctx = StageContext(root, params)
    gate_task(ctx)
    return after_register(ctx, register_task(ctx))
