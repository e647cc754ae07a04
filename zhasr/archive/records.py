"""What each call became, kept so that nothing is done twice or lost.

A worker writes one record per call, audio and model version, atomically, as soon as the call is finished
(``<out>/records/<version>/<sha256>/<digest of the call id>.json``). A shard that runs again after its
worker died finds the records of its finished calls and does only the rest. The index (``<out>/index.jsonl``
and ``<out>/index.parquet``) is rebuilt from the records at the end of a run, a row per record; transcripts
are named by call and audio (``<call id>.<sha256[:12]>.json``), so another call under a name used before
(next night's ``0001.wav``) writes over nothing. A rerun with the same model skips every call whose file is
unchanged; the same audio under another name is given the record and transcripts it had, not decoded again.
A record file that cannot be read (cut short by a power loss) counts as absent: its call is transcribed
again. Records of the first layout (``<version>/<sha256>.json``, one per audio) are still read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from zhasr.data.manifest import atomic_write_bytes, atomic_write_jsonl, read_jsonl

log = logging.getLogger(__name__)

DONE, FAILED = "done", "failed"
INDEX_JSONL, INDEX_PARQUET = "index.jsonl", "index.parquet"


@dataclass(frozen=True)
class CallRecord:
    call_id: str
    path: str
    audio_sha256: str
    size: int
    mtime_ns: int
    model: str  # the registered model's name ("zhasr-whisper"), or the model folder
    model_version: str  # ResolvedModel.identity: "zhasr-whisper v3", or the model folder
    status: str  # done | failed
    reason: str | None = None  # why a failed call failed
    duration_s: float = 0.0
    channels: int = 0
    runtime: str = ""
    texts: dict[str, str] = field(default_factory=dict)  # speaker ("agent", "customer"; "" when mixed) -> text
    mean_confidence: float | None = None  # speech-time-weighted, 0-1 (zhasr.transcribe.confidence.call_confidence)
    flags: tuple[str, ...] = ()  # guard flags of its segments, each once
    wall_s: float = 0.0  # seconds this call took on its worker
    worker: str = ""  # host:pid of the process that made the record
    outputs: tuple[str, ...] = ()  # written files, relative to the output root
    formats: tuple[str, ...] = ()  # the response format of each of ``outputs`` (verbose_json, srt, ...)
    finished_at: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return self.audio_sha256, self.model_version, self.call_id

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CallRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("flags", "outputs", "formats"):
            values[name] = tuple(values.get(name) or ())
        return cls(**values)


@dataclass(frozen=True)
class CallFailure:
    """A call of a run that could not be transcribed, and why."""

    call_id: str
    reason: str | None


@dataclass(frozen=True)
class ArchiveRun:
    """One ``transcribe-archive`` run's totals (what the CLI prints and MLflow keeps)."""

    out: str  # the output root
    model_version: str
    calls: int  # listed in the source
    done: int  # transcribed in this run
    failed: int
    skipped: int  # done before with this model and unchanged
    copied: int  # of those done or failed, given the record of the same audio under another name, not decoded
    audio_hours: float  # of the calls decoded in this run
    wall_s: float
    workers: int
    audio_hours_per_hour: float
    failures: list[CallFailure]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def version_slug(model_version: str) -> str:
    """``model_version`` as one folder name."""
    return re.sub(r"[^\w.-]+", "_", model_version).strip("_") or "model"


def record_path(out: Path, audio_sha256: str, model_version: str, call_id: str) -> Path:
    call = hashlib.sha256(call_id.encode()).hexdigest()[:16]  # a call id may hold folders
    return Path(out) / "records" / version_slug(model_version) / audio_sha256 / f"{call}.json"


def _first_layout_path(out: Path, audio_sha256: str, model_version: str) -> Path:
    """Where the first layout kept the one record of an audio."""
    return Path(out) / "records" / version_slug(model_version) / f"{audio_sha256}.json"


