"""Where the project lives and the environment its embedded defaults need.

Every path the pipeline writes is resolved against the project root, so the
MLflow store, Prefect's home and the data land in the same place whatever the
working directory.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# Quiet, offline defaults; a value the user already set wins.
OFFLINE_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    # The first run in a fresh PREFECT_HOME migrates its db for ~23 s.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "TOKENIZERS_PARALLELISM": "false",
}


def project_root() -> Path:
    """``$ZHASR_ROOT``, else the nearest folder at or above the cwd holding params.yaml, else the cwd."""
    if os.environ.get("ZHASR_ROOT"):
        return Path(os.environ["ZHASR_ROOT"]).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file():
            return folder
    return here


def mlflow_tracking_uri(root: Path) -> str:
    """Absolute sqlite URI of the embedded tracking store, ``<root>/mlflow/mlflow.db``."""
    return f"sqlite:///{(root / 'mlflow' / 'mlflow.db').resolve()}"


def mlflow_artifact_uri(root: Path) -> str:
    """Absolute file URI for artifacts, ``<root>/mlflow/artifacts``."""
    return (root / "mlflow" / "artifacts").resolve().as_uri()


def is_hub_model_id(name: str) -> bool:
    """True for ``owner/model`` names that are not local paths."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


def apply_default_env(root: Path, base_model: str | None = None) -> None:
    """Set the embedded defaults (tracking store, PREFECT_HOME, telemetry off, hub offline).

    The Hugging Face hub stays offline unless ``base_model`` names a hub model.
    """
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("MLFLOW_TRACKING_URI", mlflow_tracking_uri(root))
    os.environ.setdefault("PREFECT_HOME", str((root / ".prefect").resolve()))
    if base_model is None or not is_hub_model_id(base_model):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


def git_commit(root: Path) -> str:
    """HEAD of the project checkout, ``+dirty`` when tracked files changed; ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.strip() + ("+dirty" if dirty.strip() else "")
