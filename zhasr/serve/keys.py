"""API keys kept only as SHA-256 hashes in one JSON file; a key is shown once, when it is made.

Keys are 32 random bytes (URL-safe base64 behind a ``zk-`` prefix), so a plain hash is as strong as
a slow one here. The file is rewritten atomically and reread when it changes, so ``serve-keys``
works on a running server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from zhasr.transcribe.hotwords import check_hotwords

PREFIX = "zk-"


class KeyFileError(ValueError):
    """A key name that is missing, taken or malformed."""


@dataclass(frozen=True)
class KeyRecord:
    name: str
    sha256: str  # hex digest of the key
    created: str  # ISO time, UTC
    revoked: str | None = None  # ISO time of revocation, None while valid
    hotwords: list[str] = field(default_factory=list)  # this key's decoder prompt terms; a request's own replace them

    @property
    def active(self) -> bool:
        return self.revoked is None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """The keys file: ``{"keys": [KeyRecord, ...]}``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._records: list[KeyRecord] = []

    def records(self) -> list[KeyRecord]:
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._records = None, []
                return []
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                    self._records = [KeyRecord(**r) for r in data.get("keys", [])]
                except (ValueError, TypeError) as exc:
                    raise KeyFileError(f"{self.path}: not a keys file ({exc})") from exc
                self._stamp = stamp
            return list(self._records)

    def _write(self, records: list[KeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": [asdict(r) for r in records]}, indent=2), encoding="utf-8")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def add(self, name: str, hotwords: list[str] | None = None) -> str:
        """A new key for ``name`` (letters, digits, ``-_.``), with its own prompt ``hotwords``; returns the
        key, which is not stored."""
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise KeyFileError(f"key name {name!r}: use letters, digits, '-', '_' or '.'")
        records = self.records()
        if any(r.name == name and r.active for r in records):
            raise KeyFileError(f"key name {name!r}: already in use (revoke it first)")
        try:
            check_hotwords(hotwords or [])
        except ValueError as exc:
            raise KeyFileError(f"key {name!r}: hotwords: {exc}") from exc
        key = PREFIX + secrets.token_urlsafe(32)
        self._write(records + [KeyRecord(name, digest(key), _now(), hotwords=list(hotwords or []))])
        return key

    def revoke(self, name: str) -> KeyRecord:
        records = self.records()
        if not any(r.name == name and r.active for r in records):
            raise KeyFileError(f"key name {name!r}: no active key of that name")
        updated = [replace(r, revoked=_now()) if r.name == name and r.active else r for r in records]
        self._write(updated)
        return next(r for r in updated if r.name == name and r.revoked)

    def hotwords_of(self, name: str) -> list[str]:
        """The prompt terms of the active key ``name`` ([] when it has none)."""
        return next((list(r.hotwords) for r in self.records() if r.name == name and r.active), [])

    def name_of(self, key: str) -> str | None:
        """The name of the active key ``key``, or None (unknown or revoked)."""
        wanted = digest(key)
        found = None
        for r in self.records():
            if hmac.compare_digest(r.sha256, wanted) and r.active:
                found = r.name
        return found


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
