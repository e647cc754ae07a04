"""Registry retention: which versions of a registered model keep their files, and pruning the rest.

Every nightly candidate is a version with its own copy of the merged weights (295 MB for whisper-base)
and its exports. A version is kept when it holds an alias (champion, challenger or any other a person
set), is among the ``keep_newest`` newest, is among the ``keep_champions`` champions before the current
one (what ``rollback`` goes back to), is named by number in the params, or is in use: a running service or
bulk run that loaded it holds a lease on it (``in_use``), whatever its own command line named. A pruned
version loses its logged model (the weights), the exports only it names, and its registry entry. Its run
stays: metrics, plots, model card and params, tagged ``zhasr.pruned``; the alias history is untouched.

Files are deleted through MLflow's artifact repositories (local, S3, GCS, Azure, HDFS, a tracking
server's proxied store); the space freed is what the store lists before less what it lists after, so a
store whose repository does not delete shows 0. The logged model's record is left in the ``deleted``
stage, where ``mlflow gc`` removes it.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository
from mlflow.tracking import MlflowClient

from mlflow_services import in_use, registry, tracking
from mlflow_services.promotion import champion_lineage
from zhasr.config import RegisterParams


@dataclass(frozen=True)
class VersionFate:
    """One version's outcome: kept (with why) or pruned (with what went)."""

    version: str
    kept: bool
    # every reason it is kept, e.g. "alias champion; newest 10", "former champion", "named by serve.model",
    # "in use by zhasr serve on host-123", or "pruned"
    why: str
    # the files deleted (or that a dry run would delete), as the store's listing gives their sizes; None where it
    # gives none
    freed_bytes: int | None


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
                    rule: RegisterParams, pinned: dict[str, str] | None = None) -> dict[str, str]:
    """``{version: every reason it is kept, joined by "; "}`` for the versions ``rule`` keeps; ``aliases`` alias ->
    version, ``lineage`` the champions oldest first (the last is the current one), ``pinned`` ``{version: the
    setting that names it}``."""
    why: dict[str, list[str]] = {}
    for version, key in (pinned or {}).items():
        why.setdefault(version, []).append(f"named by {key}")
    for alias, version in sorted(aliases.items()):
        why.setdefault(str(version), []).append(f"alias {alias}")
    for v in sorted(versions, key=lambda v: -int(v.version))[:rule.keep_newest]:
        why.setdefault(str(v.version), []).append(f"newest {rule.keep_newest}")
    for version in lineage[:-1][-rule.keep_champions:]:
        why.setdefault(version, []).append("former champion")
    for v in versions:
        if held := in_use.held_by(v):
            why.setdefault(str(v.version), []).append(f"in use by {held}")
    return {version: "; ".join(reasons) for version, reasons in why.items()}


def _export_uris(version: ModelVersion) -> set[str]:
    return {e.uri for e in registry.exports_of(version).values() if e.uri}


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


def _listed_bytes(files: list[tuple[Any, str | None]]) -> int | None:
    sizes = [_size(repo, path) for repo, path in files]
    return None if None in sizes else sum(sizes)


def _files_of(version: ModelVersion, kept_uris: set[str]) -> list[tuple[Any, str | None]]:
    """(artifact repository, path in it or None for all of it) of each thing pruning ``version`` deletes: its
    logged model and each export, unless ``kept_uris`` holds it (a kept version names it too: a version
    ``zhasr promote`` registered again names the exports of the run before it)."""
    files: list[tuple[Any, str | None]] = []
    model_id = registry.logged_model_id(version)
    if model_id and model_id not in kept_uris:
        try:
            files.append((get_artifact_repository(mlflow.get_logged_model(model_id).artifact_location), None))
        except MlflowException:
            pass  # its logged model is gone already
    for uri in sorted(_owned_uris(version) - kept_uris):
        if uri.startswith("runs:/"):
            run_id, path = RunsArtifactRepository.parse_runs_uri(uri)
            try:
                files.append((get_artifact_repository(MlflowClient().get_run(run_id).info.artifact_uri), path))
            except MlflowException:
                pass  # its run is gone
    return files


