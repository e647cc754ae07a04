"""The MLflow model registry: log a Whisper directory as a version, read aliases, find a version's files."""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient

import tasks
import zhasr
from tasks import tracking
from tasks.serving import WhisperTranscriber

CHAMPION = "champion"
CHALLENGER = "challenger"
PIP_REQUIREMENTS = ["torch==2.13.0", "transformers==5.23.0", "peft==0.21.2", "soundfile", "soxr", "opencc", "jiwer", "rich"]


def version_by_alias(name: str, alias: str) -> ModelVersion | None:
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def log_and_register(name: str, model_dir: Path, language: str, tags: dict[str, str]) -> ModelVersion:
    """Log ``model_dir`` as a pyfunc model in the active run and register it as a new version of ``name``."""
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=WhisperTranscriber(),
        artifacts={"whisper": str(model_dir)},
        code_paths=[str(Path(zhasr.__file__).parent), str(Path(tasks.__file__).parent)],
        pip_requirements=PIP_REQUIREMENTS,
        model_config={"language": language},
    )
    return mlflow.register_model(info.model_uri, name, tags=tags)


def set_alias(name: str, alias: str, version: str, reason: str) -> None:
    client = MlflowClient()
    client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, f"zhasr.alias.{alias}", reason)


def whisper_dir(version: ModelVersion) -> Path:
    """Local folder of the Hugging Face files inside a registered version (downloaded if remote)."""
    local = None
    if version.model_id:
        local = tracking.local_path(mlflow.get_logged_model(version.model_id).artifact_location)
    if local is None or not local.exists():
        local = Path(mlflow.artifacts.download_artifacts(version.source))
    artifacts = Model.load(local / "MLmodel").flavors["python_function"]["artifacts"]
    return local / artifacts["whisper"]["path"]
