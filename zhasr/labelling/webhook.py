"""Newly labelled minutes, as Label Studio's annotation webhooks report them, kept until the retraining
they start has its batch.

A webhook call carries the whole annotation. Its labelled minutes are the durations of its regions that
have text, each at most ``max_region_s``. The ledger keeps one figure per annotation, so an annotation
updated ten times counts once, at its latest size.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

from zhasr.data.manifest import atomic_write_json
from zhasr.labelling.interface import TEXT

ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED"})


def labelled_minutes(annotation: Any, max_region_s: float) -> tuple[int, float] | None:
    """(annotation id, minutes of regions with text) of a webhook's ``annotation``; None when it is not one
    (no integer id or no result list)."""
    if not isinstance(annotation, dict) or not isinstance(annotation.get("result"), list):
        return None
    ann_id = annotation.get("id")
    if not isinstance(ann_id, int) or isinstance(ann_id, bool):
        return None
    spans: dict[str, float] = {}
    for item in annotation["result"]:
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(value, dict) or item.get("from_name") != TEXT:
            continue
        text, start, end = value.get("text"), value.get("start"), value.get("end")
        if not (isinstance(text, list) and "".join(map(str, text)).strip()):
            continue
        start, end = _seconds(start), _seconds(end)
        if math.isfinite(start) and math.isfinite(end) and end > start:
            spans[str(item.get("id"))] = min(end - start, max_region_s)
    return ann_id, sum(spans.values()) / 60


def _seconds(value: Any) -> float:
    """A JSON number as seconds; NaN for anything else (a string, a bool, an integer too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.nan


class MinuteLedger:
    """``{annotation id: minutes}`` of annotations not yet pulled for a retraining, in a JSON file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def _read(self) -> dict[str, float]:
        return json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}

    def add(self, annotation_id: int, minutes: float) -> float:
        """Record an annotation's minutes (replacing its earlier figure); returns the pending total."""
        with self._lock:
            pending = {**self._read(), str(annotation_id): round(minutes, 4)}
            atomic_write_json(self.path, pending)
            return sum(pending.values())

    def clear(self, annotation_ids: set[str]) -> None:
        """Forget ``annotation_ids`` (pulled for a retraining); annotations reported since stay."""
        with self._lock:
            atomic_write_json(self.path, {k: v for k, v in self._read().items() if k not in annotation_ids})

    def pending(self) -> dict[str, float]:
        with self._lock:
            return self._read()
