"""The number detector's flow: build it on the transcriber's champion, then wait for a person.

``zhasr detector`` runs the stage alone; this flow is what ``zhasr schedule`` serves on ``detector.cron``. With
``skip_if_built`` (scheduled runs) it builds only when no version of ``detector.model_name`` was built on the
base a build starts from now with the settings it would follow, so a new detector follows each transcriber champion
a person approves and each change of the detector's settings. A build that
passed its check pauses the run for the same approval form as the retraining flow (``approval.timeout_s``);
old versions are pruned last (``register.keep_newest``).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.approval import await_approval
from tasks.detector import already_built, detector_task
from tasks.prune import prune_task
from zhasr.context import StageContext


@flow(name="detector", log_prints=True)
def build_detector(params_path: str | None = None, overrides: list[str] | None = None,
                   skip_if_built: bool = False) -> dict[str, Any]:
    """The detector stage's report (model card left out) with ``approval``: the reviewer's decision when a challenger
    was registered and ``approval.timeout_s`` > 0, else None; ``{"built": False, "reason"}`` when skipped."""
    ctx = StageContext.load(params_path, overrides)
    logger = get_run_logger()
    if skip_if_built and (reason := already_built(ctx)):
        logger.info("no detector to build: %s", reason)
        return {"built": False, "reason": reason}
    report = detector_task(ctx)
    name, answer = ctx.params.detector.model_name, None
    if report.alias and ctx.params.approval.timeout_s > 0:
        answer = await_approval(ctx, name, report.version, report.model_card)
    if report.version:
        prune_task(ctx, name)
    return {**{k: v for k, v in report.to_dict().items() if k != "model_card"}, "built": True, "approval": answer}


if __name__ == "__main__":
    build_detector()
