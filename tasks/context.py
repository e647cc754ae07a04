"""What every stage receives: the project root, the params and the MLflow run to log into."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zhasr.config import Params


@dataclass(frozen=True)
class StageContext:
    root: Path  # project root; every relative path in params.paths is resolved against it
    params: Params
    mlflow_run_id: str | None = None  # the flow's run; None: the stage opens a run of its own

    def path(self, name: str) -> Path:
        """Absolute path of ``params.paths.<name>``."""
        return (self.root / getattr(self.params.paths, name)).resolve()

    def report(self, stage: str) -> Path:
        """``reports/<stage>.json``: a stage's summary, read by later stages and by DVC."""
        return self.path("reports") / f"{stage}.json"
