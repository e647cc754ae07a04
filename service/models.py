"""The served version: resolved from the registry at start and followed as its alias moves.

A moved alias is loaded beside the running version and swapped in with one assignment; requests hold
the ``Loaded`` they were admitted with, so those in flight finish on it. A version that fails to
load leaves the old one serving, logged and counted, and is tried again only once the alias moves
again. ``transcribe.detector``'s model is followed the same way: a folder replaced (``zhasr detector``
swaps in a new one that passed its check) or an alias moved (a person approved one) is loaded and heard
with by the requests admitted from then on. While nothing serves (the detector named was not built or
approved yet), loading is tried again whenever the version or the detector's build named changes.

Each registry version loaded is leased (``mlflow_services.in_use``) while it serves, so that a prune keeps
its files even where only this process's command line names it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time

from mlflow_services import in_use
from service.metrics import Metrics
from tasks.transcribe import (
    MODEL_URI,
    ResolvedModel,
    detector_model,
    detector_stamp,
    open_resolved,
    resolve,
    version_named,
)
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
        # (version, detector build) of the last load that failed, not retried until one of them changes
        self.failed: tuple[str | None, str | None] | None = None
        self.detector_stamp: str | None = None  # which build of the detector is loaded (detector_stamp)
        self.failed_detector: str | None = None  # the build that failed to load last, not retried
        self.holdings = in_use.Holdings("zhasr serve")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        """The name clients pass as ``model``: the registered model's, or the folder's."""
        if match := MODEL_URI.match(self.spec):
            return match["name"]
        return self.spec.rstrip("/").split("/")[-1]

    @contextlib.contextmanager
    def _loading(self, role: str, model: ResolvedModel):
        """``model`` leased while it loads, so that a prune meanwhile keeps its files; the block leases it for
        ``role`` once it serves, and a load that fails leaves the lease of the version still serving."""
        self.holdings.hold(f"{role} loading", model.name, model.version)
        try:
            yield
        finally:
            self.holdings.hold(f"{role} loading", None, None)

    def _open(self, model: ResolvedModel) -> Loaded:
        return Loaded(model.version or model.model_dir.name, model.identity, open_resolved(self.ctx, model),
                      self._detector())

    def _open_detector(self, model: ResolvedModel) -> Loaded:
        """``model`` loaded as the number detector, leased from before it loads."""
        with self._loading("detector", model):
            loaded = Loaded(model.version or model.model_dir.name, model.identity, open_resolved(self.ctx, model))
            self.holdings.hold("detector", model.name, model.version)
        return loaded

    def _detector(self) -> Loaded | None:
        """``transcribe.detector``'s model, loaded with the first version and kept across swaps."""
        if self.detector is None and (model := detector_model(self.ctx)) is not None:
            self.detector_stamp = detector_stamp(self.ctx)
            self.detector = self._open_detector(model)
            log.info("redaction also hears numbers with %s", model.identity)
        return self.detector

    def check_detector(self) -> None:
        """One poll: when the detector's folder was replaced or its alias moved, load it and give it to the
        version served; a build that fails to load leaves the last one hearing (logged, counted)."""
        if self.detector is None:
            return
        try:
            stamp = detector_stamp(self.ctx)
        except Exception as exc:  # the folder between two renames, or the registry unreachable
            log.warning("detector check of %s failed: %s", self.ctx.params.transcribe.detector, exc)
            return
        if stamp in (None, self.detector_stamp, self.failed_detector):
            return
        try:
            loaded = self._open_detector(detector_model(self.ctx))
        except Exception as exc:
            self.failed_detector = stamp
            self.metrics.model_load_failures.inc()
            log.error("the new detector failed to load, still hearing with %s: %s", self.detector.identity, exc)
            return
        previous, self.detector, self.detector_stamp = self.detector, loaded, stamp
        if self.current is not None:
            self.current = dataclasses.replace(self.current, detector=loaded)
        log.info("redaction now hears numbers with %s (build %s; was %s)", loaded.identity, stamp, previous.identity)

    def load(self) -> Loaded:
        """Resolve and load the spec now (at start; raises when it cannot)."""
        model = resolve(self.ctx, self.spec)
        with self._loading("model", model):
            self._swap(self._open(model), model)
        return self.current

    def _swap(self, loaded: Loaded, model: ResolvedModel) -> None:
        previous, self.current = self.current, loaded
        self.holdings.hold("model", model.name, model.version)
        self.metrics.model.info({"version": loaded.version, "identity": loaded.identity,
                                 "runtime": loaded.transcriber.runtime_name, "name": self.name})
        if previous is not None:
            self.metrics.model_swaps.inc()
            log.info("serving %s (was %s)", loaded.identity, previous.identity)
        else:
            log.info("serving %s in the %s runtime", loaded.identity, loaded.transcriber.runtime_name)

    def _attempt(self) -> tuple[str | None, str | None]:
        """What a load now would load: the version the spec names (None: a folder, or an alias naming none) and
        the detector's build (None: none, or none readable)."""
        try:
            build = detector_stamp(self.ctx)
        except Exception:
            build = None
        return version_named(self.ctx, self.spec), build

    def check(self) -> None:
        """One poll: when the alias names another version, load it and swap it in; while nothing serves, load
        again once the version or the detector's build named has changed since the load that failed."""
        try:
            attempt = self._attempt()
        except Exception as exc:  # the registry unreachable: keep serving
            log.warning("alias check of %s failed: %s", self.spec, exc)
            return
        version = attempt[0]
        if self.current is not None and (version is None or version == self.current.version):
            self.failed = None if version is not None else self.failed
            return
        if (self.follows_alias and version is None) or attempt == self.failed:
            return
        started = time.perf_counter()
        try:
            model = resolve(self.ctx, self.spec)
            with self._loading("model", model):
                loaded = self._open(model)
                log.info("loaded %s in %.1f s", loaded.identity, time.perf_counter() - started)
                self._swap(loaded, model)
        except Exception as exc:
            self.failed = attempt
            self.metrics.model_load_failures.inc()
            log.error("version %s failed to load, still serving %s: %s", version,
                      self.current.identity if self.current else "nothing", exc)

    def start(self) -> None:
        """Load the spec in a thread (the server answers /health meanwhile), then poll the alias every
        ``serve.poll_s`` (a fixed version or a folder is loaded once), and the detector's build."""

        def loop() -> None:
            try:
                self.load()
            except Exception as exc:
                self.metrics.model_load_failures.inc()
                log.error("%s failed to load: %s", self.spec, exc)
                try:
                    self.failed = self._attempt()
                except Exception:  # the registry unreachable: the next poll tries again
                    pass
            while ((self.follows_alias or self.ctx.params.transcribe.detector)
                   and not self._stop.wait(self.ctx.params.serve.poll_s)):
                if self.follows_alias or self.current is None:
                    self.check()
                self.check_detector()

        self._thread = threading.Thread(target=loop, name="zhasr-model", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.holdings.release()

