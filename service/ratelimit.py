"""Per-key limits with the ``limits`` package: requests and audio seconds per minute, in a moving
window, in memory or on Redis (``serve.limits_storage``) so that replicas share one budget."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerMinute, storage, strategies

from zhasr.config import ServeParams


@dataclass(frozen=True)
class Refusal:
    limit: str  # "requests" | "audio_seconds"
    retry_after_s: int
    message: str


class KeyLimits:
    def __init__(self, serve: ServeParams):
        self.limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(serve.limits_storage))
        self.requests = RateLimitItemPerMinute(serve.requests_per_minute, namespace="zhasr-requests")
        self.audio = RateLimitItemPerMinute(int(serve.audio_s_per_minute), namespace="zhasr-audio")

    def _refusal(self, item, key_name: str, limit: str, message: str) -> Refusal:
        reset = self.limiter.get_window_stats(item, key_name).reset_time
        return Refusal(limit, max(1, math.ceil(reset - time.time())), message)

    def hit_request(self, key_name: str) -> Refusal | None:
        if self.limiter.hit(self.requests, key_name):
            return None
        return self._refusal(self.requests, key_name, "requests",
                             f"more than {self.requests.amount} requests a minute for this key")

    def hit_audio(self, key_name: str, seconds: float) -> Refusal | None:
        cost = max(1, math.ceil(seconds))
        if self.limiter.hit(self.audio, key_name, cost=cost):
            return None
        return self._refusal(self.audio, key_name, "audio_seconds",
                             f"{cost} s of audio would pass this key's {self.audio.amount} s a minute")
