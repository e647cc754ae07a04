"""A reviewer's answer to a challenger, applied to the registry (the flow asks the question)."""

from __future__ import annotations

from mlflow_services import promotion, registry


def champion_version(name: str) -> str | None:
    champion = registry.version_by_alias(name, registry.CHAMPION)
    return str(champion.version) if champion else None


def decide(name: str, version: str, approve: bool, by: str, note: str) -> str | None:
    """Approve (alias champion) or reject ``version`` of the registered model ``name``, recorded with who and why;
    returns the champion."""
    if approve:
        promotion.approve(name, version, by=by, note=note)
    else:
        promotion.reject(name, version, by=by, note=note)
    return champion_version(name)
