"""Synthetic call-center batch for the demo: written under paths.incoming like any delivered batch."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.context import StageContext
from zhasr.synth import SynthOptions, synthesize_batch


def run(ctx: StageContext) -> Path:
    """Write ``<incoming>/<synth.batch>/``, unless that batch is already there (returns its folder)."""
    p = ctx.params.synth
    batch_dir = ctx.path("incoming") / p.batch
    if (batch_dir / "manifest.jsonl").is_file():
        return batch_dir
    options = SynthOptions(n_clips=p.n_clips, n_speakers=p.n_speakers, seed=p.seed,
                           telephone_fraction=p.telephone_fraction, snr_db_choices=tuple(p.snr_db))
    return synthesize_batch(ctx.path("incoming"), options, p.batch)


synth_task = task(run, name="synth", cache_policy=NO_CACHE)
