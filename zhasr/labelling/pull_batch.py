"""People's corrected regions as a batch under ``paths.incoming``: one clip per region cut from the
call's own channel at its own rate, the call id as the split group (a call's regions stay together in one
split), a ``labelstudio.json`` naming where the labels came from, and the rejected regions in quarantine.

The pull ledger (``<labelling>/pulled.jsonl``: annotation id and updated_at) makes a second pull of the
same annotations add nothing; an annotation changed since is pulled again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import soundfile as sf

from zhasr.data.manifest import atomic_write_json, atomic_write_jsonl, read_jsonl
from zhasr.labelling.calls import CALLS_DIR
from zhasr.labelling.export import CorrectedRegion, Rejected

LEDGER = "pulled.jsonl"
PROVENANCE = "labelstudio.json"  # in the batch folder: the project and annotations a retrain trains on
QUARANTINE = "labelling_rejected.jsonl"  # in <quarantine>/<batch>/: regions a pull could not use


@dataclass(frozen=True)
class LabelSource:
    url: str  # Label Studio's address
    project_id: int
    project_title: str

    @property
    def project_url(self) -> str:
        return f"{self.url}/projects/{self.project_id}"

    def describe(self) -> str:
        """The project as a run's tag names it: "title (id N) URL"."""
        return f"{self.project_title} (id {self.project_id}) {self.project_url}"


