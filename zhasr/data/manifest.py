"""JSONL manifests: one JSON object per line, UTF-8, written atomically; the dataset manifest's rows as
``ManifestRow`` records."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable


@dataclass(frozen=True)
class ManifestRow:
    """One clip of the validated dataset manifest (``data/dataset/manifest.jsonl``): what ingest made of a
    batch line (or of one of its segments, or a real-speech row's telephone twin) and validation accepted.
    Stages that change a clip (augmentation, pseudo-labels) make a new one with ``dataclasses.replace``."""

    id: str  # unique in the manifest; "<line id>#<k>" for a segment, "<id>@<split>" for a telephone twin
    batch: str  # the batch folder it came from
    split: str  # train, dev, test or an evaluation-only set (regression, telephone-*, tuning*)
    audio: str  # PCM-16 16 kHz mono WAV: relative to the dataset folder, or absolute for an augmented copy
    audio_sha256: str  # of the stored clip (of the original, for an augmented copy)
    text: str  # the label as written
    text_norm: str  # ``zhasr.data.text.normalize(text)``: what training and the error rates use
    duration_s: float
    speaker: str  # the speaker or call id that decides the split
    language: str  # Whisper's language code of the speech
    source_audio: str  # the audio's path inside its batch
    sample_rate_src: int  # Hz, before resampling to 16 kHz
    channels_src: int
    band: str  # "wideband" or "telephone" (source at 8 kHz or less, or heard through a codec)
    rms_dbfs: float  # level of the clip; -200 for digital silence
    sentence_held_out: bool = False  # in test for its held-out template, whatever its speaker's split
    template: str | None = None  # the sentence or topic it was made from
    codec: str | None = None  # the telephone codec a twin or augmented copy was heard through
    call_id: str | None = None
    channel: str | None = None  # the call's side, for a call's track (agent, customer)
    snr_db: float | None = None  # noise mixed in by the synthesizer
    segment: tuple[float, float] | None = None  # (start, end) s in the source recording, for a segment
    # the labelled task it was cut from and when it was labelled ("ls7-t5@2026-12-06T01:00:00Z"): rows of a
    # later label of the same task replace it
    label_version: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ManifestRow:
        """A row as read from the manifest; ``ValueError`` names a missing or unknown key."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields - {"decode_error"})
        if unknown:
            raise ValueError(f"row {data.get('id')!r} has unknown key {unknown[0]!r}")
        if data.get("decode_error"):
            raise ValueError(f"row {data.get('id')!r} did not decode ({data['decode_error']}): not a dataset row")
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in data and f.default is dataclasses.MISSING]
        if missing:
            raise ValueError(f"row {data.get('id')!r} lacks key {missing[0]!r}")
        values = {k: v for k, v in data.items() if k in fields}
        if values.get("segment") is not None:
            values["segment"] = tuple(values["segment"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The row as written: the optional keys only where set."""
        out = dataclasses.asdict(self)
        for key in ("codec", "call_id", "channel", "snr_db", "segment", "label_version"):
            if out[key] is None:
                del out[key]
        return out


def read_manifest(path: Path) -> list[ManifestRow]:
    """The dataset manifest's rows; a bad row raises ValueError naming the file, the row and the key."""
    rows = []
    for number, data in enumerate(read_jsonl(path), start=1):
        try:
            rows.append(ManifestRow.from_dict(data))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: row {number}: {exc}") from exc
    return rows


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a bad line raises ValueError naming file and line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from exc
    return rows


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_jsonl(path: Path, rows: Iterable[dict[str, Any] | ManifestRow]) -> None:
    atomic_write_text(path, "".join(json.dumps(r.to_dict() if isinstance(r, ManifestRow) else r, ensure_ascii=False,
                                               sort_keys=True) + "\n" for r in rows))


def atomic_write_json(path: Path, obj: Any) -> None:
    # ASCII with \u escapes: DVC reads non-ASCII bytes as binary and refuses such a file as metrics.
    atomic_write_text(path, json.dumps(obj, ensure_ascii=True, indent=2, sort_keys=True) + "\n")


def read_json(path: Path, produced_by: str) -> Any:
    """A JSON report; a missing one names the stage that writes it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run the {produced_by} stage first")
    return json.loads(path.read_text(encoding="utf-8"))


def file_md5(path: Path) -> str:
    """md5 of a file's bytes: for a file DVC tracks, the same value DVC records as its hash."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()
