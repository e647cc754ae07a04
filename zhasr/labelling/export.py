"""Reading Label Studio's full JSON export of a zhasr project: each annotated call's newest annotation that
was not skipped, its regions checked one by one. Only the full JSON keeps region times and channels (JSON-MIN and
ASR_MANIFEST drop them), so that is the only export read.

A region is kept when it has a role or channel, a non-empty text without a redaction placeholder (a
redacted prediction left as it was: "[PHONE]" is not what was said), lies inside the call, on one of its
channels (named, where the call has two), lasts ``min_region_s``-``max_region_s`` and does not overlap
another kept region of its channel. A task whose ``audio_sha256`` is not a SHA-256 is refused: it names
the call's file.
Everything else becomes a ``Rejected`` with its reason; nothing is dropped silently.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from zhasr.calltext.pii import PLACEHOLDERS
from zhasr.labelling.interface import AUDIO, ROLE, TEXT, UNKNOWN_ROLE

TASK_KEYS = ("call_id", "audio_sha256", "duration_s", "channels")  # what a zhasr task carries in data
END_SLACK_S = 0.05  # a region may end this far past the audio (waveform pixels round up)
OVERLAP_S = 0.05  # regions of one channel may touch by this much


class ExportError(ValueError):
    """The export is not one of a zhasr project: not Label Studio's full JSON, or no task is a zhasr call."""


@dataclass(frozen=True)
class CorrectedRegion:
    """One region of a person's annotation: what was said, where, by whom, and what the model had said."""

    task_id: int
    annotation_id: int
    region_id: str
    call_id: str
    audio_sha256: str
    start_s: float
    end_s: float
    channel: int
    role: str | None  # agent, customer...; None where the person left it unknown
    text: str
    annotator: int | None  # Label Studio user id
    lead_time_s: float | None  # seconds the person spent on the annotation
    updated_at: str
    predicted_text: str | None  # the text of the prediction region it corrects; None: a region drawn new
    model_version: str | None  # of the prediction the annotation started from

    @property
    def corrected(self) -> bool:
        """The person changed the model's text (a region drawn new counts as corrected)."""
        return self.predicted_text is None or self.predicted_text.strip() != self.text.strip()


@dataclass(frozen=True)
class Rejected:
    task_id: int
    annotation_id: int | None
    region_id: str | None
    reason: str
    updated_at: str | None = None  # of the annotation: a pull records it so that the next pull does not repeat it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ExportRead:
    regions: tuple[CorrectedRegion, ...]
    rejected: tuple[Rejected, ...]
    already_pulled: int  # annotations skipped because the ledger has them at the same updated_at
    unlabelled: int  # tasks nobody has annotated yet


@dataclass(frozen=True)
class _Region:
    region_id: str
    start_s: float
    end_s: float
    channel: int | None  # None: the result named none (one-channel audio, or an older Label Studio)
    role: str | None
    text: str | None


def read_export(tasks: list[dict[str, Any]], *, min_region_s: float, max_region_s: float,
                pulled: frozenset[tuple[int, str]] = frozenset()) -> ExportRead:
    """``tasks``: the full JSON export (a list of tasks). ``pulled``: (annotation id, updated_at) already in
    a batch. Raises ExportError when no task of the export is a zhasr call (an export of another project)."""
    if not isinstance(tasks, list):
        raise ExportError("the export is not Label Studio's full JSON (a list of tasks)")
    regions: list[CorrectedRegion] = []
    rejected: list[Rejected] = []
    already = unlabelled = 0
    ours = 0
    for task in tasks:
        task_id = int(task.get("id", -1))
        data = task.get("data") or {}
        missing = [k for k in TASK_KEYS if k not in data]
        if missing:
            reason = f"task {task_id}: not a zhasr call (data lacks {', '.join(missing)}): a task of another project"
            rejected.append(Rejected(task_id, None, None, reason + " or config"))
            continue
        if not re.fullmatch(r"[0-9a-f]{64}", str(data["audio_sha256"])):
            rejected.append(Rejected(task_id, None, None, f"task {task_id}: audio_sha256 {str(data['audio_sha256'])[:80]!r} "
                                                          "is not a SHA-256 (64 hex digits): not as zhasr pushed it"))
            continue
        ours += 1
        annotation = _newest(task.get("annotations") or [])
        if annotation is None:
            unlabelled += 1
            continue
        ann_id, updated = int(annotation["id"]), str(annotation.get("updated_at", ""))
        if (ann_id, updated) in pulled:
            already += 1
            continue
        if annotation.get("was_cancelled"):
            rejected.append(Rejected(task_id, ann_id, None, f"task {task_id}: skipped by the annotator", updated))
            continue
        try:
            found = _regions(annotation.get("result") or [])
            predicted = _regions((annotation.get("prediction") or {}).get("result") or [])
        except ValueError as exc:
            rejected.append(Rejected(task_id, ann_id, None, f"task {task_id}, annotation {ann_id}: {exc}", updated))
            continue
        if not found:
            rejected.append(Rejected(task_id, ann_id, None, f"task {task_id}, annotation {ann_id}: no region", updated))
            continue
        reasons = _region_problems(found, float(data["duration_s"]), int(data["channels"]), min_region_s, max_region_s)
        model_version = (annotation.get("prediction") or {}).get("model_version")
        for region in found:
            if region.region_id in reasons:
                rejected.append(Rejected(task_id, ann_id, region.region_id, reasons[region.region_id], updated))
                continue
            regions.append(CorrectedRegion(
                task_id, ann_id, region.region_id, str(data["call_id"]), str(data["audio_sha256"]), region.start_s,
                region.end_s, region.channel or 0, region.role, region.text or "", _annotator(annotation),
                annotation.get("lead_time"), updated, _predicted_text(region, predicted), model_version))
    if tasks and not ours:
        raise ExportError(f"none of the export's {len(tasks)} tasks is a zhasr call: it comes from another "
                         f"project or labelling config")
    return ExportRead(tuple(regions), tuple(rejected), already, unlabelled)


