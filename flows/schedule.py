"""Scheduled retraining: a Prefect deployment of the retrain flow on the cron of params.schedule (and of
the label-push flow on ``label.push_cron`` when ``label.calls_dir`` names the night's calls, and of the
transcribe-archive flow on ``archive.cron`` when ``archive.source`` does, and of the number detector's flow on
``detector.cron`` when it is set).

Each scheduled run trains only when a new validated batch arrived
(``only_if_new_data``), one run at a time (a run due while another is going is
queued), and a failed run is retried ``schedule.retries`` times; its training
resumes from the last checkpoint.

    zhasr schedule                     # serve it from this process (embedded or any Prefect server)
    prefect deploy ...                 # or register it with a work pool (see README)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import EntrypointType, RunnerDeployment

from flows.archive import task_runner, transcribe_archive
from flows.detector import build_detector
from flows.label import label_push
from flows.retrain import retrain
from zhasr.config import Params, load_params
from zhasr.project import project_root

SCHEDULED_PARAMS_ENV = "ZHASR_SCHEDULED_PARAMS"


def _served_params() -> Params:
    """The params the scheduled flows are built with: those ``zhasr schedule`` was given (``--params``, ``--set``),
    which it hands to the processes that run its flows as ``$ZHASR_SCHEDULED_PARAMS`` (JSON ``[file or null,
    ["KEY=VALUE", ...]]``); else the project's params.yaml, as for a ``prefect deploy`` of these entrypoints."""
    params_path, overrides = json.loads(os.environ.get(SCHEDULED_PARAMS_ENV) or "[null, []]")
    params_file = Path(params_path) if params_path else project_root() / "params.yaml"
    return load_params(params_file, overrides) if params_file.is_file() else Params()


# Built at import: the process that executes a scheduled run imports them by their entrypoints, and must get the
# same options (retries, the archive's task runner) as the schedule that started it.
_served = _served_params()
scheduled_retrain = retrain.with_options(retries=_served.schedule.retries,
                                         retry_delay_seconds=_served.schedule.retry_delay_s)
scheduled_archive = transcribe_archive.with_options(task_runner=task_runner(_served.archive))


def deployment(params: Params, params_path: Path | None = None, overrides: list[str] | None = None) -> RunnerDeployment:
    """The retrain flow with ``schedule.retries`` on ``schedule.cron``, training only on new data."""
    return _nightly(scheduled_retrain, f"{__name__}.scheduled_retrain", params, params_path, overrides,
                    params.schedule.cron, "Retrain on newly validated batches; gate against the champion; a person "
                    "approves.", "retrain", only_if_new_data=True)


def _nightly(flow_object, entrypoint: str | None, params: Params, params_path: Path | None, overrides: list[str] | None,
             cron: str, description: str, tag: str, **flow_parameters) -> RunnerDeployment:
    """``flow_object`` on ``cron`` (schedule.timezone), one run at a time, with ``params_path`` and ``overrides`` as
    its parameters; ``entrypoint``: the module-level name of a flow built with options, which the runner process
    must import to get the same options."""
    runner = flow_object.to_deployment(
        name=params.schedule.deployment,
        schedules=[CronSchedule(cron=cron, timezone=params.schedule.timezone)],
        concurrency_limit=1,
        parameters={"params_path": str(params_path) if params_path else None, "overrides": list(overrides or []),
                    **flow_parameters},
        description=description,
        tags=["zhasr", tag],
        **({"entrypoint_type": EntrypointType.MODULE_PATH} if entrypoint else {}),
    )
    if entrypoint:
        runner.entrypoint = entrypoint
    return runner


def label_push_deployment(params: Params, params_path: Path | None = None,
                          overrides: list[str] | None = None) -> RunnerDeployment | None:
    """``label-push`` of ``label.calls_dir`` on ``label.push_cron``; None when no folder is set."""
    if not params.label.calls_dir:
        return None
    return _nightly(label_push, None, params, params_path, overrides, params.label.push_cron,
                    "Send the night's calls to Label Studio with the champion's segments, most uncertain first.",
                    "label")


def archive_deployment(params: Params, params_path: Path | None = None,
                       overrides: list[str] | None = None) -> RunnerDeployment | None:
    """``transcribe-archive`` of ``archive.source`` on ``archive.cron`` on the task runner the params name;
    None when no source is set."""
    if not params.archive.source:
        return None
    return _nightly(scheduled_archive, f"{__name__}.scheduled_archive", params, params_path, overrides,
                    params.archive.cron,
                    "Transcribe the night's calls with the champion; a rerun skips what is done.", "archive")


def detector_deployment(params: Params, params_path: Path | None = None,
                        overrides: list[str] | None = None) -> RunnerDeployment | None:
    """``detector`` on ``detector.cron``, building only on a base no version was built on; None when no cron is set."""
    if not params.detector.cron:
        return None
    return _nightly(build_detector, None, params, params_path, overrides, params.detector.cron,
                    "Build the number detector on the transcriber's new champion (or with new settings); its check gates it, "
                    "a person approves.",
                    "detector", skip_if_built=True)


def serve_schedule(params: Params, params_path: Path | None = None, overrides: list[str] | None = None) -> None:
    """Register the deployments of ``params`` (read from ``params_path`` with ``overrides``) and run their scheduled
    flow runs from this process until interrupted."""
    from prefect import serve

    os.environ[SCHEDULED_PARAMS_ENV] = json.dumps([str(params_path) if params_path else None, list(overrides or [])])
    deployments = (deployment(params, params_path, overrides), label_push_deployment(params, params_path, overrides),
                   archive_deployment(params, params_path, overrides), detector_deployment(params, params_path, overrides))
    serve(*(d for d in deployments if d))
