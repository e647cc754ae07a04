"""The calls of an archive: a folder (read recursively), a glob pattern, or a manifest (JSONL with an
``audio`` key, or one path a line), each call named by its path relative to where it was found."""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from zhasr.data.importers.common import AUDIO_SUFFIXES, SourceError


@dataclass(frozen=True)
class ArchiveCall:
    call_id: str  # path relative to the folder, pattern root or manifest, without its suffix
    path: str  # absolute
    size: int  # bytes
    mtime_ns: int  # with size, tells a changed file from the one hashed before

    @property
    def stat_key(self) -> tuple[str, int, int]:
        return self.path, self.size, self.mtime_ns


def _call(path: Path, root: Path) -> ArchiveCall:
    absolute = path.resolve()
    stat = absolute.stat()
    try:
        relative = absolute.relative_to(root.resolve())
    except ValueError:
        relative = Path(absolute.name)
    return ArchiveCall(str(relative.with_suffix("")), str(absolute), stat.st_size, stat.st_mtime_ns)


def list_calls(source: str | Path) -> list[ArchiveCall]:
    """The calls of ``source``, sorted by call id; SourceError when something named is missing or two calls
    would share an id."""
    text = str(source)
    path = Path(text)
    if any(ch in text for ch in "*?["):
        root = _pattern_root(text)
        calls = [_call(Path(p), root) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
    elif path.is_dir():
        calls = [_call(p, path) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES]
    elif path.is_file():
        calls = _manifest_calls(path)
    else:
        raise SourceError(f"{source}: neither a folder, a glob pattern nor a manifest file")
    shared = sorted(i for i, n in Counter(c.call_id for c in calls).items() if n > 1)
    if shared:
        raise SourceError(f"{source}: calls share an id (a name with two suffixes?): {', '.join(shared[:3])}")
    return sorted(calls, key=lambda c: c.call_id)


def _pattern_root(pattern: str) -> Path:
    """The folders of a glob pattern before its first wildcard."""
    parts = Path(pattern).parts
    first = next(i for i, p in enumerate(parts) if any(ch in p for ch in "*?["))
    return Path(*parts[:first]) if first else Path(os.curdir)


def _manifest_calls(manifest: Path) -> list[ArchiveCall]:
    calls = []
    for line_no, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if manifest.suffix == ".jsonl":
            try:
                entry = json.loads(line)["audio"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise SourceError(f"{manifest}:{line_no}: expected a JSON object with an 'audio' path ({exc})") from exc
        else:
            entry = line.strip()
        audio = (manifest.parent / entry) if not os.path.isabs(entry) else Path(entry)
        if not audio.is_file():
            raise SourceError(f"{manifest}:{line_no}: {entry}: no such file")
        calls.append(_call(audio, manifest.parent))
    return calls


def shards(calls: list[ArchiveCall], size: int) -> list[list[ArchiveCall]]:
    """Consecutive groups of ``size`` calls (the last may be smaller)."""
    return [calls[i: i + size] for i in range(0, len(calls), size)]
