"""MLflow set-up for the embedded store and the run every stage logs into."""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import mlflow
from mlflow.tracking import MlflowClient

from zhasr.context import StageContext
from zhasr.project import apply_default_env, mlflow_artifact_uri


def configure(ctx: StageContext) -> str:
    """Point MLflow at the tracking store and return the experiment id (created with an absolute artifact root)."""
    apply_default_env(ctx.root, ctx.params.model.base)
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    name = ctx.params.tracking.experiment
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        experiment_id = mlflow.create_experiment(name, artifact_location=mlflow_artifact_uri(ctx.root))
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def start_pipeline_run(ctx: StageContext, run_name: str, tags: dict[str, str] | None = None) -> str:
    """Create the run a whole flow logs into; log all params once. Returns its id."""
    experiment_id = configure(ctx)
    run = MlflowClient().create_run(experiment_id, run_name=run_name, tags={"zhasr.kind": "pipeline", **(tags or {})})
    log_params(run.info.run_id, ctx)
    return run.info.run_id


def end_run(run_id: str, status: str = "FINISHED") -> None:
    MlflowClient().set_terminated(run_id, status)


def tag_run(run_id: str, key: str, value: str) -> None:
    MlflowClient().set_tag(run_id, key, value)


def log_params(run_id: str, ctx: StageContext) -> None:
    flat = {k: json.dumps(v) if isinstance(v, list) else v for k, v in ctx.params.flat().items()}
    MlflowClient().log_batch(run_id, params=[mlflow.entities.Param(k, str(v)) for k, v in flat.items()])
    MlflowClient().set_tag(run_id, "zhasr.params_hash", ctx.params.digest())


@contextmanager
def stage_run(ctx: StageContext, stage: str, began_s_ago: float = 0.0) -> Iterator[mlflow.ActiveRun]:
    """The active MLflow run for ``stage``: the flow's run when there is one, else a new run. The stage's
    wall time is logged as ``stage_<stage>_s``. ``began_s_ago``: the work started that long before the run
    is opened (a run logged at the end of a flow still shows the flow's duration)."""
    experiment_id = configure(ctx)
    started = time.perf_counter() - began_s_ago
    if ctx.mlflow_run_id:
        with mlflow.start_run(run_id=ctx.mlflow_run_id) as run:
            yield run
            mlflow.log_metric(f"stage_{stage}_s", round(time.perf_counter() - started, 1))
            mlflow.set_tag(f"zhasr.stage.{stage}", "done")
        return
    tags = {"zhasr.kind": "stage", "zhasr.stage": stage}
    opened = {"run_name": stage, "tags": tags}
    if began_s_ago:
        created = MlflowClient().create_run(experiment_id, start_time=int((time.time() - began_s_ago) * 1000),
                                            run_name=stage, tags=tags)
        opened = {"run_id": created.info.run_id}
    with mlflow.start_run(**opened) as run:
        log_params(run.info.run_id, ctx)
        yield run
        mlflow.log_metric(f"stage_{stage}_s", round(time.perf_counter() - started, 1))


def log_json(obj: Any, artifact_file: str) -> None:
    mlflow.log_text(json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True), artifact_file)


def log_figure_png(figure, artifact_file: str) -> None:
    """Log a matplotlib figure; closes it."""
    import matplotlib.pyplot as plt

    mlflow.log_figure(figure, artifact_file)
    plt.close(figure)


def local_path(uri: str) -> Path | None:
    """The local path of a ``file:`` URI or a plain path; None for remote stores."""
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    if "://" not in uri:
        return Path(uri)
    return None


def log_export(path: Path, fmt: str, run_id: str) -> str:
    """Log an export file or folder under ``exports/<fmt>/`` of the active run; returns its ``runs:/`` URI."""
    if path.is_file():
        mlflow.log_artifact(str(path), f"exports/{fmt}")
    else:
        mlflow.log_artifacts(str(path), f"exports/{fmt}")
    return f"runs:/{run_id}/exports/{fmt}"
