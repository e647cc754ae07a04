"""Ingest labelled batches: decode to 16 kHz mono, store by content hash, normalize text, split.

Input, one folder per batch under ``incoming``::

    <batch>/manifest.jsonl   {"audio": "clips/a.wav", "text": "您好", "speaker": "s1", "id": "a"}
    <batch>/clips/...         audio in any libsndfile format, rate and channel count

Output under ``dataset``: ``audio/<sha[:2]>/<sha>.wav`` (PCM-16, 16 kHz) and one
row per input line in ``ingested.jsonl``. A line that cannot be used keeps its
row with ``decode_error`` set to the reason; validation quarantines it.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from zhasr import audio
from zhasr.manifest import atomic_write_jsonl
from zhasr.text import normalize


@dataclass(frozen=True)
class IngestOptions:
    sample_rate: int = 16000  # Hz of the stored audio
    dev_fraction: float = 0.1  # share of speakers assigned to dev
    test_fraction: float = 0.2  # share of speakers assigned to test
    split_seed: str = "zhasr"  # salt of the speaker hash
    workers: int = 2  # decoding threads (soundfile and soxr release the GIL)


def assign_split(speaker: str, options: IngestOptions) -> str:
    """Deterministic split from a hash of the speaker or call id: same speaker, same split."""
    digest = hashlib.sha256(f"{options.split_seed}:{speaker}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < options.test_fraction:
        return "test"
    if u < options.test_fraction + options.dev_fraction:
        return "dev"
    return "train"


def read_batch_lines(manifest: Path) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    """``[(line_no, row or None, error or None)]`` for each non-blank line of a JSONL manifest."""
    out = []
    for line_no, raw in enumerate(manifest.read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            out.append((line_no, None, f"{manifest}:{line_no}: line is not valid UTF-8"))
            continue
        except json.JSONDecodeError as exc:
            out.append((line_no, None, f"{manifest}:{line_no}: not valid JSON ({exc.msg})"))
            continue
        if not isinstance(row, dict) or "audio" not in row or "text" not in row:
            out.append((line_no, None, f"{manifest}:{line_no}: expected an object with keys 'audio' and 'text'"))
            continue
        out.append((line_no, row, None))
    return out


def _resolve_inside(batch_dir: Path, relative: str) -> Path:
    """The audio path, refusing any path that leaves the batch folder."""
    path = (batch_dir / relative).resolve()
    if not path.is_relative_to(batch_dir.resolve()):
        raise audio.AudioError(f"{relative}: path escapes the batch folder {batch_dir}")
    return path


def _ingest_line(
    batch: str, batch_dir: Path, line_no: int, row: dict[str, Any] | None, error: str | None,
    dataset_dir: Path, options: IngestOptions,
) -> dict[str, Any]:
    row = row or {}
    text = str(row.get("text") or "")
    speaker = str(row.get("speaker") or row.get("call_id") or f"{batch}:{row.get('audio', line_no)}")
    out: dict[str, Any] = {
        "id": str(row.get("id") or f"{batch}/{line_no}"),
        "batch": batch,
        "source_audio": str(row.get("audio", "")),
        "audio": None,
        "audio_sha256": None,
        "text": text,
        "text_norm": normalize(text),
        "duration_s": 0.0,
        "sample_rate_src": 0,
        "channels_src": 0,
        "band": None,
        "rms_dbfs": None,
        "speaker": speaker,
        "split": assign_split(speaker, options),
        "language": str(row.get("language") or "zh"),
        "decode_error": error,
    }
    for key in ("channel", "snr_db", "call_id"):
        if key in row:
            out[key] = row[key]
    if error:
        return out
    try:
        decoded = audio.decode(_resolve_inside(batch_dir, str(row["audio"])), options.sample_rate)
    except audio.AudioError as exc:
        out["decode_error"] = str(exc)
        return out
    blob = audio.wav_bytes(decoded.samples, options.sample_rate)
    sha = audio.sha256_hex(blob)
    relative = Path("audio") / sha[:2] / f"{sha}.wav"
    target = dataset_dir / relative
    if not target.exists():  # content-addressed: the same audio is stored once
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(blob)
        tmp.replace(target)
    out.update(
        audio=str(relative), audio_sha256=sha, duration_s=round(decoded.duration_s, 4),
        sample_rate_src=decoded.source_rate, channels_src=decoded.source_channels,
        band="telephone" if decoded.source_rate <= audio.TELEPHONE_MAX_RATE else "wideband",
        # JSON has no -inf; digital silence is written as -200 dBFS.
        rms_dbfs=round(max(decoded.rms_dbfs, -200.0), 2),
    )
    return out


def ingest_batches(
    incoming: Path, dataset_dir: Path, options: IngestOptions,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Ingest every ``<batch>/manifest.jsonl`` under ``incoming``; write and return the rows.

    Rows keep input order (batches sorted by name). ``progress(done, total)`` is
    called after each line.
    """
    incoming, dataset_dir = Path(incoming), Path(dataset_dir)
    manifests = sorted(incoming.glob("*/manifest.jsonl"))
    if not manifests:
        raise FileNotFoundError(f"{incoming}: no batch found (expected <batch>/manifest.jsonl)")
    jobs = []
    for manifest in manifests:
        batch_dir = manifest.parent
        for line_no, row, error in read_batch_lines(manifest):
            jobs.append((batch_dir.name, batch_dir, line_no, row, error))
    dataset_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=options.workers) as pool:
        futures = [pool.submit(_ingest_line, *job, dataset_dir, options) for job in jobs]
        for done, future in enumerate(futures, start=1):
            rows.append(future.result())
            if progress:
                progress(done, len(futures))
    atomic_write_jsonl(dataset_dir / "ingested.jsonl", rows)
    return rows
