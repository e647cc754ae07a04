"""jsonl, json and csv manifests: one record per clip with its audio path and text."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from zhasr.data.importers.common import SourceError, _Build, _decode_utf8, _dest_for, _lines, _scalar_extras


def _csv_records(reader, header: list[str], path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, {column: value}) per non-blank record; a record of the wrong width names its line."""
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise SourceError(f"{path}:{reader.line_num}: {len(values)} fields, the header has {len(header)}")
        yield reader.line_num, dict(zip(header, values))


def _read_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, row)`` for each record of a .jsonl, .json or .csv file; ``where`` is ``name:line`` or ``name[item]``."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        for line_no, line in enumerate(_lines(path), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SourceError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise SourceError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
            yield f"{path.name}:{line_no}", row
    elif suffix == ".json":
        try:
            items = json.loads(_decode_utf8(path))
        except json.JSONDecodeError as exc:
            raise SourceError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
        if not isinstance(items, list):
            raise SourceError(f"{path}: expected a JSON list of objects, got {type(items).__name__}")
        for index, row in enumerate(items):
            if not isinstance(row, dict):
                raise SourceError(f"{path}: item {index}: expected a JSON object, got {type(row).__name__}")
            yield f"{path.name}[{index}]", row
    elif suffix == ".csv":
        reader = csv.reader(io.StringIO(_decode_utf8(path), newline=""))
        header = next(reader, None)
        if not header:
            raise SourceError(f"{path}:1: expected a header row")
        header = [h.strip() for h in header]
        duplicates = sorted({h for h in header if header.count(h) > 1})
        if duplicates:
            raise SourceError(f"{path}:1: duplicate column(s) {', '.join(duplicates)}")
        for line_num, record in _csv_records(reader, header, path):
            yield f"{path.name}:{line_num}", record
    else:
        raise SourceError(f"{path}: expected a .jsonl, .json or .csv file")


def _import_records(source: Path, build: _Build, fmt: str) -> None:
    if not source.is_file():
        raise SourceError(f"{source}: expected a .{fmt} file")
    if source.suffix.lower() != f".{fmt}":
        raise SourceError(f"{source}: expected a file ending in .{fmt}")
    text_key = build.options.text_column or "text"
    root = source.parent
    for n, (where, row) in enumerate(_read_records(source)):
        if n == 0 and fmt == "csv" and ("audio" not in row or text_key not in row):
            missing = [c for c in ("audio", text_key) if c not in row]
            raise SourceError(f"{source}:1: missing column(s) {', '.join(missing)} (columns: {', '.join(row)})")
        audio = row.get("audio")
        src = root / str(audio) if audio not in (None, "") else None
        derived = PurePosixPath(str(audio).replace("\\", "/")).stem if src is not None else f"{source.stem}-{n + 1}"
        extra = _scalar_extras(row, {"audio", "id", "speaker", text_key})
        if "segments" in row:  # a long recording's labelled segments, as ingest reads them (it checks them)
            extra["segments"] = row["segments"]
        build.add(uid=row.get("id"), derived_id=derived or f"{source.stem}-{n + 1}", audio_src=src,
                  dest=_dest_for(src, root) if src is not None else None, text=row.get(text_key),
                  source=f"{fmt}:{where}", speaker=row.get("speaker"), extra=extra)


def _import_jsonl(source: Path, build: _Build) -> None:
    _import_records(source, build, "jsonl")


def _import_json(source: Path, build: _Build) -> None:
    _import_records(source, build, "json")


def _import_csv(source: Path, build: _Build) -> None:
    _import_records(source, build, "csv")
