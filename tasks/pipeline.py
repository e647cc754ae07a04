"""What a flow needs around its stages: the MLflow run they all log into, whether there is anything new
to train on, and which failures a Prefect task retries."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from mlflow_services import registry, tracking
from zhasr.context import StageContext
from zhasr.data.ingest import pending_batches
from zhasr.data.manifest import file_md5


def nothing_new(ctx: StageContext) -> str | None:
    """Why there is nothing to train on (no new batch, dataset unchanged since the last version), else None."""
    tracking.configure(ctx)
    last = registry.last_trained_dataset(ctx.params.register.model_name)
    manifest = ctx.dataset_manifest()
    if last is None or pending_batches(ctx.path("incoming"), ctx.path("dataset")) or not manifest.is_file():
        return None
    if file_md5(manifest) != last[1]:
        return None
    return (f"no new validated batch under {ctx.path('incoming')}: the dataset ({last[1][:8]}) is the one "
            f"v{last[0]} was trained on")


@contextmanager
def pipeline_run(ctx: StageContext, run_name: str, tags: dict[str, str] | None = None) -> Iterator[StageContext]:
    """The context of a flow's stages, bound to a new MLflow run that logs all params; the run ends
    FINISHED when the block does, FAILED when it raises."""
    run_id = tracking.start_pipeline_run(ctx, run_name=run_name, tags=tags)
    try:
        yield ctx.with_run(run_id)
    except BaseException:
        tracking.end_run(run_id, "FAILED")
        raise
    tracking.end_run(run_id, "FINISHED")


def skip(ctx: StageContext, reason: str) -> None:
    """Record on the flow's run why it trained nothing."""
    tracking.tag_run(ctx.mlflow_run_id, "zhasr.skipped", reason)


def is_transient_failure(task, task_run, state) -> bool:
    """Prefect retry condition: retry on network and database-lock errors, not on bugs or bad data."""
    exc = state.result(raise_on_failure=False)
    text = f"{type(exc).__name__}: {exc}"
    return isinstance(exc, (ConnectionError, TimeoutError)) or any(
        marker in text for marker in ("database is locked", "Connection refused", "Max retries exceeded",
                                      "Temporary failure in name resolution", "Service Unavailable",
                                      "Bad Gateway", "Gateway Timeout"))
