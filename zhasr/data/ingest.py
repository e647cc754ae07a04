"""Ingest labelled batches: decode to 16 kHz mono, store by content hash, normalize text, split.

Input, one folder per batch under ``incoming``::

    <batch>/manifest.jsonl   {"audio": "clips/a.wav", "text": "您好", "speaker": "s1", "id": "a"}
    <batch>/clips/...         audio in any libsndfile format, rate and channel count

Optional keys of a line: ``speaker`` or ``call_id`` (decides the split),
``template`` or ``topic`` (the sentence or subject a clip was made from: a held-out
one sends all its clips to test, so test holds sentences never trained on),
``language``, ``split: "regression"`` (evaluation only, never trained on) and
``segments: [{"start": s, "end": s, "text": ...}]``, which cuts a long
recording into one row per segment. Regression rows are divided once by a hash
of the speaker into a tuning half (split ``tuning``: the merge guard may look at
it) and a judging half (split ``regression``: only the gate reads it). Each row
of the judging half also gets a twin through every telephone channel of
``ingest.telephone_codecs`` (split ``telephone`` for 8 kHz G.711 mu-law,
``telephone-<codec>`` for the others), each its own evaluation-only set; the
tuning half gets the same twins (splits ``tuning-telephone`` and ``tuning-telephone-<codec>``).

Output under ``dataset``:

- ``audio/<sha[:2]>/<sha>.wav``: PCM-16, 16 kHz mono, named by the sha256 of its bytes;
- ``ingested.jsonl``: one row per input line (or segment). A line that cannot be
  used keeps its row with ``decode_error`` set to the reason; validation quarantines it;
- ``frozen_test.json``: speakers, held-out templates and audio hashes ever in test; they stay in test;
- ``ledger.jsonl``: one line per batch manifest version ingested.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from zhasr.config import TELEPHONE_CODECS, IngestParams, ModelParams
from zhasr.data import audio, codecs
from zhasr.data.manifest import ManifestRow, atomic_write_json, atomic_write_jsonl, read_jsonl
from zhasr.data.text import normalize

EVAL_ONLY_SPLIT = "regression"  # a batch row may ask for it: never trained on; the judging half keeps the name
TUNING_SPLIT = "tuning"  # the real-speech half the merge guard may look at
TELEPHONE_SPLIT = "telephone"  # the judging half through G.711 mu-law, made at ingest


@dataclass(frozen=True)
class IngestReport:
    """The ingest stage's report (reports/ingest.json)."""

    rows: int  # lines read from every batch's manifest
    decoded: int  # rows whose audio decoded
    decode_errors: int
    hours: float  # audio of the decoded rows
    batches: list[str]  # every batch in the dataset, sorted
    splits: dict[str, int]  # decoded rows per split

    @classmethod
    def of(cls, rows: list[dict[str, Any]]) -> IngestReport:
        decoded = [r for r in rows if not r["decode_error"]]
        return cls(len(rows), len(decoded), len(rows) - len(decoded),
                   round(sum(r["duration_s"] for r in decoded) / 3600, 4), sorted({r["batch"] for r in rows}),
                   dict(Counter(r["split"] for r in decoded)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IngestReport:
        return cls(**data)


def telephone_split(codec: str, half: str = EVAL_ONLY_SPLIT) -> str:
    """A real-speech half's set through ``codec``: for the judging half ``telephone`` (G.711 mu-law) or
    ``telephone-<codec>``, for the tuning half the same names behind ``tuning-``."""
    name = TELEPHONE_SPLIT if codec == "mulaw" else f"{TELEPHONE_SPLIT}-{codec}"
    return f"{TUNING_SPLIT}-{name}" if half == TUNING_SPLIT else name


GENERAL_SPEECH_SETS = (EVAL_ONLY_SPLIT, *(telephone_split(c) for c in TELEPHONE_CODECS))  # the gate's
TUNING_SETS = (TUNING_SPLIT, *(telephone_split(c, TUNING_SPLIT) for c in TELEPHONE_CODECS))  # the merge guard's
EVALUATION_SETS = ("test", *GENERAL_SPEECH_SETS)
EVAL_ONLY_SPLITS = frozenset(GENERAL_SPEECH_SETS + TUNING_SETS)  # evaluated, never trained on
FROZEN_TEST_FILE = "frozen_test.json"  # speakers, held-out templates and audio hashes ever in test
LEDGER_FILE = "ledger.jsonl"  # one line per ingested batch version


def _unit_hash(key: str, params: IngestParams) -> float:
    digest = hashlib.sha256(f"{params.split_seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def template_held_out(template: str, params: IngestParams) -> bool:
    """Whether every clip of ``template`` goes to test (a hash of it, like the speaker's)."""
    return bool(template) and _unit_hash(f"template:{template}", params) < params.template_test_fraction


def assign_split(speaker: str, params: IngestParams, template: str = "") -> str:
    """Deterministic split from a hash of the speaker or call id (same speaker, same split); a held-out
    template sends the clip to test whatever its speaker, so no test sentence is ever trained on.
    Such a clip is marked ``sentence_held_out`` on its row: its speaker may also be in train or dev."""
    if template_held_out(template, params):
        return "test"
    u = _unit_hash(speaker, params)
    if u < params.test_fraction:
        return "test"
    if u < params.test_fraction + params.dev_fraction:
        return "dev"
    return "train"


def read_batch_lines(manifest: Path) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    """``[(line_no, row or None, error or None)]`` for each non-blank line of a JSONL manifest."""
    out = []
    for line_no, raw in enumerate(manifest.read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8-sig"))  # a BOM before the first line is an editor's, not the row's
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


def _store(samples, dataset_dir: Path, rate: int) -> tuple[str, str]:
    """Write PCM-16 audio under ``audio/<sha[:2]>/<sha>.wav`` once; returns (relative path, sha256)."""
    blob = audio.wav_bytes(samples, rate)
    sha = audio.sha256_hex(blob)
    relative = Path("audio") / sha[:2] / f"{sha}.wav"
    target = dataset_dir / relative
    if not target.exists():  # content-addressed: the same audio is stored once
        target.parent.mkdir(parents=True, exist_ok=True)
        # A private temporary name: two threads may store the same audio at once.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{sha[:8]}.", suffix=".tmp")
        os.fchmod(fd, 0o644)  # mkstemp makes it owner-only
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)
        os.replace(tmp, target)
    return str(relative), sha


def _audio_fields(samples, decoded: audio.DecodedAudio, dataset_dir: Path, rate: int) -> dict[str, Any]:
    relative, sha = _store(samples, dataset_dir, rate)
    rms = audio.rms_dbfs(samples)
    return {
        "audio": relative, "audio_sha256": sha, "duration_s": round(len(samples) / rate, 4),
        "sample_rate_src": decoded.source_rate, "channels_src": decoded.source_channels,
        "band": "telephone" if decoded.source_rate <= audio.TELEPHONE_MAX_RATE else "wideband",
        "rms_dbfs": round(max(rms, -200.0), 2),  # JSON has no -inf; digital silence is -200 dBFS
    }


def regression_half(speaker: str, params: IngestParams) -> str:
    """``tuning`` or ``regression`` (judging) for a real-speech speaker: a hash, so a speaker never moves."""
    return TUNING_SPLIT if _unit_hash(f"tuning:{speaker}", params) < params.regression_tuning_fraction else EVAL_ONLY_SPLIT


def _telephone_twins(row: dict[str, Any], samples, dataset_dir: Path, params: IngestParams) -> list[dict[str, Any]]:
    """The real-speech row through each telephone channel, in its half: each twin its own clip, speaker
    and split, so that the merge guard sees on its half every channel the gate judges on the other."""
    channels = [(telephone_split(c, row["split"]), c) for c in params.telephone_codecs]
    twins = []
    for split, codec in channels:
        rate = params.sample_rate
        phone = audio.telephone_channel(samples, rate) if codec == "mulaw" else codecs.telephone(samples, codec, rate)
        relative, sha = _store(phone, dataset_dir, rate)
        twins.append({**row, "id": f"{row['id']}@{split}", "speaker": f"{row['speaker']}@{split}", "split": split,
                      "audio": relative, "audio_sha256": sha, "sample_rate_src": audio.TELEPHONE_MAX_RATE,
                      "band": "telephone", "codec": codec, "rms_dbfs": round(max(audio.rms_dbfs(phone), -200.0), 2)})
    return twins


def _parse_segments(raw: Any) -> list[tuple[float, float, str]]:
    """``[{"start": s, "end": s, "text": str}]`` -> [(start_s, end_s, text)]; ValueError on bad input."""
    if not isinstance(raw, list) or not raw:
        raise ValueError("'segments' must be a non-empty list of {start, end, text}")
    out = []
    for k, seg in enumerate(raw):
        try:
            start, end, text = float(seg["start"]), float(seg["end"]), seg["text"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"segments[{k}]: expected numbers start, end (seconds) and a text ({exc})") from exc
        if not isinstance(text, str):
            raise ValueError(f"segments[{k}]: 'text' must be a string, got {type(text).__name__}")
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ValueError(f"segments[{k}]: start and end must be finite, got {start} and {end}")
        if not 0 <= start < end:
            raise ValueError(f"segments[{k}]: need 0 <= start < end, got {start} and {end}")
        out.append((start, end, text))
    return out


# the manifest's optional keys and the types they must have (ManifestRow's)
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,), "template": (str,), "topic": (str,), "language": (str,), "label_version": (str,),
    "channel": (str,), "snr_db": (int, float), "id": (str, int), "speaker": (str, int), "call_id": (str, int),
    "import_problem": (str,),
}


def _field_error(row: dict[str, Any]) -> str | None:
    """Why a manifest row's keys cannot be taken as they are (a label given as a list, a channel as a number),
    or None; ``null`` counts as absent."""
    for key, types in _FIELD_TYPES.items():
        value = row.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            wanted = " or ".join(t.__name__ for t in types)
            return f"'{key}' must be {wanted}, got {type(value).__name__} {json.dumps(value, ensure_ascii=False)[:80]}"
    return None


def _ingest_line(
    batch: str, batch_dir: Path, line_no: int, row: dict[str, Any] | None, error: str | None,
    dataset_dir: Path, params: IngestParams,
) -> list[dict[str, Any]]:
    """Rows for one manifest line: one, or one per segment when the line gives ``segments``."""
    row = row or {}
    if error is None:
        error = _field_error(row) or (f"import: {row['import_problem']}" if row.get("import_problem") else None)
    text = row.get("text") if isinstance(row.get("text"), str) else ""
    speaker = str(row.get("speaker") or row.get("call_id") or f"{batch}:{row.get('audio', line_no)}")
    template = str(row.get("template") or row.get("topic") or "")
    base: dict[str, Any] = {
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
        "split": regression_half(speaker, params) if row.get("split") == EVAL_ONLY_SPLIT
        else assign_split(speaker, params, template),
        "template": template or None,
        "sentence_held_out": row.get("split") != EVAL_ONLY_SPLIT and template_held_out(template, params),
        "language": str(row.get("language") or ModelParams.language),
        "decode_error": error,
    }
    for key in ("channel", "snr_db", "call_id", "label_version"):
        if key in row:
            base[key] = str(row[key]) if key == "call_id" and row[key] is not None else row[key]
    if error:
        return [base]
    try:
        decoded = audio.decode(_resolve_inside(batch_dir, str(row["audio"])), params.sample_rate)
        segments = _parse_segments(row["segments"]) if "segments" in row else None
    except (audio.AudioError, ValueError) as exc:
        return [{**base, "decode_error": str(exc)}]
    except (OSError, RuntimeError) as exc:  # a name too long, a link to itself: the path, not the sound
        return [{**base, "decode_error": f"{row['audio']}: cannot be opened ({exc})"}]
    if segments is None:
        rows = [{**base, **_audio_fields(decoded.samples, decoded, dataset_dir, params.sample_rate)}]
        if base["split"] in (EVAL_ONLY_SPLIT, TUNING_SPLIT) and params.telephone_regression:
            rows += _telephone_twins(rows[0], decoded.samples, dataset_dir, params)
        return rows
    rows = []
    for k, (start, end, seg_text) in enumerate(segments):
        piece = decoded.samples[int(start * params.sample_rate): int(end * params.sample_rate)]
        seg = {**base, "id": f"{base['id']}#{k}", "text": seg_text, "text_norm": normalize(seg_text),
               "segment": [start, end]}
        if len(piece) == 0:
            rows.append({**seg, "decode_error": f"segment {k} ({start}-{end} s) lies outside the audio "
                                                f"({decoded.duration_s:.2f} s)"})
        else:
            rows.append({**seg, **_audio_fields(piece, decoded, dataset_dir, params.sample_rate)})
    return rows


def ingest_batches(
    incoming: Path, dataset_dir: Path, params: IngestParams,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Ingest every ``<batch>/manifest.jsonl`` under ``incoming``; write and return the rows.

    Rows keep input order: batches in the order they first arrived (the ledger's), new ones by name.
    ``progress(done, total)`` is called after each line.
    """
    incoming, dataset_dir = Path(incoming), Path(dataset_dir)
    manifests = _in_arrival_order(batch_manifests(incoming), dataset_dir / LEDGER_FILE)
    if not manifests:
        raise FileNotFoundError(f"{incoming}: no batch found (expected <batch>/manifest.jsonl)")
    jobs = []
    for manifest in manifests:
        batch_dir = manifest.parent
        for line_no, row, error in read_batch_lines(manifest):
            jobs.append((batch_dir.name, batch_dir, line_no, row, error))
    dataset_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=params.workers) as pool:
        futures = [pool.submit(_ingest_line, *job, dataset_dir, params) for job in jobs]
        for done, future in enumerate(futures, start=1):
            rows.extend(future.result())
            if progress:
                progress(done, len(futures))
    freeze_test_split(rows, dataset_dir / FROZEN_TEST_FILE, params)
    record_batches(manifests, rows, dataset_dir / LEDGER_FILE)
    atomic_write_jsonl(dataset_dir / "ingested.jsonl", rows)
    return rows


def decoded_rows(rows: list[dict[str, Any]]) -> list[ManifestRow]:
    """The ingested ``rows`` whose audio decoded, as manifest rows without validation (training calls the
    project made itself)."""
    return [ManifestRow.from_dict(r) for r in rows if not r["decode_error"]]


def batch_manifests(incoming: Path) -> list[Path]:
    """``<batch>/manifest.jsonl`` files under ``incoming``, sorted by batch name."""
    # Hidden folders are batches still being written (synth and importers build there, then rename).
    return sorted(m for m in Path(incoming).glob("*/manifest.jsonl") if not m.parent.name.startswith("."))


def _in_arrival_order(manifests: list[Path], ledger_file: Path) -> list[Path]:
    """The batches the ledger has seen in the order it first saw them, then new ones by name: of rows with one
    audio (or one speaker), validation keeps the first, and that must be the one that came first, not a later
    batch whose name sorts before."""
    first: dict[str, int] = {}
    for entry in read_jsonl(ledger_file) if ledger_file.is_file() else []:
        first.setdefault(entry["batch"], len(first))
    return sorted(manifests, key=lambda m: (first.get(m.parent.name, len(first)), m.parent.name))


def pending_batches(incoming: Path, dataset_dir: Path) -> list[str]:
    """Batches under ``incoming`` whose manifest (by sha256) the ledger has not seen: new or changed."""
    ledger = Path(dataset_dir) / LEDGER_FILE
    seen = {(e["batch"], e["manifest_sha256"]) for e in read_jsonl(ledger)} if ledger.is_file() else set()
    return [m.parent.name for m in batch_manifests(incoming)
            if (m.parent.name, hashlib.sha256(m.read_bytes()).hexdigest()) not in seen]


def freeze_test_split(rows: list[dict[str, Any]], frozen_file: Path, params: IngestParams) -> None:
    """Keep the test split frozen: a held-out speaker, held-out template or audio ever in test stays in
    test, whatever the params say.

    ``frozen_file`` holds ``{"speakers": [...], "templates": [...], "audio_sha256": [...]}``, only ever
    grown. A speaker is frozen only when held out as a speaker: one whose clip is in test for its
    held-out sentence keeps its other clips in train or dev. Rows are updated in place.
    """
    frozen = json.loads(frozen_file.read_text(encoding="utf-8")) if frozen_file.is_file() else {}
    speakers, hashes = set(frozen.get("speakers", [])), set(frozen.get("audio_sha256", []))
    templates = set(frozen.get("templates", []))
    for row in rows:
        if row["split"] in EVAL_ONLY_SPLITS:
            continue
        if row.get("template") in templates:
            row["sentence_held_out"] = True
        if row["speaker"] in speakers or row["audio_sha256"] in hashes or row["sentence_held_out"]:
            row["split"] = "test"
    test = [r for r in rows if r["split"] == "test" and not r["decode_error"]]
    # Audio is frozen in test only where its first row is in test: a later copy of a clip already in train
    # (quarantined by validation as the same audio) must not pull the original into test next time.
    first_split: dict[str, str] = {}
    for row in rows:
        if not row["decode_error"]:
            first_split.setdefault(row["audio_sha256"], row["split"])
    grown = {"speakers": sorted(speakers | {r["speaker"] for r in test if not r["sentence_held_out"]}),
             "templates": sorted(templates | {r["template"] for r in test if r["sentence_held_out"]}),
             "audio_sha256": sorted(hashes | {sha for sha, split in first_split.items() if split == "test"})}
    if grown != frozen:
        atomic_write_json(frozen_file, grown)


def record_batches(manifests: list[Path], rows: list[dict[str, Any]], ledger_file: Path) -> None:
    """Append one ledger line per batch manifest not seen before (by its sha256); re-ingest adds nothing."""
    seen = {(e["batch"], e["manifest_sha256"]) for e in read_jsonl(ledger_file)} if ledger_file.is_file() else set()
    new = []
    for manifest in manifests:
        batch, digest = manifest.parent.name, hashlib.sha256(manifest.read_bytes()).hexdigest()
        if (batch, digest) not in seen:
            batch_rows = [r for r in rows if r["batch"] == batch]
            new.append({"batch": batch, "manifest_sha256": digest, "rows": len(batch_rows),
                        "decoded": sum(not r["decode_error"] for r in batch_rows),
                        "ingested_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    if new:
        existing = read_jsonl(ledger_file) if ledger_file.is_file() else []
        atomic_write_jsonl(ledger_file, existing + new)
