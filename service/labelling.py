"""Label Studio's annotation webhook: each created or updated annotation adds its labelled minutes; once
``label.retrain_after_min`` are waiting, the corrections are pulled into a batch and a run of the retrain
deployment (``retrain/<schedule.deployment>``, served by ``zhasr schedule``) is created.

Label Studio is told to send ``Authorization: Bearer <a service key>`` with every call (the webhook's
headers), so the route is authenticated like every other.
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header
from starlette.concurrency import run_in_threadpool

from service.errors import ApiError
from service.state import ServiceState
from tasks import label
from zhasr.context import StageContext
from zhasr.labelling.webhook import ACTIONS, MinuteLedger, labelled_minutes

log = logging.getLogger("zhasr.serve")


def labelling_routes(app: FastAPI, state: ServiceState, ctx: StageContext) -> None:
    p = ctx.params.label
    ledger = MinuteLedger(ctx.root / ctx.params.serve.jobs_dir / "labelled_minutes.json")
    retraining = threading.Lock()  # one pull-and-retrain at a time

    @app.post("/v1/labelstudio/webhook", summary="Label Studio's annotation webhook: counts labelled minutes and "
                                                 "starts the retraining at label.retrain_after_min")
    async def labelstudio_webhook(payload: Annotated[dict[str, Any], Body()],
                                  authorization: Annotated[str | None, Header()] = None):
        state.authenticate(authorization)
        action = payload.get("action")
        if not isinstance(action, str):
            raise ApiError(422, "action: expected Label Studio's event name, a string", "action", "invalid_action")
        if action not in ACTIONS:
            return {"action": action[:64], "counted": False}
        counted = labelled_minutes(payload.get("annotation"), p.max_region_s)
        if counted is None:
            raise ApiError(422, "annotation: expected Label Studio's annotation, with an integer id and a result list",
                           "annotation", "invalid_annotation")
        pending = await run_in_threadpool(ledger.add, *counted)
        started = 0 < p.retrain_after_min <= pending and retraining.acquire(blocking=False)
        if started:
            threading.Thread(target=_pull_and_retrain, args=(ctx, ledger, retraining), daemon=True,
                             name="label-pull-retrain").start()
        return {"action": action, "counted": True, "annotation": counted[0], "minutes": round(counted[1], 3),
                "pending_min": round(pending, 3), "retrain_started": started}


def _pull_and_retrain(ctx: StageContext, ledger: MinuteLedger, lock: threading.Lock) -> None:
    """Pull the corrections into a batch and create a run of the retrain deployment; on a failure the
    minutes stay counted, so the next annotation tries again."""
    try:
        waiting = set(ledger.pending())
        summary = label.pull(ctx)
        if summary.rows:
            from prefect.deployments import run_deployment

            run = run_deployment(f"retrain/{ctx.params.schedule.deployment}", timeout=0,
                                 tags=["zhasr", "labelstudio"])
            log.info("labelled minutes reached %.1f: %d regions pulled into %s; retrain flow run %s",
                     ctx.params.label.retrain_after_min, summary.rows, summary.batch_dir, run.id)
        ledger.clear(waiting)
    except Exception:
        log.exception("label pull and retrain failed; the labelled minutes stay counted")
    finally:
        lock.release()
