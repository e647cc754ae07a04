"""What every importer shares: the options, the result, the errors, the batch being built and the
small readers of text files."""

from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from zhasr.config import ModelParams

FORMATS = frozenset({"jsonl", "json", "csv", "aishell", "kaldi", "commonvoice", "hf-disk", "audiofolder"})
STANDARD_KEYS = ("id", "audio", "text", "speaker", "call_id", "language", "source")
TEXT_COLUMNS = ("sentence", "text", "transcription", "transcript")  # hf-disk / audiofolder label column, first found
SPEAKER_COLUMNS = ("speaker_id", "client_id", "speaker")  # hf-disk / audiofolder speaker column, first found
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".aiff", ".aif",
                            ".au", ".caf", ".sph", ".webm", ".amr", ".w64", ".rf64"})
SPLIT_DIRS = ("train", "dev", "validation", "valid", "test", "eval")  # folder names audiofolder reads as splits


class SourceError(ValueError):
    """A source a user named (a dataset to import, an archive to transcribe) is malformed or names nothing usable;
    the message names the file and the line, row or item."""


@dataclass(frozen=True)
class ImportOptions:
    language: str = ModelParams.language  # Whisper language code written to rows whose source gives none
    cv_split: str = "validated"  # commonvoice: the <cv_split>.tsv to read (train, dev, test, validated, other...)
    hf_split: str | None = None  # hf-disk: the DatasetDict split to import; None imports every split
    # Label column; None = "text" for jsonl/json/csv, the first of TEXT_COLUMNS for hf-disk and audiofolder.
    text_column: str | None = None
    link: bool = True  # hardlink audio when on the same filesystem (falls back to a copy); False always copies
    split: str | None = None  # stamped on every row; "regression" makes an evaluation-only set
    # where a row names no speaker: a regular expression searched in its audio path whose first group is the
    # speaker (r"(thchs30_A\d+)_" makes THCHS-30's A2_0 ... A2_10 one speaker); None: the batch and path
    speaker_pattern: str | None = None


@dataclass(frozen=True)
class ImportResult:
    batch_dir: Path  # the new <incoming>/<batch> folder
    rows: int  # lines written to manifest.jsonl
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason): entries with no row written
    # (id, reason): rows written all the same, for ingest or validation to quarantine
    warnings: list[tuple[str, str]] = field(default_factory=list)


