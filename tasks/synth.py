"""Demo data: a synthetic call-center batch, and the real-speech regression set when it is present.

Both are written under paths.incoming like any delivered batch.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from zhasr.context import StageContext
from zhasr.data.importers import ImportOptions, import_dataset
from zhasr.data.ingest import EVAL_ONLY_SPLIT
from zhasr.data.synth import check_batch_settings, synthesize_batch


def run(ctx: StageContext) -> Path:
    """Write ``<incoming>/<synth.batch>/``, unless that batch is already there with the same settings (returns
    its folder); ValueError when it was made with others."""
    p = ctx.params.synth
    batch_dir = ctx.path("incoming") / p.batch
    if (batch_dir / "manifest.jsonl").is_file():
        if (batch_dir / "synth.json").is_file():
            check_batch_settings(batch_dir, p)
        return batch_dir
    return synthesize_batch(ctx.path("incoming"), p)


def import_regression_set(ctx: StageContext) -> Path | None:
    """Import ``regression.manifest`` as an evaluation-only batch once; None when not configured or absent."""
    r = ctx.params.regression
    source = (ctx.root / r.manifest).resolve() if r.manifest else None
    target = ctx.path("incoming") / r.batch
    if source is None or not source.is_file():
        return None
    if not (target / "manifest.jsonl").is_file():
        import_dataset("jsonl", source, ctx.path("incoming"), r.batch,
                       ImportOptions(split=EVAL_ONLY_SPLIT, speaker_pattern=r.speaker_pattern or None))
    return target


def demo_data(ctx: StageContext) -> dict[str, str | None]:
    regression = import_regression_set(ctx)
    return {"synthetic": str(run(ctx)), "regression": str(regression) if regression else None}


synth_task = task(demo_data, name="demo-data", cache_policy=NO_CACHE)