def _newest(annotations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest annotation that was not skipped (a later skip by someone else leaves a finished one
    standing), else the newest skip."""
    finished = [a for a in annotations if not a.get("was_cancelled")]
    return max(finished or annotations, key=lambda a: (str(a.get("updated_at", "")), int(a.get("id", 0))), default=None)


def _annotator(annotation: dict[str, Any]) -> int | None:
    """The Label Studio user id of ``completed_by``: an id, or a user object in some exports."""
    who = annotation.get("completed_by")
    who = who.get("id") if isinstance(who, dict) else who
    return int(who) if isinstance(who, (int, str)) and str(who).isdigit() else None


def _regions(result: list[dict[str, Any]]) -> list[_Region]:
    """Result items grouped by region id; ValueError on an item not of this project's labelling config."""
    parts: dict[str, dict[str, Any]] = defaultdict(dict)
    for item in result:
        name, target, kind = item.get("from_name"), item.get("to_name"), item.get("type")
        if (name, target, kind) not in ((ROLE, AUDIO, "labels"), (TEXT, AUDIO, "textarea")):
            raise ValueError(f"result item {name!r} -> {target!r} ({kind}) is not of zhasr's labelling config "
                             f"({ROLE!r} and {TEXT!r} on {AUDIO!r}): an export made with another config")
        value = item.get("value") or {}
        region = parts[str(item.get("id"))]
        for key in ("start", "end", "channel"):
            if key in value:
                region[key] = value[key]
        if kind == "labels":
            region["role"] = next(iter(value.get("labels") or []), None)
        else:
            texts = value.get("text") or []
            texts = [texts] if isinstance(texts, str) else texts
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise ValueError(f"region {item.get('id')}: its text is {texts!r}, not lines of text")
            region["text"] = "".join(texts)
    return [_Region(rid, float(p.get("start", 0.0)), float(p.get("end", 0.0)),
                    None if p.get("channel") is None else int(p["channel"]),
                    None if p.get("role") in (None, UNKNOWN_ROLE) else p["role"], p.get("text"))
            for rid, p in parts.items()]


def _region_problems(regions: list[_Region], duration_s: float, channels: int, min_s: float,
                     max_s: float) -> dict[str, str]:
    """{region id: why it cannot be trained on}."""
    problems: dict[str, str] = {}
    for r in regions:
        span = f"region {r.region_id} ({r.start_s:.2f}-{r.end_s:.2f} s, channel {r.channel})"
        if r.text is None or not r.text.strip():
            problems[r.region_id] = f"{span}: empty text"
        elif marks := [m for m in PLACEHOLDERS if m in r.text]:
            problems[r.region_id] = f"{span}: holds {marks[0]}, a redaction; type what was said or delete the region"
        elif r.start_s < 0 or r.end_s <= r.start_s:
            problems[r.region_id] = f"{span}: needs 0 <= start < end"
        elif r.end_s > duration_s + END_SLACK_S:
            problems[r.region_id] = f"{span}: ends past the audio's end ({duration_s:.2f} s)"
        elif r.channel is None and channels > 1:
            problems[r.region_id] = f"{span}: names no channel of a {channels}-channel call"
        elif not 0 <= (r.channel or 0) < channels:
            problems[r.region_id] = f"{span}: the call has {channels} channel(s)"
        elif not min_s <= r.end_s - r.start_s <= max_s:
            problems[r.region_id] = f"{span}: lasts {r.end_s - r.start_s:.2f} s, outside {min_s}-{max_s} s"
    by_channel: dict[int, list[_Region]] = defaultdict(list)
    for r in regions:
        if r.region_id not in problems:  # a region refused already takes no good one down with it
            by_channel[r.channel or 0].append(r)
    for channel_regions in by_channel.values():
        reach: _Region | None = None  # of the regions so far, the one that ends last
        for r in sorted(channel_regions, key=lambda r: r.start_s):
            if reach is not None and reach.end_s - r.start_s > OVERLAP_S:
                for one, other in ((reach, r), (r, reach)):
                    problems.setdefault(one.region_id, f"region {one.region_id} ({one.start_s:.2f}-{one.end_s:.2f} s) "
                                                       f"overlaps region {other.region_id} on channel {one.channel}")
            if reach is None or r.end_s > reach.end_s:
                reach = r
    return problems


def _predicted_text(region: _Region, predicted: list[_Region]) -> str | None:
    """The prediction region this one corrects: the same region id, else the one of its channel it overlaps
    most (at least half of the union)."""
    for p in predicted:
        if p.region_id == region.region_id:
            return p.text or ""
    best, best_iou = None, 0.5
    for p in predicted:
        if (p.channel or 0) != (region.channel or 0):
            continue
        inter = min(p.end_s, region.end_s) - max(p.start_s, region.start_s)
        union = max(p.end_s, region.end_s) - min(p.start_s, region.start_s)
        if union > 0 and inter / union >= best_iou:
            best, best_iou = p, inter / union
    return None if best is None else best.text or ""
