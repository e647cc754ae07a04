"""The service's Prometheus metrics, one registry per app. Key names and keys never appear in labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from zhasr.transcribe.records import COLLAPSED, FAILED, HIT_TOKEN_CAP, LOOPED, RETRIED

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("zhasr_http_requests_total", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("zhasr_http_request_duration_seconds", "Time to the full response, by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("zhasr_queue_wait_seconds", "Admission to the first decoded piece of a request",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.audio_seconds = Counter("zhasr_audio_seconds_total", "Seconds of audio transcribed", ["kind"],
                                     registry=r)
        self.rtf = Histogram("zhasr_real_time_factor", "Processing time over audio duration, per request",
                             buckets=RTF_BUCKETS, registry=r)
        self.batch_size = Histogram("zhasr_batch_size", "Speech pieces decoded per batch",
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32), registry=r)
        self.batch_seconds = Histogram("zhasr_batch_duration_seconds", "Time to decode one batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("zhasr_queue_depth", "Speech pieces waiting for the worker", registry=r)
        self.in_flight = Gauge("zhasr_requests_in_flight", "Requests admitted and not finished", registry=r)
        self.jobs = Gauge("zhasr_jobs", "Jobs in the durable queue by state", ["state"], registry=r)
        self.rate_limited = Counter("zhasr_rate_limited_total", "Requests refused by a per-key limit (429)",
                                    ["limit"], registry=r)
        self.overloaded = Counter("zhasr_overloaded_total", "Requests refused because the queue was full (503)",
                                  ["queue"], registry=r)
        self.auth_rejections = Counter("zhasr_auth_rejections_total", "Requests refused for their key (401)",
                                       ["reason"], registry=r)
        self.segment_flags = Counter("zhasr_segment_flags_total", "Segments flagged by the guard", ["flag"],
                                     registry=r)
        self.removed = Counter("zhasr_removed_pieces_total", "Speech pieces removed by the guard", ["reason"],
                               registry=r)
        self.model = Info("zhasr_model", "The model version being served", registry=r)
        self.model_swaps = Counter("zhasr_model_swaps_total", "Times a new version was swapped in", registry=r)
        self.model_load_failures = Counter("zhasr_model_load_failures_total",
                                           "Versions that failed to load (the old one kept serving)", registry=r)

        # Known label values start at zero, so every series exists (and rate() works) before the first event.
        for limit in ("requests", "audio_seconds"):
            self.rate_limited.labels(limit)
        for queue in ("requests", "jobs"):
            self.overloaded.labels(queue)
        for reason in ("missing", "invalid"):
            self.auth_rejections.labels(reason)
        for flag in (LOOPED, RETRIED, COLLAPSED, HIT_TOKEN_CAP, FAILED):
            self.segment_flags.labels(flag)
        for reason in ("no_speech", "hallucination", "empty"):
            self.removed.labels(reason)
        for kind in ("request", "job"):
            self.audio_seconds.labels(kind)

    def transcribed(self, t, kind: str, seconds: float) -> None:
        """Count one finished transcription ``t`` (a Transcription) that took ``seconds``."""
        self.audio_seconds.labels(kind).inc(t.duration_s)
        if t.duration_s > 0:
            self.rtf.observe(seconds / t.duration_s)
        for s in t.segments:
            for flag in s.flags:
                self.segment_flags.labels(flag).inc()
        for r in t.removed:
            self.removed.labels(r.reason).inc()
