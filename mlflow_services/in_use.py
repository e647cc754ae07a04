"""Versions a running process has loaded, marked on the version so that pruning keeps their files.

A setting that names a version by number (``models:/NAME/3``) pins it only for the processes that read the
same params: a service started with ``--set serve.model=models:/NAME/3`` is invisible to a prune run from
cron. So every holder leases what it loaded: a tag ``zhasr.in_use.<host>-<pid>-<token>`` on the model version,
whose value says what holds it and when the lease ends (``zhasr serve, until 2026-12-07T21:38:15+00:00`` in
the MLflow UI). The holder renews it while it runs and removes it when it stops; one that crashed leaves a
lease that ends by itself within ``LEASE_S``, so a killed process keeps a version for a few hours, never
forever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

TAG_PREFIX = "zhasr.in_use."
LEASE_S = 6 * 3600.0  # how long a lease lasts unless renewed
RENEW_S = 3600.0  # how often a holding renews its leases
UNTIL = ", until "  # between what holds the version and when its lease ends, in the tag's value


@dataclass(frozen=True)
class Lease:
    """One holder's mark on a version."""

    holder: str  # "<host>-<pid>-<token>"
    until: datetime  # UTC
    what: str  # "zhasr serve", "zhasr transcribe-archive"


def holder_name() -> str:
    """A new holder in this process: ``<host>-<pid>-<token>`` (two holdings of one process, say two flow runs,
    release only their own), in the characters an MLflow tag key allows."""
    return re.sub(r"[^\w.-]", "_", f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}")


def leases(version: ModelVersion, now: datetime | None = None) -> list[Lease]:
    """The leases on ``version`` that have not ended by ``now`` (default: now). A time without a zone is read
    as UTC; a tag whose end cannot be read holds the version until a person removes it (a prune must not
    take the files of a live process because its mark was garbled)."""
    now = now or datetime.now(timezone.utc)
    out = []
    for key, value in (version.tags or {}).items():
        if not key.startswith(TAG_PREFIX):
            continue
        what, marked, until = value.rpartition(UNTIL)
        if not marked:  # the first format: "<until> <what>"
            until, _, what = value.partition(" ")
        try:
            ends = datetime.fromisoformat(until)
        except ValueError:
            ends = datetime.max.replace(tzinfo=timezone.utc)
            what = f"an unreadable lease ({value!r}: remove the tag {key} to end it)"
        ends = ends if ends.tzinfo is not None else ends.replace(tzinfo=timezone.utc)
        if ends > now:
            out.append(Lease(key[len(TAG_PREFIX):], ends, what))
    return out


def held_by(version: ModelVersion) -> str:
    """Who holds ``version`` now, for a person: "zhasr serve on host-123-ab12, ..."; "" when nobody does."""
    return ", ".join(f"{lease.what} on {lease.holder}" for lease in leases(version))


class Holdings:
    """The versions one holder holds, each under a role (``"model"``, ``"detector"``, ...): ``hold`` marks a
    role's new version and unmarks its last unless another role holds it; a thread of the holding renews every
    lease each ``renew_s``; ``release`` unmarks all and ends the holding (a load that finishes after it marks
    nothing; leaving a ``with`` block releases). Thread-safe. A registry that cannot be reached is logged,
    never raised: the work matters more than the mark."""

    def __init__(self, what: str, lease_s: float = LEASE_S, renew_s: float = RENEW_S):
        self.what, self.lease_s, self.renew_s = what, lease_s, renew_s
        self.holder = holder_name()
        self.held: dict[str, tuple[str, str]] = {}  # role -> (model name, version)
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._renewer: threading.Thread | None = None

    def hold(self, role: str, name: str | None, version: str | None) -> None:
        """Mark ``name`` ``version`` for ``role`` (None: a folder, nothing to mark), unmarking its last."""
        with self._lock:
            if self._released.is_set():
                return
            last = self.held.pop(role, None)
            if last is not None and last != (name, version) and last not in self.held.values():
                self._unmark(*last)
            if name and version:
                self.held[role] = (name, version)
                self._mark(name, version)
                if self._renewer is None:
                    self._renewer = threading.Thread(target=self._renew, name="zhasr-leases", daemon=True)
                    self._renewer.start()

    def release(self, wait_s: float = 10.0) -> None:
        """Unmark everything, waiting at most ``wait_s`` for the registry (a store that does not answer must not
        hold up a shutdown: its leases end by themselves)."""
        with self._lock:
            self._released.set()
            held, self.held = set(self.held.values()), {}
        worker = threading.Thread(target=lambda: [self._unmark(*h) for h in held], name="zhasr-release", daemon=True)
        worker.start()
        worker.join(wait_s)

    def __enter__(self) -> Holdings:
        return self

    def __exit__(self, *_) -> None:
        self.release()

    def _renew(self) -> None:
        while not self._released.wait(self.renew_s):
            with self._lock:
                for name, version in set(self.held.values()):
                    self._mark(name, version)

    def _mark(self, name: str, version: str) -> None:
        until = (datetime.now(timezone.utc) + timedelta(seconds=self.lease_s)).isoformat(timespec="seconds")
        try:
            MlflowClient().set_model_version_tag(name, version, TAG_PREFIX + self.holder, f"{self.what}{UNTIL}{until}")
        except Exception as exc:  # any store's error (HTTP, SQL): the work goes on
            log.warning("%s v%s: could not mark it in use (a prune may take its files): %s", name, version, exc)

    def _unmark(self, name: str, version: str) -> None:
        with contextlib.suppress(Exception):  # pruned, or the store unreachable: the lease ends by itself
            MlflowClient().delete_model_version_tag(name, version, TAG_PREFIX + self.holder)
