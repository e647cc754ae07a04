"""The durable job queue: accepted jobs in sqlite, their audio as files beside it.

A job is accepted only once its audio is on disk (fsynced) and its row committed, so a server killed
at any moment loses none. Its audio is deleted once it is done (a muted copy is kept when asked for);
``purge`` deletes finished jobs past their retention, with sqlite's secure_delete so that the deleted
results do not linger in free pages. ``recover`` at start puts jobs that were running back in the queue; a
job's result is written once (``complete`` only moves a running job to done), so none is done twice.
One server process owns a jobs folder (give each replica its own).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
MAX_ATTEMPTS = 3  # starts of a job that ended without a result: the server stopped, or its batch failed

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    key_name TEXT NOT NULL,
    state TEXT NOT NULL,
    options TEXT NOT NULL,
    audio TEXT NOT NULL,
    duration_s REAL NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    completions INTEGER NOT NULL DEFAULT 0,
    model_version TEXT,
    result TEXT,
    error TEXT,
    not_before REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created);
"""


_JOB_COLUMNS = ("id, key_name, state, options, audio, duration_s, created, started, finished, attempts, completions, "
                "model_version, result, error")


@dataclass(frozen=True)
class Job:
    id: str
    key_name: str
    state: str  # queued | running | done | failed
    options: dict[str, Any]  # the request's transcription fields
    audio: Path
    duration_s: float
    created: float  # unix seconds
    started: float | None
    finished: float | None
    attempts: int  # times a worker took it (more than 1 after a crash or a failed batch)
    completions: int  # times a result was written: 1 once done, never more
    model_version: str | None
    result: dict[str, Any] | None  # verbose_json of the transcription
    error: str | None


class JobStore:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        (self.folder / "audio").mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.folder / "jobs.sqlite", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)
        if "not_before" not in {c[1] for c in self._db.execute("PRAGMA table_info(jobs)")}:  # a store from before
            try:
                self._db.execute("ALTER TABLE jobs ADD COLUMN not_before REAL")
            except sqlite3.OperationalError as exc:  # another process opening the store added it meanwhile
                if "duplicate column" not in str(exc):
                    raise
        self._lock = threading.Lock()

    def _row(self, row) -> Job:
        (id_, key_name, state, options, audio, duration_s, created, started, finished, attempts, completions,
         version, result, error) = row
        return Job(id_, key_name, state, json.loads(options), self.folder / "audio" / audio, duration_s, created,
                   started, finished, attempts, completions, version, json.loads(result) if result else None, error)

    def submit(self, key_name: str, audio: bytes, options: dict[str, Any], duration_s: float) -> Job:
        """Store the audio, then the job; returns the queued job."""
        job_id = uuid.uuid4().hex
        target = self.folder / "audio" / job_id
        with open(target.with_suffix(".part"), "wb") as f:
            f.write(audio)
            f.flush()
            os.fsync(f.fileno())
        os.replace(target.with_suffix(".part"), target)
        folder = os.open(target.parent, os.O_RDONLY)  # the rename itself survives a power loss
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        with self._lock:
            self._db.execute("INSERT INTO jobs (id, key_name, state, options, audio, duration_s, created) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (job_id, key_name, QUEUED, json.dumps(options), job_id, duration_s, time.time()))
        return self.get(job_id)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._row(row) if row else None

    def claim(self) -> Job | None:
        """The oldest queued job due now, now running; None when there is none."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT id FROM jobs WHERE state = ? AND (not_before IS NULL OR not_before <= ?) "
                                       "ORDER BY created LIMIT 1", (QUEUED, time.time())).fetchone()
                if row:
                    self._db.execute("UPDATE jobs SET state = ?, started = ?, attempts = attempts + 1 WHERE id = ?",
                                     (RUNNING, time.time(), row[0]))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return self.get(row[0]) if row else None

    def complete(self, job_id: str, result: dict[str, Any], model_version: str | None) -> bool:
        """Record the result of a running job; False (nothing written) when it was not running."""
        with self._lock:
            done = self._db.execute("UPDATE jobs SET state = ?, finished = ?, result = ?, model_version = ?, "
                                    "completions = completions + 1 WHERE id = ? AND state = ?",
                                    (DONE, time.time(), json.dumps(result, ensure_ascii=False), model_version,
                                     job_id, RUNNING)).rowcount == 1
        if done:
            (self.folder / "audio" / job_id).unlink(missing_ok=True)
        return done

    def redacted_audio(self, job_id: str) -> Path:
        return self.folder / "audio" / f"{job_id}.redacted.wav"

    def keep_redacted_audio(self, job_id: str, wav: bytes) -> None:
        """Keep the job's audio with its redacted stretches muted (a WAV file's bytes) until it is purged."""
        target = self.redacted_audio(job_id)
        target.with_suffix(".part").write_bytes(wav)
        os.replace(target.with_suffix(".part"), target)

    def purge(self, finished_before: float) -> int:
        """Done and failed jobs finished before ``finished_before`` (unix seconds) deleted with their audio
        files; returns how many."""
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT id FROM jobs WHERE state IN (?, ?) AND finished < ?",
                                                  (DONE, FAILED, finished_before)).fetchall()]
            for job_id in ids:
                (self.folder / "audio" / job_id).unlink(missing_ok=True)
                self.redacted_audio(job_id).unlink(missing_ok=True)
                self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            if ids:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(ids)

    def fail(self, job_id: str, error: str) -> None:
        """A job whose audio or options cannot be transcribed: failed with the reason, audio kept."""
        with self._lock:
            self._db.execute("UPDATE jobs SET state = ?, finished = ?, error = ? WHERE id = ? AND state = ?",
                             (FAILED, time.time(), error, job_id, RUNNING))

    def retry(self, job_id: str, delay_s: float) -> None:
        """A running job whose decoding failed for a cause outside it (the runtime's batch, a full disk): queued
        again, due in ``delay_s`` doubled for each attempt before this one, so that what made it fail (memory
        held by other requests, a disk being cleared) may pass."""
        with self._lock:
            self._db.execute("UPDATE jobs SET state = ?, not_before = ? + ? * (1 << (attempts - 1)) "
                             "WHERE id = ? AND state = ?", (QUEUED, time.time(), delay_s, job_id, RUNNING))

    def recover(self) -> int:
        """Jobs left running by a stopped server go back to the queue, unless that was their last of
        ``MAX_ATTEMPTS`` (the job may be what stops it: failed, audio kept); returns how many."""
        with self._lock:
            self._db.execute("UPDATE jobs SET state = ?, finished = ?, error = ? WHERE state = ? AND attempts >= ?",
                             (FAILED, time.time(), f"no result in {MAX_ATTEMPTS} attempts; the server stopped during the last",
                              RUNNING, MAX_ATTEMPTS))
            return self._db.execute("UPDATE jobs SET state = ? WHERE state = ?", (QUEUED, RUNNING)).rowcount

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {QUEUED: 0, RUNNING: 0, DONE: 0, FAILED: 0, **dict(rows)}

    def close(self) -> None:
        self._db.close()