@dataclass(frozen=True)
class Provenance:
    """A pulled batch's ``labelstudio.json``: where its rows came from and what the pull found."""

    source: LabelSource
    annotations: tuple[int, ...]  # Label Studio annotation ids
    tasks: tuple[int, ...]
    regions: int  # rows of the batch
    rejected: int  # regions quarantined
    minutes: float  # labelled audio
    corrected_share: float  # of regions that had a prediction, the share whose text the person changed
    lead_time_s: float  # people's time on the annotations, as Label Studio counts it
    annotators: tuple[str, ...]
    pulled_at: str  # ISO time, UTC

    def to_dict(self) -> dict[str, Any]:
        """The file's layout: the source's fields first, flat."""
        return {**asdict(self.source), **{k: list(v) if isinstance(v, tuple) else v
                                          for k, v in asdict(self).items() if k != "source"}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        source = LabelSource(data["url"], int(data["project_id"]), data["project_title"])
        return cls(source, tuple(data["annotations"]), tuple(data.get("tasks", ())), data.get("regions", 0),
                   data.get("rejected", 0), data.get("minutes", 0.0), data.get("corrected_share", 0.0),
                   data.get("lead_time_s", 0.0), tuple(data.get("annotators", ())), data.get("pulled_at", ""))


@dataclass(frozen=True)
class PullResult:
    batch_dir: Path | None  # None when nothing new was annotated
    rows: int
    rejected: int
    already_pulled: int  # annotations in an earlier batch, unchanged
    minutes: float  # labelled audio in the batch
    corrected_share: float  # of regions that had a prediction, the share whose text the person changed
    annotations: tuple[int, ...]


def pulled(labelling_dir: Path) -> frozenset[tuple[int, str]]:
    """(annotation id, updated_at) of every annotation already in a batch."""
    ledger = Path(labelling_dir) / LEDGER
    return frozenset((int(e["annotation_id"]), e["updated_at"]) for e in read_jsonl(ledger)) if ledger.is_file() \
        else frozenset()


def provenance(batch_dir: Path) -> Provenance | None:
    """What ``labelstudio.json`` of a pulled batch says; None for other batches."""
    path = Path(batch_dir) / PROVENANCE
    return Provenance.from_dict(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None


def default_batch(project_id: int) -> str:
    """``labelstudio-p<project>-<UTC time>``: the name of a pull's batch, in the order of pulls."""
    return f"labelstudio-p{project_id}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"


def write_batch(regions: Sequence[CorrectedRegion], rejected: Sequence[Rejected], source: LabelSource, *,
                labelling_dir: Path, incoming: Path, quarantine: Path, batch: str | None = None) -> PullResult:
    """Write ``<incoming>/<batch>`` (default ``labelstudio-p<project>-<UTC time>``); regions whose call audio
    is missing join the rejected ones."""
    batch = batch or default_batch(source.project_id)
    work = Path(incoming) / f".{batch}"  # hidden until complete: ingest skips it
    shutil.rmtree(work, ignore_errors=True)
    rows, problems = [], list(rejected)
    by_call: dict[str, list[CorrectedRegion]] = defaultdict(list)
    for region in regions:
        by_call[region.audio_sha256].append(region)
    for sha, call_regions in by_call.items():
        audio = Path(labelling_dir) / CALLS_DIR / f"{sha}.wav"
        if not audio.is_file():
            problems += [Rejected(r.task_id, r.annotation_id, r.region_id, f"call audio {audio} is missing: "
                                  "it was pushed from another checkout") for r in call_regions]
            continue
        samples, rate = sf.read(audio, always_2d=True, dtype="float32")
        for r in call_regions:
            clip = samples[int(r.start_s * rate): int(r.end_s * rate), r.channel]
            name = f"audio/{_safe(r.call_id)}/a{r.annotation_id}-{_safe(r.region_id)}.wav"
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            sf.write(work / name, clip, rate, subtype="PCM_16")
            rows.append(_row(r, name, source))
    annotations = tuple(sorted({r.annotation_id for r in regions} | {p.annotation_id for p in rejected
                                                                      if p.annotation_id is not None}))
    with_prediction = [r for r in regions if r.predicted_text is not None]
    share = sum(r.corrected for r in with_prediction) / len(with_prediction) if with_prediction else 0.0
    minutes = sum(r.end_s - r.start_s for r in regions) / 60
    final = None
    if rows:
        atomic_write_jsonl(work / "manifest.jsonl", rows)
        atomic_write_json(work / PROVENANCE, Provenance(
            source, annotations, tuple(sorted({r.task_id for r in regions})), regions=len(rows),
            rejected=len(problems), minutes=round(minutes, 3), corrected_share=round(share, 4),
            lead_time_s=round(sum(_lead_times(regions).values()), 1),
            annotators=tuple(sorted({r.annotator for r in regions if r.annotator is not None})),
            pulled_at=datetime.now(timezone.utc).isoformat(timespec="seconds")).to_dict())
        final = Path(incoming) / batch
        os.replace(work, final)
    else:  # nothing to train on: no batch folder (an empty batch would fail validation whole)
        shutil.rmtree(work, ignore_errors=True)
    if problems:
        atomic_write_jsonl(Path(quarantine) / batch / QUARANTINE, [p.to_dict() for p in problems])
    # After the batch is in place: a crash before this line pulls the same annotations again, never loses them.
    _record(Path(labelling_dir) / LEDGER, regions, rejected, batch)
    return PullResult(final, len(rows), len(problems), 0, round(minutes, 3), round(share, 4), annotations)


def _row(r: CorrectedRegion, audio: str, source: LabelSource) -> dict[str, Any]:
    # The id changes with updated_at: an annotation corrected again is a new row, not a clash with the old one.
    version = hashlib.sha1(r.updated_at.encode()).hexdigest()[:6]
    return {"id": f"ls{source.project_id}-a{r.annotation_id}-{r.region_id}-{version}", "audio": audio,
            "text": r.text, "speaker": r.call_id, "call_id": r.call_id, "role": r.role, "call_channel": r.channel,
            "call_span_s": [r.start_s, r.end_s], "source": f"labelstudio:{source.project_id}",
            "label_version": f"ls{source.project_id}-t{r.task_id}@{r.updated_at}",  # a later label replaces it
            "annotation_id": r.annotation_id, "annotator": r.annotator, "updated_at": r.updated_at,
            "predicted_text": r.predicted_text, "model_version": r.model_version}


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)


def _lead_times(regions: Sequence[CorrectedRegion]) -> dict[int, float]:
    return {r.annotation_id: float(r.lead_time_s) for r in regions if r.lead_time_s is not None}


def _record(ledger: Path, regions: Sequence[CorrectedRegion], rejected: Sequence[Rejected], batch: str) -> None:
    stamps = {(r.annotation_id, r.updated_at) for r in regions}
    # A rejected annotation is recorded too: pulling again gives the same reasons, not a new batch.
    stamps |= {(p.annotation_id, p.updated_at) for p in rejected if p.annotation_id is not None and p.updated_at}
    existing = read_jsonl(ledger) if ledger.is_file() else []
    atomic_write_jsonl(ledger, existing + [{"annotation_id": a, "updated_at": u, "batch": batch}
                                           for a, u in sorted(stamps)])
