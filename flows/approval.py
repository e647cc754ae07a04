"""The person in the loop: the flow pauses after registering a challenger until a reviewer answers.

With a Prefect server (``prefect server start``) the paused run shows a form in
the UI with the model card above it. ``zhasr approve`` works at any time as well;
if nobody answers before ``approval.timeout_s`` the version stays challenger.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from prefect import get_client, get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Running
from pydantic import Field

from mlflow_services.errors import PromotionError
from tasks import approval
from tasks.register import Registration
from zhasr.context import StageContext


class ApprovalDecision(RunInput):
    approve: bool = Field(description="true: the challenger becomes champion; false: it is rejected")
    reviewer: str = Field(min_length=1, description="your name, recorded with the decision")
    comment: str = Field(min_length=1, description="why, recorded with the decision")


@dataclass(frozen=True)
class Approval:
    """A reviewer's answer on a challenger, or ``timeout`` when none came within ``approval.timeout_s``."""

    # refused: the answer no longer applied when it came (another version approved meanwhile); nothing changed
    decision: Literal["approved", "rejected", "timeout", "refused"]
    champion: str | None  # the champion version after the answer
    by: str | None = None  # the reviewer
    note: str | None = None  # their reason

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Promotion:
    """A registered version and the reviewer's answer (None when it failed the gate or ``approval.timeout_s``
    is 0): the promote flow's result, and the retrain flow's when it trained."""

    registration: Registration
    approval: Approval | None

    def to_dict(self) -> dict[str, Any]:
        """The registration without its model card (the version's description holds it), with ``approval``."""
        return {**{k: v for k, v in self.registration.to_dict().items() if k != "model_card"},
                "approval": self.approval.to_dict() if self.approval else None}


def await_approval(ctx: StageContext, name: str, version: str, model_card: str) -> Approval:
    """Pause for an ApprovalDecision on ``version`` of the registered model ``name``; apply it."""
    options = ctx.params.approval
    logger = get_run_logger()
    logger.info("%s v%s is challenger; waiting up to %d s for a reviewer: answer the form of this flow run "
                "in the Prefect UI, or run `zhasr approve %s --model %s --by NAME --note WHY`", name, version,
                options.timeout_s, version, name)
    form = ApprovalDecision.with_initial_data(
        description=f"Promote {name} v{version} to champion?\n\n{model_card}", approve=False)
    try:
        decision = pause_flow_run(wait_for_input=form, timeout=options.timeout_s, poll_interval=options.poll_s,
                                  key=f"approve-{name}-v{version}")
    except FlowPauseTimeout:
        # The run is still Paused on the server; it goes on running, without a decision.
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run.get_id(), Running(message="no approval before the timeout"), force=True)
        champion = approval.champion_version(name)
        logger.info("no answer in %d s: v%s stays challenger, champion is v%s", options.timeout_s, version, champion)
        return Approval("timeout", champion)
    try:
        champion = approval.decide(name, version, decision.approve, decision.reviewer, decision.comment)
    except PromotionError as exc:  # a stale answer: the registration stands, the decision is not applied
        logger.warning("%s's answer on v%s was not applied: %s", decision.reviewer, version, exc)
        return Approval("refused", approval.champion_version(name), decision.reviewer, f"{decision.comment} ({exc})")
    logger.info("%s %s v%s: %s", decision.reviewer, "approved" if decision.approve else "rejected", version,
                decision.comment)
    return Approval("approved" if decision.approve else "rejected", champion, decision.reviewer, decision.comment)


def after_register(ctx: StageContext, registered: Registration) -> Promotion:
    """The registration with the reviewer's answer when a challenger was registered and
    ``approval.timeout_s`` > 0."""
    answer = None
    if registered.passed and ctx.params.approval.timeout_s > 0:
        answer = await_approval(ctx, registered.model_name, registered.version, registered.model_card)
    return Promotion(registered, answer)
