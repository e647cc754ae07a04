"""A person's decisions on the registry: approve a challenger, reject it, roll the champion back, see the state.

The same functions serve ``zhasr approve|reject|rollback|status`` and the
approval form of the retraining flow.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, replace
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlflow_services import in_use, registry
from mlflow_services.errors import PromotionError
from mlflow_services.registry import CHALLENGER, CHAMPION


def _version(name: str, version: str):
    """The version, if it is there and whole (not being pruned)."""
    try:
        found = MlflowClient().get_model_version(name, str(version))
    except MlflowException as exc:
        raise PromotionError(f"{name} v{version}: no such model version (pruned ones are gone)") from exc
    if registry.PRUNED_TAG in found.tags:
        raise PromotionError(f"{name} v{version}: its files are deleted ({found.tags[registry.PRUNED_TAG]})")
    return found


def _is_whole(name: str, version: str) -> bool:
    """The version is in the registry and not being pruned (other registry errors are raised)."""
    try:
        found = MlflowClient().get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return registry.PRUNED_TAG not in found.tags


def _require(by: str, note: str) -> None:
    if not by.strip():
        raise PromotionError("--by: name the person who decides")
    if not note.strip():
        raise PromotionError("--note: say why")


def approve(name: str, version: str, by: str, note: str) -> registry.AliasChange:
    """Make a version that passed the gate the champion; it stops being challenger."""
    _require(by, note)
    v = _version(name, version)
    if v.tags.get("zhasr.gate") != "pass":
        reason = _details(v).get("zhasr.gate_reason", "no verdict")
        raise PromotionError(f"{name} v{version}: did not pass the gate ({reason}); only a passing candidate can be "
                             "approved")
    champion = registry.version_by_alias(name, CHAMPION)
    if champion is not None and str(champion.version) == str(version):
        raise PromotionError(f"{name} v{version} is already the champion")
    if champion is not None and int(version) < int(champion.version) and not _was_champion(name, str(version)):
        raise PromotionError(f"{name} v{version}: registered before the champion v{champion.version}, its gate "
                             "compared it with an earlier champion (an answer to an old question?); only a newer "
                             "candidate or a former champion can be approved")
    change = registry.change_alias(name, CHAMPION, str(version), action="approve", by=by, note=note,
                                   check=_whole_still(name, str(version)))
    challenger = registry.version_by_alias(name, CHALLENGER)
    if challenger is not None and str(challenger.version) == str(version):
        registry.change_alias(name, CHALLENGER, str(version), action="approve", by=by, note=note, remove=True)
    MlflowClient().set_model_version_tag(name, str(version), "zhasr.review", "approved")
    return change


def reject(name: str, version: str, by: str, note: str) -> registry.AliasChange:
    """Turn a candidate down: it loses the challenger alias and is tagged rejected."""
    _require(by, note)
    _version(name, version)
    champion = registry.version_by_alias(name, CHAMPION)
    if champion is not None and str(champion.version) == str(version):
        raise PromotionError(f"{name} v{version} is the champion; use rollback to replace it")
    challenger = registry.version_by_alias(name, CHALLENGER)
    if challenger is None or str(challenger.version) != str(version):
        held = f"the challenger is v{challenger.version}" if challenger is not None else "no version is the challenger"
        raise PromotionError(f"{name} v{version} is not the challenger ({held}): there is nothing to reject")
    change = registry.change_alias(name, CHALLENGER, str(version), action="reject", by=by, note=note, remove=True)
    MlflowClient().set_model_version_tag(name, str(version), "zhasr.review", "rejected")
    return change


def champion_lineage(name: str) -> list[str]:
    """Versions that were champion, oldest first, rolled-back ones removed: the last is the champion."""
    stack: list[str] = []
    for change in registry.alias_history(name):
        if change.alias != CHAMPION:
            continue
        if change.action == "rollback":
            while stack and stack[-1] != change.version:
                stack.pop()
            if not stack:
                stack.append(change.version)
        else:
            stack.append(change.version)
    return stack


def rollback(name: str, by: str, note: str, to: str | None = None) -> registry.AliasChange:
    """Give the champion alias back to the previous champion (or to version ``to``, a former champion)."""
    _require(by, note)
    every = champion_lineage(name)
    lineage = [v for v in every if _is_whole(name, v)]  # pruned former champions cannot come back
    whole = f"champions so far, with their files: {', '.join(lineage) or 'none'}"
    current = registry.version_by_alias(name, CHAMPION)
    if to is None:
        if len(lineage) < 2:
            raise PromotionError(f"{name}: no previous champion to roll back to ({whole})")
        to = lineage[-2]
    elif str(to) not in lineage:
        if str(to) in every:
            was = "was champion, but it is pruned"
        elif _was_champion(name, str(to)):
            was = f"was champion until a rollback past it; approve it again (zhasr approve {to})"
        else:
            was = "was never champion"
        raise PromotionError(f"{name} v{to}: {was} ({whole})")
    if current is not None and str(current.version) == str(to):
        raise PromotionError(f"{name} v{to} is already the champion")
    change = registry.change_alias(name, CHAMPION, str(to), action="rollback", by=by, note=note,
                                   check=_whole_still(name, str(to)))
    if current is not None:
        MlflowClient().set_model_version_tag(name, str(current.version), "zhasr.review", f"rolled back to v{to}")
    return change


def _whole_still(name: str, version: str):
    """A ``change_alias`` check: a prune marks a version first and looks for aliases after, so a champion alias
    given meanwhile is seen by one of the two; here, the mark read after the alias is set refuses the decision
    (the alias goes back, nothing is recorded)."""
    def check(previous: str | None) -> None:
        if not _is_whole(name, version):
            raise PromotionError(f"{name} v{version}: a prune took its files meanwhile; the champion stays "
                                 f"{'v' + previous if previous else 'none'}")
    return check


def _was_champion(name: str, version: str) -> bool:
    return any(c.alias == CHAMPION and c.version == version and c.action != "reject"
               for c in registry.alias_history(name))


@dataclass(frozen=True)
class RegistryStatus:
    """What ``zhasr status`` shows of a registered model."""

    model: str
    # a table row a version, newest first: column -> text (a number detector's columns differ from a transcriber's)
    versions: list[dict[str, str]]
    alias_changes: list[registry.AliasChange]  # the last decisions, oldest first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def status(name: str, history: int = 10) -> RegistryStatus:
    """Versions with their aliases, gate verdict, review, CER and export verdicts (a number detector's: its check's
    mean recall and base) and the running processes that hold them (``in_use``); the last ``history`` alias
    changes."""
    client = MlflowClient()
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as exc:
        raise PromotionError(f"{name}: no registered model of that name yet") from exc
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    versions = registry.versions(name)
    rows = []
    for v in versions:
        details = _details(v)
        figures = ({"check_recall": v.tags.get(registry.DETECTOR_RECALL_TAG, ""), "base": v.tags.get("zhasr.parent", "")}
                   if v.tags.get("zhasr.role") == "detector" else
                   {"cer_test": v.tags.get("zhasr.cer", ""), "cer_regression": details.get("zhasr.cer_regression", ""),
                    "dataset_md5": v.tags.get("zhasr.dataset_md5", "")[:8], "exports": _export_verdicts(v)})
        rows.append({
            "version": str(v.version), "aliases": ",".join(sorted(by_version.get(str(v.version), []))),
            "gate": v.tags.get("zhasr.gate", v.tags.get("zhasr.role", "")), "review": v.tags.get("zhasr.review", ""),
            **figures, "git": details.get("zhasr.git_commit", "")[:8],
            "in_use": in_use.held_by(v),
        })
    return RegistryStatus(name, rows, _decisions(registry.alias_history(name))[-history:])


def _export_verdicts(version) -> str:
    """"ct2-int8 fit, ggml-q8_0 inconclusive": what the service and bulk transcription may run (fit only)."""
    return ", ".join(f"{fmt} {e.verdict}" for fmt, e in sorted(registry.exports_of(version).items()))


def _details(version) -> dict[str, str]:
    """The version's tags over those of the run that registered it (lineage, gate rules, other rates); the
    version's alone when that run is deleted."""
    run_tags = {}
    if version.run_id:
        with contextlib.suppress(MlflowException):
            run_tags = MlflowClient().get_run(version.run_id).data.tags
    return {**run_tags, **version.tags}


def _decisions(changes: list[registry.AliasChange]) -> list[registry.AliasChange]:
    """One per decision: an approval that also takes the challenger alias off is one change of two aliases
    (``alias`` "challenger, champion"), not two."""
    decisions: list[registry.AliasChange] = []
    for c in changes:
        last = decisions[-1] if decisions else None
        if last and (last.action, last.version, last.by, last.note) == (c.action, c.version, c.by, c.note):
            decisions[-1] = replace(last, alias=", ".join(sorted({*last.alias.split(", "), c.alias})))
        else:
            decisions.append(c)
    return decisions
