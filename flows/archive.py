"""The ``transcribe-archive`` flow: every call of a folder, glob or manifest, in shards run as Prefect tasks
on a Dask cluster (prefect-dask; a LocalCluster sized to the machine, or ``archive.address``) or on Ray
(``archive.runner: ray``, prefect-ray). A rerun skips what its records say is done for this model version;
a shard whose worker died runs again elsewhere and does only its unfinished calls. The versions it reads
are leased while it runs (``mlflow_services.in_use``), so a prune meanwhile keeps their files."""

from __future__ import annotations

import os
import time

from prefect import flow, get_run_logger
from prefect.futures import as_completed

from mlflow_services.in_use import Holdings
from tasks.archive import finish, local_workers, output_root, shard_task
from tasks.transcribe import MODEL_URI, resolve, version_named
from zhasr.archive.listing import list_calls, shards
from zhasr.archive.records import DONE, ArchiveRun, known_hashes
from zhasr.config import ArchiveParams, ConfigError
from zhasr.context import StageContext
from zhasr.progress import progress_bar


def task_runner(archive: ArchiveParams):
    """The task runner ``archive`` names: Dask (a local cluster, or the one at ``archive.address``) or Ray."""
    if archive.runner == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError as exc:
            raise ConfigError("archive.runner: ray needs prefect-ray (pip install prefect-ray)") from exc
        return RayTaskRunner(address=archive.address) if archive.address else RayTaskRunner()
    from prefect_dask import DaskTaskRunner

    if archive.address:
        return DaskTaskRunner(address=archive.address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": local_workers(archive.workers), "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


@flow(name="transcribe-archive", log_prints=True)
def transcribe_archive(source: str | None = None, model: str | None = None, params_path: str | None = None,
                       overrides: list[str] | None = None) -> ArchiveRun:
    """Transcribe ``source`` (default ``archive.source``) with ``model`` (default: the champion)."""
    ctx = StageContext.load(params_path, overrides)
    a = ctx.params.archive
    source = source or a.source
    if not source:
        raise ValueError("transcribe-archive: no source given and archive.source is not set")
    logger = get_run_logger()
    resolved = resolve(ctx, model)
    calls = list_calls(source)
    known = known_hashes(output_root(ctx))
    workers = local_workers(a.workers)
    threads = 0 if a.address else max(1, (os.cpu_count() or 1) // workers)
    logger.info("%d calls from %s with %s, %d a shard", len(calls), source, resolved.identity, a.shard_calls)
    with Holdings("zhasr transcribe-archive") as holdings:
        holdings.hold("model", resolved.name, resolved.version)
        detector = ctx.params.transcribe.detector if ctx.params.transcribe.redact else ""
        if match := MODEL_URI.match(detector):
            holdings.hold("detector", match["name"], version_named(ctx, detector))
        started = time.perf_counter()
        futures = [shard_task.submit(ctx, resolved, group, {c.stat_key: known[c.stat_key] for c in group
                                                            if c.stat_key in known}, threads)
                   for group in shards(calls, a.shard_calls)]
        records, skipped, copied, seconds = [], set(), set(), 0.0
        with progress_bar("transcribe-archive: calls") as progress:
            for future in as_completed(futures):
                result = future.result()
                records += result.records
                skipped |= set(result.skipped)
                copied |= set(result.copied)
                seconds += sum(r.duration_s for r in result.records if r.status == DONE)
                elapsed = time.perf_counter() - started
                eta = elapsed / len(records) * (len(calls) - len(records))
                progress(len(records), len(calls))
                logger.info("%d/%d calls, %.2f audio hours, ETA %.0f s", len(records), len(calls), seconds / 3600, eta)
    summary = finish(ctx, resolved, records, time.perf_counter() - started, workers, skipped, copied)
    logger.info("%d done, %d failed (%d of them copied from the same audio under another name), %d skipped; "
                "%.1f audio hours an hour", summary.done, summary.failed, summary.copied, summary.skipped,
                summary.audio_hours_per_hour)
    return summary


def run_archive(params_path: str | None = None, overrides: list[str] | None = None, source: str | None = None,
                model: str | None = None) -> ArchiveRun:
    """The flow on the task runner the params name (the CLI's entry)."""
    ctx = StageContext.load(params_path, overrides)
    runner = task_runner(ctx.params.archive)
    return transcribe_archive.with_options(task_runner=runner)(source=source, model=model, params_path=params_path,
                                                               overrides=overrides)
