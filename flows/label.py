"""Labelling flows: ``label-push`` (calls to Label Studio with the champion's segments, most uncertain
first) and ``label-pull`` (people's corrections into the next batch, which the scheduled retraining
finds). ``zhasr schedule`` serves ``label-push`` on ``label.push_cron`` when ``label.calls_dir`` is set."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks import label
from zhasr.context import StageContext
from zhasr.labelling.reports import LabelPull, LabelPush

push_task = task(label.push, name="label-push", cache_policy=NO_CACHE)
pull_task = task(label.pull, name="label-pull", cache_policy=NO_CACHE)


@flow(name="label-push", log_prints=True)
def label_push(calls: list[str] | None = None, model: str | None = None, strategy: str | None = None,
               budget_min: float | None = None, params_path: str | None = None,
               overrides: list[str] | None = None) -> LabelPush:
    """Push ``calls`` (files or folders; default ``label.calls_dir``) to the ``label.project`` project."""
    ctx = StageContext.load(params_path, overrides)
    paths = [Path(c) for c in calls] if calls else [ctx.root / ctx.params.label.calls_dir] \
        if ctx.params.label.calls_dir else []
    if not paths:
        raise ValueError("label-push: no calls given and label.calls_dir is not set")
    summary = push_task(ctx, paths, model=model, strategy=strategy, budget_min=budget_min)
    get_run_logger().info("%d of %d calls pushed (%.1f min) to %s", summary.calls_pushed, summary.calls_given,
                          summary.minutes_pushed, summary.project_url)
    return summary


@flow(name="label-pull", log_prints=True)
def label_pull(params_path: str | None = None, overrides: list[str] | None = None) -> LabelPull:
    ctx = StageContext.load(params_path, overrides)
    summary = pull_task(ctx)
    get_run_logger().info("%d regions pulled into %s, %d rejected, %d annotations pulled before", summary.rows,
                          summary.batch_dir, summary.rejected, summary.already_pulled)
    return summary
