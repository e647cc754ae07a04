"""What every stage receives: the project root, the params and the MLflow run to log into, with the
paths and the dataset reads every stage shares."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

from zhasr.config import Params, load_params
from zhasr.data.ingest import EVALUATION_SETS
from zhasr.data.manifest import ManifestRow, read_json, read_manifest
from zhasr.project import apply_default_env, project_root


class Report(Protocol):
    """A stage's report record: ``TrainReport``, ``MergeReport``, ``EvaluationSummary``, ``Verdict``."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self: ...


R = TypeVar("R", bound=Report)


@dataclass(frozen=True)
class StageContext:
    root: Path  # project root; every relative path in params.paths is resolved against it
    params: Params
    mlflow_run_id: str | None = None  # the flow's run; None: the stage opens a run of its own

    @classmethod
    def load(cls, params_path: str | Path | None = None, overrides: list[str] | None = None) -> StageContext:
        """The project's context: ``params_path`` (default ``params.yaml`` at the project root) with
        ``overrides`` (``KEY=VALUE``) applied, and the environment's embedded defaults set."""
        root = project_root()
        params = load_params(Path(params_path) if params_path else root / "params.yaml", list(overrides or []))
        apply_default_env(root, params.model.base)
        return cls(root, params)

    def with_run(self, mlflow_run_id: str) -> StageContext:
        return replace(self, mlflow_run_id=mlflow_run_id)

    def path(self, name: str) -> Path:
        """Absolute path of ``params.paths.<name>``."""
        return (self.root / getattr(self.params.paths, name)).resolve()

    def report(self, stage: str) -> Path:
        """``reports/<stage>.json``: a stage's summary, read by later stages and by DVC."""
        return self.path("reports") / f"{stage}.json"

    def read_report(self, stage: str, record: type[R]) -> R:
        """``reports/<stage>.json`` as its record; one that this zhasr did not write raises LookupError
        naming the file and the field."""
        path = self.report(stage)
        try:
            return record.from_dict(read_json(path, stage))
        except (KeyError, TypeError) as err:
            raise LookupError(f"{path}: not what this zhasr's {stage} stage writes "
                              f"({type(err).__name__}: {err}); run `zhasr {stage}` again") from err

    def utterances(self, set_name: str) -> Path:
        """``reports/evaluate_<set>_utterances.jsonl``: one record per clip (zhasr.evaluation.scoring)."""
        return self.path("reports") / f"evaluate_{set_name}_utterances.jsonl"

    def dataset_manifest(self) -> Path:
        return self.path("dataset") / "manifest.jsonl"

    def split_rows(self, split: str) -> list[ManifestRow]:
        """The validated dataset manifest's rows of one split, in manifest order."""
        return [r for r in read_manifest(self.dataset_manifest()) if r.split == split]

    def evaluation_rows(self, sets: tuple[str, ...] = EVALUATION_SETS) -> dict[str, list[ManifestRow]]:
        """``{set: rows}`` of the evaluation sets the dataset has (test, regression, telephone)."""
        rows = read_manifest(self.dataset_manifest())
        return {name: chosen for name in sets if (chosen := [r for r in rows if r.split == name])}
