"""The number detector's flow: build it on the transcriber's champion, then wait for a person.

``zhasr detector`` runs the stage alone; this flow is what ``zhasr schedule`` serves on ``detector.cron``. With
``skip_if_built`` (scheduled runs) it builds only when no version of ``detector.model_name`` was built on the
base a build starts from now with the settings it would follow, so a new detector follows each transcriber champion
a person approves and each change of the detector's settings. A build that
passed its check pauses the run for the same approval form as the retraining flow (``approval.timeout_s``);
old versions are pruned last (``register.keep_newest``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger

from flows.approval import Approval, await_approval
from tasks.detector import DetectorReport, already_built, detector_task
from tasks.prune import prune_task
from zhasr.context import StageContext


@dataclass(frozen=True)
class DetectorOutcome:
    """What a detector run did: nothing, for ``reason``, or a build with the reviewer's answer (None when the
    build failed its check or ``approval.timeout_s`` is 0)."""

    reason: str = ""  # why nothing was built
    report: DetectorReport | None = None  # None when nothing was built
    approval: Approval | None = None

    @property
    def built(self) -> bool:
        return self.report is not None

    def to_dict(self) -> dict[str, Any]:
        """The detector stage's report without its model card, with ``built`` and ``approval``."""
        if self.report is None:
            return {"built": False, "reason": self.reason}
        return {**{k: v for k, v in self.report.to_dict().items() if k != "model_card"}, "built": True,
                "approval": self.approval.to_dict() if self.approval else None}


@flow(name="detector", log_prints=True)
def build_detector(params_path: str | None = None, overrides: list[str] | None = None,
                   skip_if_built: bool = False) -> DetectorOutcome:
    """Build the detector (or, with ``skip_if_built``, skip a build already made), then wait for a reviewer when
    a challenger was registered."""
    ctx = StageContext.load(params_path, overrides)
    logger = get_run_logger()
    if skip_if_built and (reason := already_built(ctx)):
        logger.info("no detector to build: %s", reason)
        return DetectorOutcome(reason)
    report = detector_task(ctx)
    name, answer = ctx.params.detector.model_name, None
    if report.alias and ctx.params.approval.timeout_s > 0:
        answer = await_approval(ctx, name, report.version, report.model_card)
    if report.version:
        prune_task(ctx, name)
    return DetectorOutcome("", report, answer)


if __name__ == "__main__":
    build_detector()
