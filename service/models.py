"""The served version: resolved from the registry at start and followed as its alias moves.

A moved alias is loaded beside the running version and swapped in with one assignment; requests hold
the ``Loaded`` they were admitted with, so those in flight finish on it. A version that fails to
load leaves the old one serving, logged and counted, and is tried again only once the alias moves
again.
"""

from __future__ import annotations

import logging
import threading
import time

from service.metrics import Metrics
from tasks.transcribe import ResolvedModel, detector_model, open_resolved, resolve, version_named
from zhasr.context import StageContext
from zhasr.serve.batcher import Loaded

log = logging.getLogger("zhasr.serve")


class ServedModel:
    def __init__(self, ctx: StageContext, metrics: Metrics):
        self.ctx, self.metrics = ctx, metrics
        p = ctx.params
        self.spec = p.serve.model or f"models:/{p.register.model_name}@champion"
        self.follows_alias = "@" in self.spec
        self.current: Loaded | None = None
        self.detector: Loaded | None = None
        self.failed: str | None = None  # the version that failed to load last, not retried until the alias moves
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        """The name clients pass as ``model``: the registered model's, or the folder's."""
        if self.spec.startswith("models:/"):
            return self.ctx.params.register.model_name
        return self.spec.rstrip("/").split("/")[-1]

    def _open(self, model: ResolvedModel) -> Loaded:
        return Loaded(model.version or model.model_dir.name, model.identity, open_resolved(self.ctx, model),
                      self._detector())

    def _detector(self) -> Loaded | None:
        """``transcribe.detector``'s model, loaded with the first version and kept across swaps."""
        if self.detector is None and (model := detector_model(self.ctx)) is not None:
            self.detector = Loaded(model.version or model.model_dir.name, model.identity, open_resolved(self.ctx, model))
            log.info("redaction also hears numbers with %s", model.identity)
        return self.detector

    def load(self) -> Loaded:
        """Resolve and load the spec now (at start; raises when it cannot)."""
        self._swap(self._open(resolve(self.ctx, self.spec)))
        return self.current

    def _swap(self, loaded: Loaded) -> None:
        previous, self.current = self.current, loaded
        self.metrics.model.info({"version": loaded.version, "identity": loaded.identity,
                                 "runtime": loaded.transcriber.runtime_name, "name": self.name})
        if previous is not None:
            self.metrics.model_swaps.inc()
            log.info("serving %s (was %s)", loaded.identity, previous.identity)
        else:
            log.info("serving %s in the %s runtime", loaded.identity, loaded.transcriber.runtime_name)

    def check(self) -> None:
        """One poll: when the alias names another version, load it and swap it in."""
        try:
            version = version_named(self.ctx, self.spec)
        except Exception as exc:  # the registry unreachable: keep serving
            log.warning("alias check of %s failed: %s", self.spec, exc)
            return
        if version is None or (self.current is not None and version == self.current.version):
            self.failed = None if version is not None else self.failed
            return
        if version == self.failed:
            return
        started = time.perf_counter()
        try:
            loaded = self._open(resolve(self.ctx, self.spec))
        except Exception as exc:
            self.failed = version
            self.metrics.model_load_failures.inc()
            log.error("version %s failed to load, still serving %s: %s", version,
                      self.current.identity if self.current else "nothing", exc)
            return
        log.info("loaded %s in %.1f s", loaded.identity, time.perf_counter() - started)
        self._swap(loaded)

    def start(self) -> None:
        """Load the spec in a thread (the server answers /health meanwhile), then poll the alias every
        ``serve.poll_s`` (a fixed version or a folder is loaded once)."""

        def loop() -> None:
            try:
                self.load()
            except Exception as exc:
                self.metrics.model_load_failures.inc()
                log.error("%s failed to load: %s", self.spec, exc)
                if self.follows_alias:
                    self.failed = version_named(self.ctx, self.spec)
            while self.follows_alias and not self._stop.wait(self.ctx.params.serve.poll_s):
                self.check()

        self._thread = threading.Thread(target=loop, name="zhasr-model", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
