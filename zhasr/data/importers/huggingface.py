"""Hugging Face datasets: a save_to_disk folder (hf-disk) and an audiofolder (metadata.csv/jsonl beside audio)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zhasr.data.importers.common import (
    AUDIO_SUFFIXES,
    SPEAKER_COLUMNS,
    SPLIT_DIRS,
    TEXT_COLUMNS,
    SourceError,
    _Build,
    _dest_for,
    _safe_name,
    _scalar_extras,
)
from zhasr.data.importers.records import _read_records

_MAGIC = ((b"RIFF", ".wav"), (b"RF64", ".wav"), (b"fLaC", ".flac"), (b"ID3", ".mp3"), (b"FORM", ".aiff"),
          (b"caff", ".caf"), (b".snd", ".au"), (b"NIST_1A", ".sph"), (b"#!AMR", ".amr"), (b"\x1aE\xdf\xa3", ".webm"))


def _audio_suffix(data: bytes, name: str | None) -> str:
    """File extension for encoded audio bytes: the original name's, else one read from the magic number."""
    suffix = Path(name).suffix.lower() if name else ""
    if suffix in AUDIO_SUFFIXES:
        return suffix
    if data[:4] == b"OggS":
        return ".opus" if b"OpusHead" in data[:64] else ".ogg"
    if data[4:8] == b"ftyp":
        return ".m4a"
    if len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:  # MPEG audio frame sync
        return ".mp3"
    return next((ext for magic, ext in _MAGIC if data.startswith(magic)), ".bin")


def _import_hf_disk(source: Path, build: _Build) -> None:
    import datasets  # heavy import, needed by this format only

    try:
        loaded = datasets.load_from_disk(str(source))
    except FileNotFoundError as exc:
        raise SourceError(f"{source}: not a dataset written by save_to_disk ({exc})") from exc
    split = build.options.hf_split
    if isinstance(loaded, datasets.DatasetDict):
        if split is not None and split not in loaded:
            raise SourceError(f"{source}: no split {split!r} (splits: {', '.join(loaded)})")
        parts = [(s, loaded[s]) for s in ([split] if split is not None else list(loaded))]
        record_split = True
    else:
        if split is not None:
            raise SourceError(f"{source}: hf_split={split!r} given, but this is a single Dataset, not a DatasetDict")
        parts = [(str(loaded.split) if loaded.split else "", loaded)]
        record_split = False
    for name, ds in parts:
        where = f"{source} ({name})" if name else str(source)
        audio_col = _hf_audio_column(ds, where)
        text_col = _pick_column(list(ds.column_names), build.options.text_column, TEXT_COLUMNS, where, "text")
        speaker_col = next((c for c in SPEAKER_COLUMNS if c in ds.column_names), None)
        ds = ds.cast_column(audio_col, datasets.Audio(decode=False))  # {"path", "bytes"}: no decoder needed
        for index, example in enumerate(ds):
            _add_hf_row(build, source, name, index, example, audio_col, text_col, speaker_col, record_split)


def _hf_audio_column(ds: Any, where: str) -> str:
    import datasets

    if "audio" in ds.column_names:
        return "audio"
    audio_cols = [c for c, f in ds.features.items() if isinstance(f, datasets.Audio)]
    if len(audio_cols) != 1:
        raise SourceError(
            f"{where}: expected an 'audio' column or one Audio column (columns: {', '.join(ds.column_names)})")
    return audio_cols[0]


def _pick_column(columns: list[str], chosen: str | None, defaults: tuple[str, ...], where: str, what: str) -> str:
    if chosen is not None:
        if chosen not in columns:
            raise SourceError(f"{where}: no {what} column {chosen!r} (columns: {', '.join(columns)})")
        return chosen
    found = next((c for c in defaults if c in columns), None)
    if found is None:
        raise SourceError(f"{where}: no {what} column; expected one of {', '.join(defaults)} "
                          f"(columns: {', '.join(columns)}); name it with text_column")
    return found