def _owned_uris(version: ModelVersion) -> set[str]:
    """What a version's files are known by: its logged model's id, a model logged before MLflow 3 (its
    ``runs:/`` source) and its exports' URIs."""
    model_id = registry.logged_model_id(version)
    source = version.source or ""
    return _export_uris(version) | ({model_id} if model_id else set()) | ({source} if source.startswith("runs:/") else set())


def prune(name: str, rule: RegisterParams, pinned: dict[str, str] | None = None, *,
          dry_run: bool = False) -> RetentionReport:
    """Apply ``rule`` to the versions of ``name``: each one it does not keep loses its files and its registry
    entry (nothing changes when ``dry_run``); ``rule.keep_newest`` 0 prunes nothing. ``pinned``: ``{version:
    the setting that names it}``, kept too. Raises LookupError when no model of that name is registered."""
    client = MlflowClient()
    try:
        aliases = {alias: str(v) for alias, v in client.get_registered_model(name).aliases.items()}
    except MlflowException as exc:
        raise LookupError(f"{name}: no registered model of that name") from exc
    versions = registry.versions(name)
    keep = ({str(v.version): "keep_newest 0" for v in versions} if rule.keep_newest == 0 else
            reasons_to_keep(versions, aliases, champion_lineage(name), rule, pinned))
    claimed = set().union(*(_owned_uris(v) for v in versions if str(v.version) in keep))
    fates = []
    for v in versions:
        number = str(v.version)
        if number in keep:
            fates.append(VersionFate(number, True, keep[number], 0))
            continue
        files = _files_of(v, claimed)
        claimed |= _owned_uris(v)  # a file two pruned versions name is counted and deleted once
        freed = _listed_bytes(files)
        if not dry_run:
            if not _delete(client, name, number, files, rule):
                fates.append(VersionFate(number, True, "given an alias or put in use while pruning", 0))
                continue
            left = _listed_bytes(files)
            freed = None if freed is None or left is None else freed - left
        fates.append(VersionFate(number, False, "pruned", freed))
    return RetentionReport(name, dry_run, rule.keep_newest, rule.keep_champions, fates)


def _delete(client: MlflowClient, name: str, number: str, files: list[tuple[Any, str | None]],
            rule: RegisterParams) -> bool:
    """Mark the version pruned (approve and rollback refuse it from then on), then delete its files and its registry
    entry; False, deleting nothing, when it holds an alias or a lease by now. A prune that stops half way leaves a
    marked version that the next prune finishes; one that is gone already counts as done."""
    try:
        version = client.get_model_version(name, number)
    except MlflowException:
        return True  # another prune took it
    if version.aliases or in_use.leases(version):
        return False
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    what = (f"{name} v{number}: weights and exports deleted {at} (register.keep_newest {rule.keep_newest}, "
            f"keep_champions {rule.keep_champions})")
    client.set_model_version_tag(name, number, registry.PRUNED_TAG, what)
    # Marked first, looked at again after: an alias or a lease given before the mark is seen here; an alias
    # given after it is refused (approve and rollback read the mark after they set the alias). A lease taken
    # after this look is not: a holder takes it once it has loaded the files.
    version = client.get_model_version(name, number)
    if version.aliases or in_use.leases(version):
        client.delete_model_version_tag(name, number, registry.PRUNED_TAG)
        return False
    for repo, path in files:
        repo.delete_artifacts(path)
    if model_id := registry.logged_model_id(version):
        with contextlib.suppress(MlflowException):  # deleted already
            client.delete_logged_model(model_id)
    if version.run_id:
        with contextlib.suppress(MlflowException):  # the run was deleted: nothing to tell
            tracking.tag_run(version.run_id, registry.PRUNED_TAG, what)
            # the run's description (its model card) is what a reviewer reads first
            card = client.get_run(version.run_id).data.tags.get("mlflow.note.content", "")
            if not card.startswith("> **Pruned.**"):
                tracking.tag_run(version.run_id, "mlflow.note.content", f"> **Pruned.** {what}; its figures stay.\n\n{card}")
    with contextlib.suppress(MlflowException):  # another prune took it
        client.delete_model_version(name, number)
    return True
