"""Merge stage: the trained adapter folded into a plain Hugging Face Whisper directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import tracking
from tasks.context import StageContext
from zhasr.manifest import atomic_write_json, read_json
from zhasr.merge import merge_adapter


def run(ctx: StageContext) -> dict[str, Any]:
    train = read_json(ctx.report("train"), "train")
    out_dir = ctx.path("models") / "candidate"
    with tracking.stage_run(ctx, "merge"):
        merge_adapter(Path(train["base_model_dir"]), Path(train["adapter_dir"]), out_dir)
        size_mb = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file()) / 2**20
        mlflow.log_metric("merged_size_mb", size_mb)
        summary = {"merged_dir": str(out_dir), "size_mb": round(size_mb, 1)}
        atomic_write_json(ctx.report("merge"), summary)
    return summary


merge_task = task(run, name="merge", cache_policy=NO_CACHE)