class _Build:
    """Rows, reports and placed files of one import, inside the staging folder ``work``."""

    def __init__(self, work: Path, options: ImportOptions):
        self.work = work
        self.options = options
        self.rows: list[dict[str, Any]] = []
        self.skipped: list[tuple[str, str]] = []
        self.warnings: list[tuple[str, str]] = []
        self._ids: set[str] = set()
        self._dest_owner: dict[str, str] = {}  # batch-relative audio path -> key of what claimed it

    def unique_id(self, wanted: str) -> str:
        """A derived id not used yet: ``wanted``, else ``wanted-2``, ``wanted-3``..."""
        candidate, n = wanted, 1
        while candidate in self._ids:
            n += 1
            candidate = f"{wanted}-{n}"
        return candidate

    def claim(self, dest: str, key: str) -> str:
        """Reserve the batch path ``dest`` for ``key`` (a source path, a recording...); a clash gets a suffix."""
        candidate, n = dest, 1
        while self._dest_owner.get(candidate, key) != key:
            n += 1
            stem, ext = posixpath.splitext(dest)
            candidate = f"{stem}-{n}{ext}"
        self._dest_owner[candidate] = key
        return candidate

    def target(self, dest: str) -> Path:
        path = self.work / dest
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def place_file(self, src: Path, dest: str) -> str | None:
        """Link or copy ``src`` to the batch path ``dest`` (once per path); the reason when it cannot."""
        path = self.work / dest
        if path.exists():
            return None
        if not src.is_file():
            return f"audio file not found: {src}"
        self.target(dest)
        if self.options.link:
            try:
                os.link(src, path)
                return None
            except OSError:  # another filesystem, or linking not permitted: copy instead
                pass
        try:
            shutil.copyfile(src, path)
        except OSError as exc:
            path.unlink(missing_ok=True)
            return f"cannot copy audio file {src}: {exc.strerror or exc}"
        return None

    def add(
        self, *, uid: str | None, derived_id: str, audio_src: Path | None, dest: str | None, text: Any,
        source: str, speaker: Any = None, extra: dict[str, Any] | None = None, audio_problem: str | None = None,
    ) -> dict[str, Any]:
        """Append one manifest row; ``audio_src`` is linked or copied to ``dest`` unless it is None.

        ``uid`` is the source's own id (None when it has none, then ``derived_id``
        is made unique); ``dest`` None means no audio path is known.
        ``audio_problem`` reports audio that was already handled and failed.
        """
        explicit = uid not in (None, "")
        row_id = str(uid) if explicit else self.unique_id(derived_id)
        problems: list[str] = []
        if explicit and row_id in self._ids:
            problems.append(f"id {row_id!r} used by an earlier row")
        self._ids.add(row_id)
        if dest is None:
            dest = self.claim(f"audio/missing/{_safe_name(row_id)}", f"missing:{row_id}")
            problems.append(audio_problem or "no audio path")
        else:
            if audio_src is not None:
                dest = self.claim(dest, os.path.normpath(os.path.abspath(audio_src)))
                audio_problem = self.place_file(audio_src, dest) or audio_problem
            if audio_problem:
                problems.append(audio_problem)
        text = "" if text is None else str(text)
        if not text.strip() and not (extra or {}).get("segments"):  # segments carry their own texts
            problems.append("no text")
        row: dict[str, Any] = {"id": row_id, "audio": dest, "text": text}
        pattern = self.options.speaker_pattern
        if speaker in (None, "") and pattern and (found := re.search(pattern, dest)):
            speaker = found.group(1)
        if speaker not in (None, ""):
            row["speaker"] = str(speaker)
        for key, value in (extra or {}).items():
            if key == "source":
                row["orig_source"] = value
            elif key not in STANDARD_KEYS:
                row[key] = value
        for key in ("call_id", "language"):
            if (extra or {}).get(key) not in (None, ""):
                row[key] = str(extra[key])
        row.setdefault("language", self.options.language)
        if self.options.split:
            row["split"] = self.options.split
        row["source"] = source
        if problems:  # ingest keeps such a row out of the dataset, with these reasons (audio cut short still decodes)
            row["import_problem"] = "; ".join(problems)
        self.rows.append(row)
        for problem in problems:
            self.warnings.append((row_id, problem))
        return row

    def skip(self, uid: str, reason: str) -> None:
        self.skipped.append((uid, reason))


def _write_manifest(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _safe_name(name: str) -> str:
    """``name`` usable as one path component: separators and control characters replaced, no leading dot."""
    cleaned = re.sub(r"[\\/\x00-\x1f]", "_", str(name)).strip()
    return cleaned if cleaned and not cleaned.startswith(".") else f"_{cleaned}"


def _dest_for(src: Path, root: Path) -> str:
    """Batch path for ``src``: ``audio/<path relative to root>``, or ``audio/external/<hash>/<name>`` outside it."""
    absolute = os.path.normpath(os.path.abspath(src))
    relative = os.path.relpath(absolute, os.path.normpath(os.path.abspath(root)))
    if relative != os.curdir and not relative.startswith(os.pardir + os.sep) and relative != os.pardir:
        parts = [_safe_name(p) for p in Path(relative).parts]
        return str(PurePosixPath("audio", *parts))
    digest = hashlib.sha1(absolute.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return str(PurePosixPath("audio", "external", digest, _safe_name(Path(absolute).name)))


def _scalar_extras(row: dict[str, Any], used: set[str]) -> dict[str, Any]:
    """Columns of ``row`` not in ``used`` whose values are JSON scalars (NaN and infinities become null)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in used or not (value is None or isinstance(value, (str, int, float, bool))):
            continue
        out[key] = None if isinstance(value, float) and not math.isfinite(value) else value
    return out


def _decode_utf8(path: Path) -> str:
    """File text as UTF-8 (a BOM is dropped); invalid bytes raise SourceError naming the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SourceError(f"{path}:{line}: not valid UTF-8") from exc


def _lines(path: Path) -> list[str]:
    """Lines split on LF only (CR stripped): U+2028 and friends may sit inside a label or a JSON string."""
    return [line.removesuffix("\r") for line in _decode_utf8(path).split("\n")]
