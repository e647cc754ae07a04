"""JSONL manifests: one JSON object per line, UTF-8, written atomically."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable


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


def atomic_write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))


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
