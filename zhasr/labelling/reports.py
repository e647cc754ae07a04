"""What ``zhasr label push`` and ``pull`` did (reports/label_push.json, reports/label_pull.json)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class FailedCall:
    """A call file a push could not read or transcribe, and why."""

    file: str
    reason: str


@dataclass(frozen=True)
class PushedTask:
    """A call added to the project, in the order chosen."""

    rank: int
    call_id: str
    task_id: int
    minutes: float
    uncertainty: float  # 1 - the call's confidence
    disagreement: float | None  # champion against challenger (strategy ``disagreement``), else None
    numbers: int  # numbers heard (strategy ``numbers``)
    kind: str  # "<channels>ch@<rate>"


@dataclass(frozen=True)
class LabelPush:
    """What one push sent (reports/label_push.json)."""

    project: str
    project_id: int
    project_url: str
    model_version: str  # whose segments the tasks carry as predictions
    strategy: str
    budget_min: float
    calls_given: int
    calls_pushed: int
    minutes_pushed: float
    already_in_project: list[str]  # files whose audio the project already has
    failed: list[FailedCall]
    tasks: list[PushedTask]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LabelPull:
    """What one pull brought back (reports/label_pull.json)."""

    project: str
    project_id: int
    project_url: str
    batch_dir: str | None  # None when nothing new was annotated
    rows: int  # corrected regions in the batch
    rejected: int  # regions quarantined, for ``reasons``
    already_pulled: int  # annotations in an earlier batch, unchanged
    unlabelled_tasks: int
    minutes: float  # labelled audio in the batch
    corrected_share: float  # of regions that had a prediction, the share whose text the person changed
    annotations: list[int]
    reasons: list[str]
    export_file: str | None = None  # the raw export, kept where the pull took or refused something

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
