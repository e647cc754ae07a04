"""The HTTP routes: OpenAI's ``/v1/audio/transcriptions`` and ``/v1/models``, durable jobs, health and metrics.

Every transcription response carries the version it was made with (``X-Model-Version`` and, in JSON,
``model``). Errors are OpenAI-shaped; a bad request gets its 4xx with the field named, never a 5xx.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from contextlib import asynccontextmanager
from typing import Annotated

import anyio.to_thread
from fastapi import FastAPI, File, Form, Header, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi_offline import FastAPIOffline  # /docs with Swagger UI served from the package, no CDN
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from service.errors import ApiError, error_response
from service.labelling import labelling_routes
from service.requests import TranscriptionOptions, check_options, check_unknown
from service.state import ServiceState
from service.upload_limit import UploadLimit
from zhasr.calltext.itn import numbers_to_digits
from zhasr.context import StageContext
from zhasr.serve.batcher import Work
from zhasr.serve.jobs import DONE, Job
from zhasr.transcribe.records import Segment
from zhasr.transcribe.redaction import finish_text, muted_rate, muted_wav
from zhasr.transcribe.writers import MEDIA_TYPES, diarized, verbose, write

log = logging.getLogger("zhasr.serve")
UPLOAD_ROUTES = ("/v1/audio/transcriptions", "/v1/audio/transcriptions/jobs")
REDACT_HELP = "personal data to replace: all, none or phone,id_card,bank_card,code,email,number (default: the server's)"


def create_app(ctx: StageContext) -> FastAPI:
    state = ServiceState(ctx)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # every waiting request holds a worker thread: room for all of them, the audio reads and the jobs
        anyio.to_thread.current_default_thread_limiter().total_tokens = state.serve.max_queued + 16
        state.start()
        yield
        state.stop()

    app = FastAPIOffline(title="zhasr transcription service", version="1", lifespan=lifespan,
                         description="Chinese call-center speech to text with the approved champion; OpenAI-compatible.")
    app.state.service = state

    _answer_errors(app)
    _measure(app, state)
    _transcription_routes(app, state, ctx)
    _job_routes(app, state, ctx)
    labelling_routes(app, state, ctx)
    _status_routes(app, state)
    return app


def _answer_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = str(first["loc"][-1]) if first.get("loc") else None
        return error_response(422, f"{param}: {first['msg']}" if param else first["msg"], param)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "param", None), getattr(exc, "code", None),
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):  # a fault of the server itself, never of the request
        log.exception("internal error on %s", request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")


def _measure(app: FastAPI, state: ServiceState) -> None:
    """413 on an upload over the limit; requests and latency by route template."""
    app.add_middleware(UploadLimit, max_mb=state.serve.max_upload_mb, paths=UPLOAD_ROUTES)

    @app.middleware("http")
    async def measure(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")  # none where a middleware answered (413): the upload routes are literal
        path = getattr(route, "path", request.url.path if request.url.path in UPLOAD_ROUTES else "unmatched")
        state.metrics.requests.labels(path, request.method, str(response.status_code)).inc()
        state.metrics.latency.labels(path).observe(time.perf_counter() - started)
        return response


async def _admit(state: ServiceState, ctx: StageContext, request: Request, key_name: str, file: UploadFile,
                 fields: dict) -> tuple:
    """(checked options, the upload's bytes, the admitted call) of a transcription or job request."""
    check_unknown(list((await request.form()).keys()))
    options = check_options(served_name=state.model.name, language_served=ctx.params.model.language,
                            transcribe=ctx.params.transcribe, **fields)
    state.check_rate(key_name)
    blob = await file.read()
    admitted = await run_in_threadpool(state.read_audio, blob, file.filename or "file", key_name)
    return options, blob, admitted


def _transcription_routes(app: FastAPI, state: ServiceState, ctx: StageContext) -> None:
    @app.post("/v1/audio/transcriptions", summary="Transcribe a call (OpenAI-compatible)",
              responses={200: {"content": {m: {} for m in set(MEDIA_TYPES.values()) | {"text/event-stream"}}}})
    async def transcriptions(
        request: Request,
        file: Annotated[UploadFile, File(description="the audio file (any format FFmpeg reads)")],
        model: Annotated[str, Form()],
        language: Annotated[str | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
        response_format: Annotated[str, Form()] = "json",
        temperature: Annotated[float, Form()] = 0.0,
        timestamp_granularities: Annotated[list[str], Form(alias="timestamp_granularities[]")] = [],
        stream: Annotated[bool, Form()] = False,
        channels: Annotated[str | None, Form(description="mix | split (two-channel calls)")] = None,
        hotwords: Annotated[str | None, Form(description="domain terms, comma-separated")] = None,
        redact: Annotated[str | None, Form(description=REDACT_HELP)] = None,
        itn: Annotated[bool | None, Form(description="numbers written as digits")] = None,
        redacted_audio: Annotated[bool, Form(description="verbose_json carries the muted audio")] = False,
        authorization: Annotated[str | None, Header()] = None,
    ):
        key_name = state.authenticate(authorization)
        state.take_place()  # freed once the answer is out (a stream's: after its last event)
        try:
            options, _, admitted = await _admit(state, ctx, request, key_name, file, dict(
                model=model, language=language, prompt=prompt, response_format=response_format,
                temperature=temperature, timestamp_granularities=timestamp_granularities, stream=stream,
                channels=channels, hotwords=hotwords, redact=redact, itn=itn, redacted_audio=redacted_audio))
            started = time.perf_counter()
            work = await run_in_threadpool(state.work, admitted, options, file.filename or "file", key_name)
            headers = {"X-Model-Version": work.loaded.version}
            if options.stream:
                return StreamingResponse(_events(state, work, started, options.itn), media_type="text/event-stream",
                                         headers=headers)
            result = await run_in_threadpool(work.wait)
            final = await run_in_threadpool(state.finished, work, result, options)
        except BaseException:
            state.free_place()
            raise
        state.free_place()
        _observe(state, work, result, started)
        if options.redacted_audio:  # only with verbose_json (checked)
            muted = base64.b64encode(muted_wav(admitted.call, final.redactions)).decode()
            return JSONResponse({**verbose(final, options.words), "redacted_audio": {
                "format": "wav", "sample_rate": muted_rate(admitted.call), "data": muted}}, headers=headers)
        return _formatted(final, options, work, headers)



def _job_routes(app: FastAPI, state: ServiceState, ctx: StageContext) -> None:
    @app.post("/v1/audio/transcriptions/jobs", status_code=202, summary="Queue a whole call; poll for the result")
    async def submit_job(
        request: Request,
        file: Annotated[UploadFile, File()],
        model: Annotated[str, Form()],
        language: Annotated[str | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
        response_format: Annotated[str, Form(description="checked as for a transcription; a job's result is "
                                                        "always verbose_json")] = "verbose_json",
        temperature: Annotated[float, Form()] = 0.0,
        timestamp_granularities: Annotated[list[str], Form(alias="timestamp_granularities[]")] = [],
        channels: Annotated[str | None, Form()] = None,
        hotwords: Annotated[str | None, Form()] = None,
        redact: Annotated[str | None, Form(description=REDACT_HELP)] = None,
        itn: Annotated[bool | None, Form()] = None,
        redacted_audio: Annotated[bool, Form(description="the result links the muted audio (GET .../audio)")] = False,
        authorization: Annotated[str | None, Header()] = None,
    ):
        key_name = state.authenticate(authorization)
        state.check_job_capacity()
        options, blob, admitted = await _admit(state, ctx, request, key_name, file, dict(
            model=model, language=language, prompt=prompt, response_format=response_format, temperature=temperature,
            timestamp_granularities=timestamp_granularities, stream=False, channels=channels, hotwords=hotwords,
            redact=redact, itn=itn, redacted_audio=redacted_audio, job=True))
        job = await run_in_threadpool(state.jobs.submit, key_name, blob, options.to_dict(), admitted.call.duration_s)
        state.wake_jobs()
        return JSONResponse(_job_body(job), status_code=202,
                            headers={"Location": f"/v1/audio/transcriptions/jobs/{job.id}"})

    @app.get("/v1/audio/transcriptions/jobs/{job_id}", summary="A job's state, and its result once done")
    async def get_job(job_id: str, authorization: Annotated[str | None, Header()] = None):
        job = await _own_job(state, job_id, authorization)
        return JSONResponse(_job_body(job), headers={"X-Model-Version": job.model_version or ""})

    @app.get("/v1/audio/transcriptions/jobs/{job_id}/audio", summary="A done job's audio, redacted stretches muted",
             response_class=FileResponse)
    async def get_job_audio(job_id: str, authorization: Annotated[str | None, Header()] = None):
        job = await _own_job(state, job_id, authorization)
        path = state.jobs.redacted_audio(job_id)
        if job.state != DONE or not path.is_file():
            raise ApiError(404, f"job {job_id!r}: no redacted audio (asked with redacted_audio=true, kept "
                                f"{state.serve.retain_days:g} days)", "job_id", "audio_not_found")
        return FileResponse(path, media_type="audio/wav", filename=f"{job_id}.redacted.wav")


async def _own_job(state: ServiceState, job_id: str, authorization: str | None) -> Job:
    """The job ``job_id`` if the caller's key submitted it; 404 otherwise (another key's job is not found)."""
    key_name = state.authenticate(authorization)
    job = await run_in_threadpool(state.jobs.get, job_id)
    if job is None or job.key_name != key_name:
        raise ApiError(404, f"job {job_id!r}: not found for this key", "job_id", "job_not_found")
    return job


def _status_routes(app: FastAPI, state: ServiceState) -> None:
    @app.get("/v1/models", summary="The served model and its version")
    async def models(authorization: Annotated[str | None, Header()] = None):
        state.authenticate(authorization)
        return {"object": "list", "data": [_model_card(state)] if state.model.current else []}

    @app.get("/v1/models/{model_id}")
    async def model_card(model_id: str, authorization: Annotated[str | None, Header()] = None):
        state.authenticate(authorization)
        if state.model.current is None or model_id != state.model.name:
            raise ApiError(404, f"model {model_id!r}: not served here", "model", "model_not_found")
        return _model_card(state)

    @app.get("/health", summary="The process is alive")
    async def health():
        return {"status": "ok"}

    @app.get("/ready", summary="A model is loaded and requests are taken")
    async def ready():
        loaded = state.model.current
        if loaded is None:
            return JSONResponse({"status": "loading", "model": state.model.spec}, status_code=503,
                                headers={"Retry-After": str(state.serve.retry_after_s)})
        return {"status": "ready", "model": loaded.identity, "version": loaded.version,
                "runtime": loaded.transcriber.runtime_name}

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics():
        m = state.metrics
        m.queue_depth.set(state.batcher.depth)
        m.in_flight.set(state.admitted)
        for job_state, n in (await run_in_threadpool(state.jobs.counts)).items():
            m.jobs.labels(job_state).set(n)
        return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)



def _model_card(state: ServiceState) -> dict:
    loaded = state.model.current
    return {"id": state.model.name, "object": "model", "created": int(loaded.loaded_at), "owned_by": "zhasr",
            "version": loaded.version, "identity": loaded.identity, "runtime": loaded.transcriber.runtime_name}


def _observe(state: ServiceState, work: Work, result, started: float) -> None:
    if work.first_decoded_at is not None:
        state.metrics.queue_wait.observe(max(0.0, work.first_decoded_at - work.enqueued_at))
    state.metrics.transcribed(result, "request", time.perf_counter() - started)


def _formatted(result, options: TranscriptionOptions, work: Work, headers: dict) -> Response:
    fmt = options.response_format
    if fmt == "diarized_json":
        return JSONResponse(diarized(result), headers=headers)
    if fmt == "json":  # OpenAI's fields, and what the engine warns of (a file cut short, a failed piece)
        return JSONResponse({"text": result.text, "model": work.loaded.identity,
                             "usage": {"type": "duration", "seconds": round(result.duration_s, 3)},
                             **({"warnings": list(result.warnings)} if result.warnings else {})}, headers=headers)
    if fmt == "verbose_json":
        return JSONResponse(verbose(result, options.words), headers=headers)
    return Response(write(result, fmt), media_type=f"{MEDIA_TYPES[fmt]}; charset=utf-8", headers=headers)


def _sse(event: dict) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


async def _events(state: ServiceState, work: Work, started: float, itn: bool):
    """``transcript.text.delta`` per segment in timeline order as soon as it and all before it are
    decoded, then ``transcript.text.done`` (or ``error``); frees the request's place when it ends."""
    try:
        async for event in _stream(state, work, started, itn):
            yield event
    finally:
        state.free_place()


async def _stream(state: ServiceState, work: Work, started: float, itn: bool):
    transcriber, sent, said = work.loaded.transcriber, 0, 0
    shown = numbers_to_digits if itn else (lambda text: text)
    while True:
        item = await run_in_threadpool(work.events.get)
        while sent < len(work.order) and work.order[sent] in work.results:
            k = work.order[sent]
            sent += 1
            segment = transcriber.segment(work.plan, k, work.results[k], work.prompt)
            if isinstance(segment, Segment) and segment.text:
                yield _sse({"type": "transcript.text.delta", "delta": (" " if said else "") + shown(segment.text),
                            "logprobs": None, "start": segment.start, "end": segment.end,
                            "speaker": segment.speaker, "channel": segment.channel})
                said += 1
        if item is None:  # the work is over
            break
    if work.error:
        yield _sse({"type": "error", "error": {"message": work.error, "type": "api_error"}})
        return
    result = work.result
    _observe(state, work, result, started)
    yield _sse({"type": "transcript.text.done", "text": finish_text(result, (), itn).text, "logprobs": None,
                "model": work.loaded.identity, "usage": {"type": "duration", "seconds": round(result.duration_s, 3)}})


def _job_body(job) -> dict:
    body = {"id": job.id, "object": "transcription.job", "status": job.state, "created_at": int(job.created),
            "finished_at": int(job.finished) if job.finished else None, "duration": job.duration_s,
            "attempts": job.attempts, "model_version": job.model_version}
    if job.state == DONE:
        body["result"] = job.result
    if job.error:
        body["error"] = {"message": job.error, "type": "invalid_request_error"}
    return body
