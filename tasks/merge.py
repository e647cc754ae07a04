"""Merge stage: the trained adapter folded into a plain Hugging Face Whisper directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import tracking
from tasks.context import StageContext
from zhasr.audio import load_16k
from zhasr.manifest import atomic_write_json, read_json, read_jsonl
from zhasr.merge import merge_adapter, merge_difference


class MergeMismatch(RuntimeError):
    """The merged model's outputs differ from the adapter model's by more than merge.tolerance."""


def check_clip(ctx: StageContext):
    """A test clip to compare adapter and merged outputs on (silence when the split is empty)."""
    manifest = ctx.path("dataset") / "manifest.jsonl"
    rows = [r for r in read_jsonl(manifest) if r["split"] == "test"] if manifest.is_file() else []
    return load_16k(ctx.path("dataset") / rows[0]["audio"]) if rows else np.zeros(16000, np.float32)


def run(ctx: StageContext) -> dict[str, Any]:
    train = read_json(ctx.report("train"), "train")
    out_dir = ctx.path("models") / "candidate"
    p = ctx.params.merge
    base, adapter = Path(train["base_model_dir"]), Path(train["adapter_dir"])
    with tracking.stage_run(ctx, "merge"):
        merge_adapter(base, adapter, out_dir, dtype=p.dtype)
        difference = merge_difference(base, adapter, out_dir, check_clip(ctx))
        size_mb = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file()) / 2**20
        mlflow.log_metrics({"merged_size_mb": size_mb, "merge_max_logit_diff": difference})
        if difference > p.tolerance:
            raise MergeMismatch(f"{out_dir}: logits differ from base + adapter by {difference:.3g} > "
                                f"merge.tolerance={p.tolerance:g} ({p.dtype})")
        summary = {"merged_dir": str(out_dir), "size_mb": round(size_mb, 1), "dtype": p.dtype,
                   "max_logit_diff": difference, "tolerance": p.tolerance}
        atomic_write_json(ctx.report("merge"), summary)
    return summary


merge_task = task(run, name="merge", cache_policy=NO_CACHE)
