"""One inference worker for all requests: windows of every waiting request decoded together.

A request (``Work``) is admitted with the model version it will finish on (its ``Loaded`` slot),
the decoder prompt and whether it wants word timings; its windows (speech pieces of one track packed
together, ``zhasr.transcribe.packing``) join one queue in timeline order. The worker takes the oldest
window, waits up to ``wait_s`` for more, and decodes up to a call's worth of windows (the model's
``Transcriber.windows_per_call``: a batch for each of its runtime's workers) that share its model,
prompt and word setting: across requests when ``across_requests`` is on, else only windows of the same
request (one request at a time). A window never holds pieces of two requests.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from zhasr.transcribe.engine import Decoded, Plan, Transcriber
from zhasr.transcribe.records import Transcription


@dataclass(frozen=True, eq=False)
class Loaded:
    """A model version ready to serve."""

    version: str  # registry version ("3"), or the folder's name for a local model
    identity: str  # "zhasr-whisper v3"
    transcriber: Transcriber
    detector: Loaded | None = None  # the number-trained model that also decodes where redaction is asked
    loaded_at: float = field(default_factory=time.time)


class Work:
    """One request in the worker: its plan, its decoded pieces, and its events for streaming.

    ``events`` receives the piece indices of each window as it is decoded, then None when the work is
    over (``result`` or ``error`` set)."""

    def __init__(self, loaded: Loaded, plan: Plan, prompt: str | None, words: bool, heard: Work | None = None):
        self.loaded, self.plan, self.prompt, self.words = loaded, plan, prompt, words
        self.heard = heard  # the same call queued with the loaded version's detector, where redaction is asked
        self.results: dict[int, Decoded] = {}
        self.events: queue.Queue = queue.Queue()
        self.done = threading.Event()
        self.result: Transcription | None = None
        self.error: str | None = None
        self.enqueued_at = time.perf_counter()
        self.first_decoded_at: float | None = None
        # timeline order: pieces are streamed in it, windows queued and decoded in it
        self.order = sorted(range(len(plan.pieces)), key=lambda k: (plan.pieces[k].start, plan.pieces[k].channel))
        first = {k: n for n, k in enumerate(self.order)}
        self.window_order = sorted(range(len(plan.windows)), key=lambda w: min(first[k] for k in plan.windows[w].pieces))

    @property
    def group(self) -> tuple:
        return (id(self.loaded), self.prompt, self.words)

    def _finish(self, error: str | None = None) -> None:
        if error is None:
            try:
                self.result = self.loaded.transcriber.finish(self.plan, self.results, self.words, self.prompt)[0]
            except Exception as exc:  # an assembly fault fails this request only
                error = f"{type(exc).__name__}: {exc}"
        self.error = error
        self.done.set()
        self.events.put(None)

    def wait(self, timeout: float | None = None) -> Transcription:
        if not self.done.wait(timeout):
            raise TimeoutError("transcription did not finish in time")
        if self.error:
            raise RuntimeError(self.error)
        return self.result


BatchObserver = Callable[[int, float], None]  # (windows in the batch, seconds it took)


class Batcher:
    def __init__(self, wait_s: float, across_requests: bool = True, observe: BatchObserver | None = None):
        self.wait_s, self.across_requests = wait_s, across_requests
        self.observe = observe
        self._queue: deque[tuple[Work, int]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="zhasr-batcher", daemon=True)
        self._thread.start()

    def submit(self, work: Work) -> Work:
        """Queue every window of ``work``; a work without speech is finished at once."""
        if not work.order:
            work._finish()
            return work
        with self._cond:
            self._queue.extend((work, w) for w in work.window_order)
            self._cond.notify()
        return work

    @property
    def depth(self) -> int:
        """Windows waiting to be decoded."""
        return len(self._queue)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def _take(self) -> list[tuple[Work, int]]:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return []
            size = self._queue[0][0].loaded.transcriber.windows_per_call
            deadline = time.monotonic() + self.wait_s
            while len(self._queue) < size and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            first = self._queue[0][0]
            same = ((lambda w: w.group == first.group) if self.across_requests else (lambda w: w is first))
            batch, rest = [], deque()
            while self._queue and len(batch) < size:
                item = self._queue.popleft()
                (batch if same(item[0]) else rest).append(item)
            self._queue.extendleft(reversed(rest))
            return batch

    def _run(self) -> None:
        while batch := self._take():
            first = batch[0][0]
            started = time.perf_counter()
            try:
                decoded = first.loaded.transcriber.decode_windows([(w.plan, j) for w, j in batch], first.prompt,
                                                                  first.words)
            except Exception as exc:  # the runtime failing on a batch fails those requests, not the worker
                for work in {w for w, _ in batch}:
                    self._drop(work, f"{type(exc).__name__}: {exc}")
                continue
            if self.observe:
                self.observe(len(batch), time.perf_counter() - started)
            for (work, _), pieces in zip(batch, decoded):
                if work.done.is_set():
                    continue
                work.first_decoded_at = work.first_decoded_at or started
                work.results.update(pieces)
                work.events.put(sorted(pieces))
                if len(work.results) == len(work.order):
                    work._finish()

    def _drop(self, work: Work, error: str) -> None:
        with self._cond:
            self._queue = deque(item for item in self._queue if item[0] is not work)
        work._finish(error)
