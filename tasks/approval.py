"""A reviewer's answer to a challenger, applied to the registry (the flow asks the question)."""

from __future__ import annotations

from mlflow_services import promotion, registry
from zhasr.context import StageContext


def champion_version(ctx: StageContext) -> str | None:
    champion = registry.version_by_alias(ctx.params.register.model_name, registry.CHAMPION)
    return str(champion.version) if champion else None


def decide(ctx: StageContext, version: str, approve: bool, by: str, note: str) -> str | None:
    """Approve (alias champion) or reject ``version``, recorded with who and why; returns the champion."""
    name = ctx.params.register.model_name
    if approve:
        promotion.approve(name, version, by=by, note=note)
    else:
        promotion.reject(name, version, by=by, note=note)
    return champion_version(ctx)
