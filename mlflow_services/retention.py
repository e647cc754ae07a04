"""Registry retention: which versions of a registered model keep their files, and pruning the rest.

Every nightly candidate is a version with its own copy of the merged weights (about 290 MB for
whisper-base) and its exports. A version is kept when it holds an alias (champion, challenger or any
other a person set), is among the ``keep_newest`` newest, or is among the ``keep_champions`` champions
before the current one (what ``rollback`` goes back to). A pruned version loses its logged model (the
weights), the exports only it names, and its registry entry. Its run stays: metrics, plots, model card
and params, tagged ``zhasr.pruned``; the alias history is untouched.

Files are deleted through MLflow's artifact repositories, so the same call frees a local store, a
bucket or a tracking server's proxied store. The logged model's record is left in the ``deleted``
stage, where ``mlflow gc`` removes it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository
from mlflow.tracking import MlflowClient

from mlflow_services import registry, tracking
from mlflow_services.promotion import champion_lineage
from zhasr.config import RegisterParams

PRUNED_TAG = "zhasr.pruned"  # on the run of a pruned version: which version, when, under which rule


@dataclass(frozen=True)
class VersionFate:
    """One version's outcome: kept (with why) or pruned (with what went)."""

    version: str
    kept: bool
    why: str  # "alias champion", "newest 10", "former champion", or "pruned"
    freed_bytes: int | None  # the files deleted (or that a dry run would delete); None for a remote store


@dataclass(frozen=True)
class RetentionReport:
    """What ``prune`` did to one registered model (or would do, ``dry_run``)."""

    model_name: str
    dry_run: bool
    keep_newest: int
    keep_champions: int
    versions: list[VersionFate]  # newest first

    @property
    def pruned(self) -> list[str]:
        return [v.version for v in self.versions if not v.kept]

    @property
    def freed_bytes(self) -> int:
        return sum(v.freed_bytes or 0 for v in self.versions if not v.kept)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pruned": self.pruned, "freed_bytes": self.freed_bytes}


def reasons_to_keep(versions: list[ModelVersion], aliases: dict[str, str], lineage: list[str],
                    rule: RegisterParams) -> dict[str, str]:
    """``{version: why it is kept}`` for the versions ``rule`` keeps; ``aliases`` alias -> version, ``lineage``
    the champions oldest first (the last is the current one)."""
    why: dict[str, str] = {}
    for alias, version in sorted(aliases.items()):
        why.setdefault(str(version), f"alias {alias}")
    for v in sorted(versions, key=lambda v: -int(v.version))[:rule.keep_newest]:
        why.setdefault(str(v.version), f"newest {rule.keep_newest}")
    for version in lineage[:-1][-rule.keep_champions:]:
        why.setdefault(version, "former champion")
    return why


def _export_uris(version: ModelVersion) -> set[str]:
    return {e["uri"] for e in json.loads(version.tags.get("zhasr.exports") or "{}").values() if e.get("uri")}


def _size(repo, path: str | None = None) -> int | None:
    """Bytes under ``path`` of an artifact repository; None where the store does not say."""
    total = 0
    for entry in repo.list_artifacts(path):
        if entry.is_dir:
            inner = _size(repo, entry.path)
            if inner is None:
                return None
            total += inner
        elif entry.file_size is None:
            return None
        else:
            total += entry.file_size
    return total


def _files_of(version: ModelVersion, kept_uris: set[str]) -> list[tuple[Any, str | None]]:
    """(artifact repository, path in it or None for all of it) of each thing pruning ``version`` deletes: its
    logged model, and each export no kept version names (a version ``zhasr promote`` registered again
    names the exports of the run before it)."""
    files: list[tuple[Any, str | None]] = []
    if model_id := registry.logged_model_id(version):
        try:
            model = mlflow.get_logged_model(model_id)
            files.append((get_artifact_repository(model.artifact_location), None))
        except MlflowException:
            pass  # its logged model is gone already
    model_uri = [version.source] if (version.source or "").startswith("runs:/") else []  # a model logged before MLflow 3
    for uri in sorted(set(model_uri) | (_export_uris(version) - kept_uris)):
        if uri.startswith("runs:/"):
            run_id, path = RunsArtifactRepository.parse_runs_uri(uri)
            try:
                files.append((get_artifact_repository(MlflowClient().get_run(run_id).info.artifact_uri), path))
            except MlflowException:
                pass  # its run is gone
    return files


def prune(name: str, rule: RegisterParams, *, dry_run: bool = False) -> RetentionReport:
    """Apply ``rule`` to the versions of ``name``: each one it does not keep loses its files and its registry
    entry (nothing changes when ``dry_run``); ``rule.keep_newest`` 0 prunes nothing."""
    client = MlflowClient()
    try:
        aliases = {alias: str(v) for alias, v in client.get_registered_model(name).aliases.items()}
    except MlflowException:
        return RetentionReport(name, dry_run, rule.keep_newest, rule.keep_champions, [])
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version))
    keep = ({str(v.version): "keep_newest 0" for v in versions} if rule.keep_newest == 0 else
            reasons_to_keep(versions, aliases, champion_lineage(name), rule))
    kept_uris = set().union(*(_export_uris(v) for v in versions if str(v.version) in keep))
    fates = []
    for v in versions:
        number = str(v.version)
        if number in keep:
            fates.append(VersionFate(number, True, keep[number], 0))
            continue
        files = _files_of(v, kept_uris)
        sizes = [_size(repo, path) for repo, path in files]
        freed = None if None in sizes else sum(sizes)
        if not dry_run:
            _delete(client, name, v, files, rule)
        fates.append(VersionFate(number, False, "pruned", freed))
    return RetentionReport(name, dry_run, rule.keep_newest, rule.keep_champions, fates)


def _delete(client: MlflowClient, name: str, version: ModelVersion, files: list[tuple[Any, str | None]],
            rule: RegisterParams) -> None:
    """Files first, then the registry entry: a prune that stops half way leaves a version that is pruned again."""
    for repo, path in files:
        repo.delete_artifacts(path)
    if model_id := registry.logged_model_id(version):
        try:
            client.delete_logged_model(model_id)
        except MlflowException:
            pass  # deleted already
    if version.run_id:
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        what = (f"{name} v{version.version}: weights and exports deleted {at} (register.keep_newest "
                f"{rule.keep_newest}, keep_champions {rule.keep_champions})")
        tracking.tag_run(version.run_id, PRUNED_TAG, what)
        # the run's description (its model card) is what a reviewer reads first
        card = client.get_run(version.run_id).data.tags.get("mlflow.note.content", "")
        tracking.tag_run(version.run_id, "mlflow.note.content", f"> **Pruned.** {what}; its figures stay.\n\n{card}")
    client.delete_model_version(name, str(version.version))
