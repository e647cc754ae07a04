"""The MLflow model registry: log a Whisper directory as a version, move aliases with an audit trail,
find a version's files.

Every alias change is recorded twice: as tags on the version (``zhasr.<alias>.by``, ``.at``,
``.note``) for the registry page, and as a run in the ``<model>-alias-log`` experiment, whose
runs are the full history (who, when, why, from which version) that ``rollback`` reads.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

import mlflow_services
import zhasr
from mlflow_services import tracking
from mlflow_services.pyfunc import WhisperTranscriber
from zhasr.config import TranscribeParams

CHAMPION = "champion"
CHALLENGER = "challenger"
DETECTOR_RECALL_TAG = "zhasr.detector.mean_recall"  # a number detector's version: its check's mean recall
PRUNED_TAG = "zhasr.pruned"  # a version being pruned, then its run: which version, when, under which rule
EXPORTS_TAG = "zhasr.exports"  # a version's exports as JSON: {format: {"verdict": fit|unfit|inconclusive, "uri"}}
# A column of base64-encoded audio files in, one transcript per row out.
SIGNATURE = ModelSignature(inputs=Schema([ColSpec("string", "audio")]), outputs=Schema([ColSpec("string")]))
# What the modules of the pyfunc's decoding import (MLflow and pandas come with MLflow's own requirements); each is
# pinned, when a version is logged, to the version installed (without a local label such as "+cpu").
SERVED_DISTRIBUTIONS = ("torch", "transformers", "peft", "faster-whisper", "silero-vad", "soundfile", "soxr", "opencc",
                        "cn2an")


def pip_requirements() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name).split('+')[0]}" for name in SERVED_DISTRIBUTIONS]


def versions(name: str) -> list[ModelVersion]:
    """Every version of the registered model ``name``, newest first; none for a name not registered."""
    return sorted(MlflowClient().search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version))


def version_by_alias(name: str, alias: str) -> ModelVersion | None:
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def log_and_register(name: str, model_dir: Path, language: str, tags: dict[str, str],
                     transcribe: TranscribeParams | None = None) -> ModelVersion:
    """Log ``model_dir`` as a pyfunc model in the active run and register it as a new version of ``name``;
    its pyfunc transcribes with ``transcribe`` (the engine's settings). A linked folder is logged from where
    it lies (MLflow refuses to copy through a link that leaves the folder it was named in)."""
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=WhisperTranscriber(),
        artifacts={"whisper": str(Path(model_dir).resolve())},
        code_paths=[str(Path(zhasr.__file__).parent), str(Path(mlflow_services.__file__).parent)],
        pip_requirements=pip_requirements(),
        model_config={"language": language, "transcribe": dataclasses.asdict(transcribe or TranscribeParams())},
        signature=SIGNATURE,
    )
    return mlflow.register_model(info.model_uri, name, tags=tags)


def publish_card(name: str, version: str, card: str) -> None:
    """A version's model card (markdown) as its description, as the active run's (its description in the UI)
    and as the run's ``model_card.md``."""
    MlflowClient().update_model_version(name, version, description=card)
    mlflow.log_text(card, "model_card.md")
    mlflow.set_tag("mlflow.note.content", card)


@dataclass(frozen=True)
class AliasChange:
    action: str  # register | approve | reject | rollback | gate
    alias: str  # champion | challenger
    version: str  # the version the action is about
    previous: str | None  # version that held the alias before (None: nobody)
    by: str  # person or automated actor
    note: str  # why
    at: str  # ISO time, UTC


def alias_log_experiment(name: str) -> str:
    return f"{name}-alias-log"


def change_alias(name: str, alias: str, version: str, *, action: str, by: str, note: str,
                 remove: bool = False, check: Callable[[str | None], None] | None = None) -> AliasChange:
    """Point ``alias`` at ``version`` (or remove it from ``version``) and record who, when and why: a run
    of the experiment ``<name>-alias-log`` (the history ``status`` shows and ``rollback`` follows).
    ``check(previous)``, called once the alias is set and before anything is recorded, may raise: the alias
    goes back to ``previous`` and nothing is recorded."""
    client = MlflowClient()
    held = version_by_alias(name, alias)
    previous = str(held.version) if held else None
    if remove:
        if previous == version:
            client.delete_registered_model_alias(name, alias)
    else:
        client.set_registered_model_alias(name, alias, version)
    if check is not None:
        try:
            check(previous)
        except BaseException:
            if previous is None:
                client.delete_registered_model_alias(name, alias)
            else:
                client.set_registered_model_alias(name, alias, previous)
            raise
    change = AliasChange(action, alias, version, previous, by, note,
                         datetime.now(timezone.utc).isoformat(timespec="microseconds"))
    experiment = mlflow.get_experiment_by_name(alias_log_experiment(name))
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(alias_log_experiment(name))
    run = client.create_run(experiment_id, run_name=f"{action} v{version} {alias}",
                            tags={f"zhasr.{k}": str(v) for k, v in asdict(change).items() if v is not None})
    client.set_terminated(run.info.run_id)
    return change


def alias_history(name: str) -> list[AliasChange]:
    """Every recorded alias change of ``name``, oldest first."""
    experiment = mlflow.get_experiment_by_name(alias_log_experiment(name))
    if experiment is None:
        return []
    runs = MlflowClient().search_runs([experiment.experiment_id], max_results=10000)
    fields = [f.name for f in dataclasses.fields(AliasChange)]
    changes = [AliasChange(**{f: r.data.tags.get(f"zhasr.{f}") for f in fields}) for r in runs]
    # Run start times have millisecond resolution; two changes of one decision can share one.
    return sorted(changes, key=lambda c: c.at)


@dataclass(frozen=True)
class ExportEntry:
    """One export a version names: its verdict (fit, unfit, inconclusive) and where it is kept (a ``runs:/`` URI;
    None for one not kept)."""

    verdict: str
    uri: str | None


_RUNS_URI = re.compile(r"runs:/\S+")


def exports_of(version: ModelVersion) -> dict[str, ExportEntry]:
    """``{format: ExportEntry}`` from the version's ``EXPORTS_TAG``; a version registered before it carries one
    ``zhasr.export.<format>`` tag each ("fit: CER ..., runs:/..."), read the same way."""
    if EXPORTS_TAG in version.tags:
        return {fmt: ExportEntry(e["verdict"], e.get("uri")) for fmt, e in json.loads(version.tags[EXPORTS_TAG]).items()}
    return {key.removeprefix("zhasr.export."): ExportEntry(value.split(":", 1)[0],
                                                          uri.group(0) if (uri := _RUNS_URI.search(value)) else None)
            for key, value in version.tags.items() if key.startswith("zhasr.export.")}


def logged_model_id(version: ModelVersion) -> str | None:
    """The id of the logged model a version was registered from (MLflow 3): its ``model_id``, which the registry
    leaves empty for a version registered from ``models:/<model id>``, so read from that source too."""
    source = version.source or ""
    if version.model_id:
        return version.model_id
    if source.startswith("models:/m-") and "/" not in source[len("models:/"):]:
        return source[len("models:/"):]
    return None


def whisper_dir(version: ModelVersion) -> Path:
    """Local folder of the Hugging Face files inside a registered version (downloaded if remote)."""
    local = None
    if model_id := logged_model_id(version):
        local = tracking.local_path(mlflow.get_logged_model(model_id).artifact_location)
    if local is None or not local.exists():
        local = Path(mlflow.artifacts.download_artifacts(version.source))
    artifacts = Model.load(local / "MLmodel").flavors["python_function"]["artifacts"]
    return local / artifacts["whisper"]["path"]


def learned_batches(version: ModelVersion) -> set[str]:
    """The batches a version was trained on (its ``zhasr.learned_batches`` tag; none for the base model)."""
    return set(json.loads(version.tags.get("zhasr.learned_batches") or "[]"))


def last_trained_dataset(name: str) -> tuple[str, str] | None:
    """(version, dataset md5) of the newest version trained by the pipeline (not the base model); None if none."""
    try:
        trained = [v for v in versions(name) if v.tags.get("zhasr.dataset_md5")]
    except MlflowException:
        return None
    return (str(trained[0].version), trained[0].tags["zhasr.dataset_md5"]) if trained else None
