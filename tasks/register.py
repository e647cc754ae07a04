"""Register stage: the merged candidate becomes a model version; alias "challenger" only if it beats the champion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import registry, tracking
from tasks.context import StageContext
from zhasr.manifest import atomic_write_json, read_json


def verdict(candidate_cer: float, champion_cer: float, min_gain: float) -> tuple[bool, str]:
    """(passes, reason): the candidate must be better than the champion by more than ``min_gain`` (absolute CER)."""
    gain = champion_cer - candidate_cer
    if gain > min_gain:
        return True, f"CER {candidate_cer:.4f} beats champion {champion_cer:.4f} by {gain:.4f} > {min_gain:.4f}"
    return False, f"CER {candidate_cer:.4f} vs champion {champion_cer:.4f}: gain {gain:.4f} <= {min_gain:.4f}"


def run(ctx: StageContext) -> dict[str, Any]:
    evaluation = read_json(ctx.report("evaluate"), "evaluate")
    merged = read_json(ctx.report("merge"), "merge")
    name = ctx.params.register.model_name
    passed, reason = verdict(evaluation["candidate"]["cer"], evaluation["champion"]["cer"],
                             ctx.params.register.min_cer_gain)
    with tracking.stage_run(ctx, "register") as run:
        version = registry.log_and_register(name, Path(merged["merged_dir"]), ctx.params.model.language, tags={
            "zhasr.base_model": ctx.params.model.base,
            "zhasr.params_hash": ctx.params.digest(),
            "zhasr.dataset_md5": read_json(ctx.report("validate"), "validate")["dataset_md5"],
            "zhasr.gate": "pass" if passed else "fail",
            "zhasr.gate_reason": reason,
            "zhasr.cer": f"{evaluation['candidate']['cer']:.6f}",
            "zhasr.champion_version": str(evaluation["champion"]["version"]),
            "zhasr.champion_cer": f"{evaluation['champion']['cer']:.6f}",
        })
        if passed:
            registry.set_alias(name, registry.CHALLENGER, str(version.version), reason)
        mlflow.set_tags({"zhasr.gate": "pass" if passed else "fail", "zhasr.model_version": str(version.version)})
        summary = {"model_name": name, "version": str(version.version), "passed": passed, "reason": reason,
                   "alias": registry.CHALLENGER if passed else None, "run_id": run.info.run_id}
        atomic_write_json(ctx.report("register"), summary)
    return summary


register_task = task(run, name="register", cache_policy=NO_CACHE)