def write_record(out: Path, record: CallRecord) -> None:
    atomic_write_bytes(record_path(out, record.audio_sha256, record.model_version, record.call_id),
                       json.dumps(record.to_dict(), ensure_ascii=False).encode())


def _load(path: Path) -> CallRecord | None:
    """The record in ``path``; None, logged, where the file is absent or cannot be read."""
    if not path.is_file():
        return None
    try:
        return CallRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        log.warning("%s: not a readable record (%s): its call counts as not transcribed", path, exc)
        return None


def audio_records(out: Path, audio_sha256: str, model_version: str) -> list[CallRecord]:
    """Every readable record of this audio by ``model_version``, whichever call it was; not those of another
    version whose name makes the same folder name ("models/a b" and "models/a_b")."""
    calls = Path(out) / "records" / version_slug(model_version) / audio_sha256
    paths = [*sorted(calls.glob("*.json")), _first_layout_path(out, audio_sha256, model_version)]
    return [r for p in paths if (r := _load(p)) is not None and r.model_version == model_version]


def read_record(out: Path, audio_sha256: str, model_version: str, call_id: str) -> CallRecord | None:
    """The call's record for this audio and ``model_version`` (or one of the first layout); None where there
    is none."""
    for path in (record_path(out, audio_sha256, model_version, call_id),
                 _first_layout_path(out, audio_sha256, model_version)):
        record = _load(path)
        if record is not None and (record.model_version, record.call_id) == (model_version, call_id):
            return record
    return None


def all_records(out: Path) -> list[CallRecord]:
    """Every readable record under ``out``, by model version, call id, then time."""
    root = Path(out) / "records"
    found = [r for p in [*root.glob("*/*/*.json"), *root.glob("*/*.json")] if (r := _load(p)) is not None]
    return sorted(found, key=lambda r: (r.model_version, r.call_id, r.finished_at))


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_index(index: Path) -> list[CallRecord]:
    """The records of an ``index.jsonl``."""
    return [CallRecord.from_dict(row) for row in read_jsonl(index)]


def known_hashes(out: Path) -> dict[tuple[str, int, int], str]:
    """(path, size, mtime_ns) -> sha256 of the files the index has: an unchanged file is not read again."""
    index = Path(out) / INDEX_JSONL
    return {(r.path, r.size, r.mtime_ns): r.audio_sha256 for r in (read_index(index) if index.is_file() else [])}


def write_index(out: Path, records: list[CallRecord]) -> None:
    """``index.jsonl`` and ``index.parquet`` (one row per call and model version), each replaced whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [r.to_dict() for r in records]
    atomic_write_jsonl(Path(out) / INDEX_JSONL, rows)
    table = pa.Table.from_pylist([{**row, "texts": json.dumps(row["texts"], ensure_ascii=False),
                                   "flags": list(row["flags"]), "outputs": list(row["outputs"]),
                                   "formats": list(row["formats"])} for row in rows],
                                 schema=_SCHEMA())
    target = Path(out) / INDEX_PARQUET
    tmp = target.with_name(f".{target.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(target)


def _SCHEMA():  # noqa: N802  (a constant built on first use: pyarrow is imported only where the index is written)
    import pyarrow as pa

    return pa.schema([
        ("call_id", pa.string()), ("path", pa.string()), ("audio_sha256", pa.string()), ("size", pa.int64()),
        ("mtime_ns", pa.int64()), ("model", pa.string()), ("model_version", pa.string()), ("status", pa.string()),
        ("reason", pa.string()), ("duration_s", pa.float64()), ("channels", pa.int32()), ("runtime", pa.string()),
        ("texts", pa.string()), ("mean_confidence", pa.float64()), ("flags", pa.list_(pa.string())),
        ("wall_s", pa.float64()), ("worker", pa.string()), ("outputs", pa.list_(pa.string())),
        ("formats", pa.list_(pa.string())), ("finished_at", pa.string()),
    ])
