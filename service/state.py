"""What one server process holds: keys, limits, the served model, the batching worker, the job store
and the thread that runs accepted jobs. The HTTP routes (``service.app``) only call into this."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from service.errors import ApiError
from service.metrics import Metrics
from service.models import ServedModel
from service.ratelimit import KeyLimits
from service.requests import TranscriptionOptions
from zhasr.context import StageContext
from zhasr.data.audio import AudioError
from zhasr.serve.batcher import Batcher, Loaded, Work
from zhasr.serve.jobs import MAX_ATTEMPTS, Job, JobStore
from zhasr.serve.keys import KeyStore
from zhasr.transcribe.media import AudioTooLong, CallAudio, UnsupportedAudio, read_call
from zhasr.transcribe.records import Transcription
from zhasr.transcribe.redaction import finish_text, muted_wav
from zhasr.transcribe.writers import verbose

log = logging.getLogger("zhasr.serve")
PURGE_EVERY_S = 3600.0  # how often the job thread deletes jobs past serve.retain_days


@dataclass(frozen=True)
class Admitted:
    """A request whose audio was read: the call, and the version it will be transcribed with."""

    call: CallAudio
    loaded: Loaded


class ServiceState:
    def __init__(self, ctx: StageContext):
        self.ctx = ctx
        p = ctx.params.serve
        self.serve = p
        self.metrics = Metrics()
        self.keys = KeyStore(ctx.root / p.keys_file)
        self.limits = KeyLimits(p)
        self.model = ServedModel(ctx, self.metrics)
        self.batcher = Batcher(p.batch_wait_ms / 1000, p.batch_requests, observe=self._observe_batch)
        self.jobs = JobStore(ctx.root / p.jobs_dir)
        self.admitted = 0  # requests holding a place (sync and streaming; jobs have their own queue)
        self._admitted_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._jobs_thread = threading.Thread(target=self._run_jobs, name="zhasr-jobs", daemon=True)

    def start(self) -> None:
        recovered = self.jobs.recover()
        if recovered:
            log.info("%d job(s) left running by the last server are queued again", recovered)
        self.model.start()
        self._jobs_thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.model.stop()
        self.batcher.stop()
        self._jobs_thread.join(timeout=10)

    def _observe_batch(self, size: int, seconds: float) -> None:
        self.metrics.batch_size.observe(size)
        self.metrics.batch_seconds.observe(seconds)

    # -- admission -----------------------------------------------------------------------------------
    def authenticate(self, header: str | None) -> str:
        """The key's name for an ``Authorization: Bearer`` header; 401 otherwise."""
        if not header or not header.lower().startswith("bearer ") or not header[7:].strip():
            self.metrics.auth_rejections.labels("missing").inc()
            raise ApiError(401, "no API key: send Authorization: Bearer <key>", code="missing_api_key")
        name = self.keys.name_of(header[7:].strip())
        if name is None:
            self.metrics.auth_rejections.labels("invalid").inc()
            raise ApiError(401, "invalid or revoked API key", code="invalid_api_key")
        return name

    def loaded(self) -> Loaded:
        loaded = self.model.current
        if loaded is None:
            raise ApiError(503, "no model loaded yet", code="not_ready", headers=self._retry_after())
        return loaded

    def _retry_after(self) -> dict[str, str]:
        return {"Retry-After": str(self.serve.retry_after_s)}

    def check_rate(self, key_name: str) -> None:
        refusal = self.limits.hit_request(key_name)
        if refusal:
            self.metrics.rate_limited.labels(refusal.limit).inc()
            raise ApiError(429, refusal.message, code="rate_limit_exceeded",
                           headers={"Retry-After": str(refusal.retry_after_s)})

    def take_place(self) -> None:
        """One of ``serve.max_queued`` places, held from arrival to the last byte of the answer
        (``free_place``); 503 when none is free."""
        with self._admitted_lock:
            if self.admitted >= self.serve.max_queued:
                self.metrics.overloaded.labels("requests").inc()
                raise ApiError(503, f"{self.admitted} requests in progress, the limit is {self.serve.max_queued}; "
                                    "retry later", code="queue_full", headers=self._retry_after())
            self.admitted += 1

    def free_place(self) -> None:
        with self._admitted_lock:
            self.admitted -= 1

    def check_job_capacity(self) -> None:
        counts = self.jobs.counts()
        waiting = counts["queued"] + counts["running"]
        if waiting >= self.serve.max_queued_jobs:
            self.metrics.overloaded.labels("jobs").inc()
            raise ApiError(503, f"{waiting} jobs waiting, the limit is {self.serve.max_queued_jobs}; retry later",
                           code="queue_full", headers=self._retry_after())

    def read_audio(self, blob: bytes, name: str, key_name: str) -> Admitted:
        """Decode the upload (never a path) and charge its seconds to the key; 400/413/415/429 otherwise."""
        if len(blob) > self.serve.max_upload_mb * 1e6:
            raise ApiError(413, f"{name}: {len(blob) / 1e6:.1f} MB, the limit is {self.serve.max_upload_mb:g} MB",
                           "file", "file_too_large")
        try:
            call = read_call(blob, name, self.serve.max_audio_s)
        except AudioTooLong as exc:
            raise ApiError(413, str(exc), "file", "audio_too_long") from exc
        except UnsupportedAudio as exc:
            raise ApiError(415, f"{exc}; send WAV, FLAC, MP3, OGG/Opus, M4A/AAC, AMR or another format FFmpeg "
                                "reads", "file", "unsupported_audio") from exc
        except AudioError as exc:
            raise ApiError(400, str(exc), "file", "bad_audio") from exc
        refusal = self.limits.hit_audio(key_name, call.duration_s)
        if refusal:
            self.metrics.rate_limited.labels(refusal.limit).inc()
            raise ApiError(429, refusal.message, code="rate_limit_exceeded",
                           headers={"Retry-After": str(refusal.retry_after_s)})
        return Admitted(call, self.loaded())

    def work(self, admitted: Admitted, options: TranscriptionOptions, name: str, key_name: str) -> Work:
        """Cut the call into pieces and queue them with the worker; 400 when the channels do not fit. The
        prompt's terms: the request's hotwords, else the key's own, else ``transcribe.hotwords``."""
        transcriber = admitted.loaded.transcriber
        try:
            plan = transcriber.prepare([admitted.call], channels=options.channels, names=[name])
        except AudioError as exc:
            raise ApiError(400, str(exc), "channels", "bad_channels") from exc
        hotwords = options.hotwords if options.hotwords is not None else (self.keys.hotwords_of(key_name) or None)
        prompt = transcriber.prompt(text=options.prompt, hotwords=hotwords)
        heard = None
        detector = admitted.loaded.detector
        if options.redact and detector is not None:
            heard = self.batcher.submit(Work(detector, detector.transcriber.prepare(
                [admitted.call], channels=options.channels, names=[name]), None, True))
        # redaction places its spans in the audio by word times
        return self.batcher.submit(Work(admitted.loaded, plan, prompt, options.words or bool(options.redact), heard))

    @staticmethod
    def finished(work: Work, result: Transcription, options: TranscriptionOptions) -> Transcription:
        """``result`` redacted and written as the request asks, with what the detector heard (waited for)."""
        return finish_text(result, options.redact, options.itn, heard=work.heard.wait() if work.heard else None)

    # -- jobs ----------------------------------------------------------------------------------------
    def wake_jobs(self) -> None:
        self._wake.set()

    def purge(self) -> int:
        """Finished jobs older than ``serve.retain_days`` deleted (results and kept audio); returns how many."""
        if self.serve.retain_days <= 0:
            return 0
        purged = self.jobs.purge(time.time() - self.serve.retain_days * 86400)
        if purged:
            log.info("%d finished job(s) older than %g days deleted", purged, self.serve.retain_days)
        return purged

    def _run_jobs(self) -> None:
        purged_at = 0.0
        while not self._stop.is_set():
            if time.monotonic() - purged_at > PURGE_EVERY_S:
                self.purge()
                purged_at = time.monotonic()
            if self.model.current is None or (job := self.jobs.claim()) is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                self._run_job(job)
            except Exception as exc:  # one job's unforeseen error fails that job; the queue goes on
                log.exception("job %s failed", job.id)
                self.jobs.fail(job.id, f"internal error: {type(exc).__name__}: {exc}")

    def _run_job(self, job: Job) -> None:
        options = TranscriptionOptions(**job.options)
        started = time.perf_counter()
        try:
            admitted = Admitted(read_call(job.audio.read_bytes(), job.id, self.serve.max_audio_s), self.loaded())
            work = self.work(admitted, options, job.id, job.key_name)
            result = work.wait()
            final = self.finished(work, result, options)
        except (AudioError, ApiError) as exc:
            log.warning("job %s failed: %s", job.id, exc)
            self.jobs.fail(job.id, str(exc))
            return
        except (RuntimeError, OSError) as exc:  # the batch's decoding or the disk: tried again while it may be
            if job.attempts < MAX_ATTEMPTS:
                log.warning("job %s: attempt %d of %d failed, queued again: %s", job.id, job.attempts, MAX_ATTEMPTS, exc)
                self.jobs.retry(job.id, self.serve.job_retry_s)
            else:
                log.warning("job %s failed: %s", job.id, exc)
                self.jobs.fail(job.id, f"{exc} (attempt {job.attempts} of {MAX_ATTEMPTS})")
            return
        self.metrics.transcribed(result, "job", time.perf_counter() - started)
        body = verbose(final, options.words)
        if options.redacted_audio:
            self.jobs.keep_redacted_audio(job.id, muted_wav(admitted.call, final.redactions))
            body["redacted_audio"] = f"/v1/audio/transcriptions/jobs/{job.id}/audio"
        self.jobs.complete(job.id, body, admitted.loaded.version)