def _add_hf_row(
    build: _Build, source: Path, split: str, index: int, example: dict[str, Any], audio_col: str, text_col: str,
    speaker_col: str | None, record_split: bool,
) -> None:
    entry = example.get(audio_col) or {}
    path, data = entry.get("path"), entry.get("bytes")
    uid = example.get("id")
    derived = Path(path).stem if path else f"{split or 'row'}-{index}"
    row_id = str(uid) if uid not in (None, "") else build.unique_id(derived)
    folder = f"audio/{_safe_name(split)}" if split else "audio"
    extra = _scalar_extras(example, {audio_col, text_col, "id"} | ({speaker_col} if speaker_col else set()))
    if record_split:
        extra["orig_split"] = split
    common = dict(uid=row_id, derived_id=derived, text=example.get(text_col),
                  source=f"hf-disk:{split}/{index}" if split else f"hf-disk:{index}",
                  speaker=example.get(speaker_col) if speaker_col else None, extra=extra)
    if data:
        dest = build.claim(f"{folder}/{_safe_name(row_id)}{_audio_suffix(data, path)}", f"bytes:{split}/{index}")
        build.target(dest).write_bytes(data)
        build.add(audio_src=None, dest=dest, **common)
    elif path:
        src = Path(path) if Path(path).is_absolute() else source / path
        suffix = src.suffix or ".bin"
        build.add(audio_src=src, dest=f"{folder}/{_safe_name(row_id)}{suffix}", **common)
    else:
        build.add(audio_src=None, dest=None, **common)


def _import_audiofolder(source: Path, build: _Build) -> None:
    if not source.is_dir():
        raise SourceError(f"{source}: expected an audiofolder directory")
    metadata = sorted(p for p in source.rglob("metadata.*") if p.suffix in (".csv", ".jsonl") and p.is_file())
    if not metadata:
        raise SourceError(f"{source}: no metadata.csv or metadata.jsonl found")
    folders = [m.parent for m in metadata]
    clash = next((f for f in folders if folders.count(f) > 1), None)
    if clash is not None:
        raise SourceError(f"{clash}: both metadata.csv and metadata.jsonl; keep one")
    labelled: set[str] = set()
    for meta in metadata:
        rel_parts = meta.parent.relative_to(source).parts
        split = rel_parts[0] if rel_parts and rel_parts[0] in SPLIT_DIRS else None
        records = list(_read_records(meta))
        if not records:
            continue
        columns = list(records[0][1])
        if meta.suffix == ".csv" and "file_name" not in columns:
            raise SourceError(f"{meta}:1: missing column file_name (columns: {', '.join(columns)})")
        text_col = _pick_column(columns, build.options.text_column, TEXT_COLUMNS, str(meta), "text")
        speaker_col = next((c for c in SPEAKER_COLUMNS if c in columns), None)
        for n, (where, row) in enumerate(records):
            name = row.get("file_name")
            src = meta.parent / str(name) if name not in (None, "") else None
            if src is not None:
                labelled.add(os.path.normpath(os.path.abspath(src)))
            extra = _scalar_extras(row, {"file_name", "id", text_col} | ({speaker_col} if speaker_col else set()))
            if split:
                extra["orig_split"] = split
            build.add(uid=row.get("id"), derived_id=Path(str(name)).stem if src else f"{meta.stem}-{n + 1}",
                      audio_src=src, dest=_dest_for(src, source) if src is not None else None,
                      text=row.get(text_col), source=f"audiofolder:{(meta.parent.relative_to(source) / where).as_posix()}",
                      speaker=row.get(speaker_col) if speaker_col else None, extra=extra)
    for path in sorted(source.rglob("*")):
        labelled_here = os.path.normpath(os.path.abspath(path)) in labelled
        if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file() and not labelled_here:
            build.skip(str(path.relative_to(source)), "audio file without a metadata row")
