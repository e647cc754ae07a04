"""Importers: common speech dataset layouts turned into an incoming batch.

Every importer writes the one form that ingest reads::

    <incoming>/<batch>/manifest.jsonl   {"id", "audio", "text", "speaker"?, "language", "source", ...}
    <incoming>/<batch>/audio/...         the audio files, in their original format
    <incoming>/<batch>/import.json       format, source folder, options and the counts below

Formats (``FORMATS``)::

    jsonl         one JSON object per line: {audio, text} + optional id/speaker/call_id/language/...
    json          a JSON list of such objects
    csv           the same as columns, header row, UTF-8 (a BOM is accepted)
    aishell       AISHELL-1: transcript/aishell_transcript_v0.8.txt + wav/{train,dev,test}/<spk>/<utt>.wav
    kaldi         data dir: wav.scp, text, optional utt2spk and segments
    commonvoice   Common Voice release: <cv_split>.tsv + clips/*.mp3
    hf-disk       a Hugging Face Dataset or DatasetDict written with save_to_disk
    audiofolder   Hugging Face audiofolder: audio files + metadata.csv / metadata.jsonl (file_name column)

Audio is linked or copied as is (hardlink when source and batch share a
filesystem and ``ImportOptions.link`` is on, else a copy); ingest does the
decoding. Two exceptions write new files: Kaldi ``segments`` are cut from their
recording into WAV files (same sample format for PCM and float sources, 32-bit
float for compressed ones, all channels kept), and Hugging Face audio stored
as bytes is written to a file whose extension comes from the original path or,
without one, from the bytes' magic number. A batch file is named after its
source path where the source gives one (``audio/clips/a.wav``); paths outside
the source folder go to ``audio/external/<hash>/<name>``.

Every row has an ``id`` (the source's utterance id, else derived from the
audio file name, made unique with ``-2``, ``-3``... suffixes), the raw label in
``text`` (never normalized here: AISHELL's word spaces stay), ``language``
(from the row, else ``ImportOptions.language``) and ``source`` naming where it
came from (``aishell:BAC009S0002W0122``, ``csv:meta.csv:7``). Source columns
beyond the standard ones are kept when they are scalars; a source column that
collides with a standard key is dropped, except ``source``, kept as
``orig_source``.

Error policy:

- Malformed source input stops the import with ``SourceError`` (a
  ``ValueError``) naming the file and the line, row or item: a line that does
  not parse, a missing required file or column, a duplicate key in a Kaldi or
  AISHELL index file, an unsupported ``wav.scp`` entry (a command pipe, an
  archive offset), a segment whose times are not numbers or are out of order.
- A problem with one utterance does not stop the import. Its row is written,
  so that ingest and validation quarantine it with a reason and nothing is lost
  silently, and ``ImportResult.warnings`` gets ``(id, reason)``. This covers an
  audio file that does not exist or cannot be read (the row's ``audio`` then
  names the batch path the file would have had, which does not exist), a row
  with no audio path (``audio/missing/<id>``), a row with empty text (written
  with ``text: ""``), an id used twice (validation keeps the first), and a
  segment past the end of its recording.
- Entries that have no utterance to write are left out and listed in
  ``ImportResult.skipped`` as ``(id, reason)``: audio files that no transcript
  or metadata row labels, Kaldi segments without a ``text`` line, and AISHELL
  transcript lines without audio (AISHELL's transcript file covers all three
  splits of the corpus, so a partial copy would otherwise flood quarantine).

The batch is built in a hidden staging folder under ``incoming`` (two levels
deep, so that ingest's ``*/manifest.jsonl`` glob never sees half a batch) and
renamed into place when complete: a failed import leaves no batch folder. An
existing batch is never overwritten (``FileExistsError``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import posixpath
import re
import shlex
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

import soundfile as sf

FORMATS = frozenset({"jsonl", "json", "csv", "aishell", "kaldi", "commonvoice", "hf-disk", "audiofolder"})

STANDARD_KEYS = ("id", "audio", "text", "speaker", "call_id", "language", "source")
TEXT_COLUMNS = ("sentence", "text", "transcription", "transcript")  # hf-disk / audiofolder label column, first found
SPEAKER_COLUMNS = ("speaker_id", "client_id", "speaker")  # hf-disk / audiofolder speaker column, first found
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".aiff", ".aif",
                            ".au", ".caf", ".sph", ".webm", ".amr", ".w64", ".rf64"})
SPLIT_DIRS = ("train", "dev", "validation", "valid", "test", "eval")  # folder names audiofolder reads as splits
AISHELL_SPLITS = ("train", "dev", "test")
KALDI_MAX_OVERSHOOT_S = 0.5  # s a segment may run past its recording's end unreported (Kaldi extract-segments default)


class SourceError(ValueError):
    """Malformed source dataset; the message names the file and the line, row or item."""


@dataclass(frozen=True)
class ImportOptions:
    language: str = "zh"  # Whisper language code written to rows whose source gives none
    cv_split: str = "validated"  # commonvoice: the <cv_split>.tsv to read (train, dev, test, validated, other...)
    hf_split: str | None = None  # hf-disk: the DatasetDict split to import; None imports every split
    # Label column; None = "text" for jsonl/json/csv, the first of TEXT_COLUMNS for hf-disk and audiofolder.
    text_column: str | None = None
    link: bool = True  # hardlink audio when on the same filesystem (falls back to a copy); False always copies
    split: str | None = None  # stamped on every row; "regression" makes an evaluation-only set


@dataclass(frozen=True)
class ImportResult:
    batch_dir: Path  # the new <incoming>/<batch> folder
    rows: int  # lines written to manifest.jsonl
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason): entries with no row written
    # (id, reason): rows written all the same, for ingest or validation to quarantine
    warnings: list[tuple[str, str]] = field(default_factory=list)


def import_dataset(
    fmt: str, source: Path, incoming: Path, batch: str, options: ImportOptions = ImportOptions(),
) -> ImportResult:
    """Import the dataset at ``source`` (a file for jsonl/json/csv, else a folder) as ``<incoming>/<batch>``.

    Raises ``FileExistsError`` when the batch exists, ``FileNotFoundError`` when
    ``source`` does not, ``SourceError`` for malformed source input and
    ``ValueError`` for an unknown format or a batch name that is not a plain
    folder name. See the module docstring for what becomes a row.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown import format {fmt!r}; expected one of {', '.join(sorted(FORMATS))}")
    if not batch or batch.startswith(".") or "/" in batch or "\\" in batch or batch != batch.strip():
        raise ValueError(f"batch name {batch!r}: expected a plain folder name (no '/', not starting with '.')")
    source, incoming = Path(source), Path(incoming)
    if not source.exists():
        raise FileNotFoundError(f"{source}: import source not found")
    target = incoming / batch
    if target.exists():
        raise FileExistsError(f"{target}: batch already exists; re-import is refused "
                              "(remove it or choose another batch name)")
    incoming.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{batch}.importing-", dir=incoming))
    try:
        work = staging / batch
        work.mkdir()
        build = _Build(work, options)
        _IMPORTERS[fmt](source, build)
        _write_manifest(work / "manifest.jsonl", build.rows)
        (work / "import.json").write_text(json.dumps({
            "format": fmt, "source": str(source.absolute()), "options": asdict(options), "rows": len(build.rows),
            "skipped": build.skipped, "warnings": build.warnings,
        }, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        if target.exists():  # created by someone else while this import ran
            raise FileExistsError(f"{target}: batch already exists; re-import is refused")
        try:
            work.rename(target)
        except OSError as exc:
            raise FileExistsError(f"{target}: cannot move the batch into place ({exc})") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ImportResult(batch_dir=target, rows=len(build.rows), skipped=build.skipped, warnings=build.warnings)


# -- the batch being built ---------------------------------------------------------------------------------------


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
        if not text.strip():
            problems.append("no text")
        row: dict[str, Any] = {"id": row_id, "audio": dest, "text": text}
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


# -- record files: jsonl, json, csv (also audiofolder metadata) ----------------------------------------------------


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
        build.add(uid=row.get("id"), derived_id=derived or f"{source.stem}-{n + 1}", audio_src=src,
                  dest=_dest_for(src, root) if src is not None else None, text=row.get(text_key),
                  source=f"{fmt}:{where}", speaker=row.get("speaker"), extra=extra)


def _import_jsonl(source: Path, build: _Build) -> None:
    _import_records(source, build, "jsonl")


def _import_json(source: Path, build: _Build) -> None:
    _import_records(source, build, "json")


def _import_csv(source: Path, build: _Build) -> None:
    _import_records(source, build, "csv")


# -- AISHELL-1 -----------------------------------------------------------------------------------------------------


def _import_aishell(source: Path, build: _Build) -> None:
    root = source
    if not (source / "transcript").is_dir() and (source / "data_aishell").is_dir():
        root = source / "data_aishell"  # the folder the archive unpacks into
    transcript = root / "transcript" / "aishell_transcript_v0.8.txt"
    if not transcript.is_file():
        candidates = sorted((root / "transcript").glob("*.txt")) if (root / "transcript").is_dir() else []
        if len(candidates) != 1:
            raise SourceError(f"{transcript}: AISHELL transcript not found "
                              "(expected transcript/aishell_transcript_v0.8.txt)")
        transcript = candidates[0]
    wav_root = root / "wav"
    if not wav_root.is_dir():
        raise SourceError(f"{wav_root}: AISHELL audio folder not found "
                          "(expected wav/{train,dev,test}/<speaker>/<utt>.wav)")
    if not any((wav_root / s).is_dir() for s in AISHELL_SPLITS):
        archives = sorted(p.name for p in wav_root.glob("*.tar.gz"))
        hint = f"; extract the speaker archives first ({archives[0]}...)" if archives else ""
        raise SourceError(f"{wav_root}: no train/, dev/ or test/ folder{hint}")

    labels: dict[str, tuple[int, str]] = {}
    for line_no, line in enumerate(_lines(transcript), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        uid = parts[0]
        if uid in labels:
            raise SourceError(f"{transcript}:{line_no}: utterance {uid} already on line {labels[uid][0]}")
        labels[uid] = (line_no, parts[1].strip() if len(parts) > 1 else "")

    seen: dict[str, Path] = {}
    for split in AISHELL_SPLITS:
        for wav in sorted((wav_root / split).glob("*/*.wav")):
            uid = wav.stem
            if uid in seen:
                raise SourceError(f"{wav}: utterance {uid} also at {seen[uid]}")
            seen[uid] = wav
            if uid not in labels:
                build.skip(uid, f"audio without transcript line: {wav}")
                continue
            build.add(uid=uid, derived_id=uid, audio_src=wav, dest=_dest_for(wav, wav_root), text=labels[uid][1],
                      source=f"aishell:{uid}", speaker=wav.parent.name, extra={"orig_split": split})
    for uid, (line_no, _) in labels.items():
        if uid not in seen:
            build.skip(uid, f"transcript without audio ({transcript.name}:{line_no})")


# -- Kaldi data dir ------------------------------------------------------------------------------------------------


def _read_kaldi_table(path: Path, expected: str, min_fields: int = 2) -> dict[str, tuple[int, str]]:
    """``{key: (line_no, rest of line)}``; lines with fewer fields than ``min_fields`` raise naming ``expected``."""
    table: dict[str, tuple[int, str]] = {}
    for line_no, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) < min_fields:
            raise SourceError(f"{path}:{line_no}: expected {expected!r}")
        key = parts[0]
        if key in table:
            raise SourceError(f"{path}:{line_no}: {key} already on line {table[key][0]}")
        table[key] = (line_no, parts[1].strip() if len(parts) > 1 else "")
    return table


def _kaldi_wav_path(scp: Path, line_no: int, value: str) -> str:
    """The file named by a wav.scp value; pipes (other than ``cat <file> |``), stdin and ark offsets raise."""
    if value.endswith("|"):
        try:
            command = shlex.split(value[:-1])
        except ValueError:
            command = []
        if len(command) == 2 and command[0] == "cat":
            return command[1]
        raise SourceError(
            f"{scp}:{line_no}: piped command {value!r} is not supported; "
            "write the audio to files and list '<recording-id> <path>'")
    if value == "-" or value.startswith("|"):
        raise SourceError(f"{scp}:{line_no}: {value!r} is not supported; expected '<recording-id> <path>'")
    if re.search(r"\.ark:\d+$", value):
        raise SourceError(f"{scp}:{line_no}: archive offset {value!r} is not supported; expected '<recording-id> <path>'")
    return value


def _kaldi_resolve(data_dir: Path, value: str) -> Path:
    """Relative wav.scp paths: the data dir, else its parent, else its grandparent (recipes write them from s5/)."""
    path = Path(value)
    if path.is_absolute():
        return path
    candidates = [data_dir / path, data_dir.parent / path, data_dir.parent.parent / path]
    return next((c for c in candidates if c.is_file()), candidates[0])


def _import_kaldi(source: Path, build: _Build) -> None:
    scp_path, text_path = source / "wav.scp", source / "text"
    for required in (scp_path, text_path):
        if not required.is_file():
            raise SourceError(f"{required}: Kaldi data dir file not found")
    scp = _read_kaldi_table(scp_path, "<recording-id> <path>")
    recordings = {rec: _kaldi_resolve(source, _kaldi_wav_path(scp_path, line_no, value))
                  for rec, (line_no, value) in scp.items()}
    texts = _read_kaldi_table(text_path, "<utterance-id> <text>", min_fields=1)
    speakers: dict[str, str] = {}
    if (source / "utt2spk").is_file():
        speakers = {u: v for u, (_, v) in _read_kaldi_table(source / "utt2spk", "<utterance-id> <speaker-id>").items()}
    segments_path = source / "segments"
    if not segments_path.is_file():
        for uid, (line_no, text) in texts.items():
            src = recordings.get(uid)
            ext = src.suffix if src is not None and src.suffix else ".wav"
            build.add(uid=uid, derived_id=uid, audio_src=src, dest=f"audio/{_safe_name(uid)}{ext}" if src else None,
                      text=text, source=f"kaldi:{uid}", speaker=speakers.get(uid),
                      audio_problem=None if src else f"recording {uid} not in wav.scp")
        for rec in recordings:
            if rec not in texts:
                build.skip(rec, "recording without a line in text")
        return

    segments: dict[str, tuple[str, float, float]] = {}
    for uid, (line_no, rest) in _read_kaldi_table(segments_path, "<utterance-id> <recording-id> <start_s> <end_s>").items():
        fields = rest.split()
        where = f"{segments_path}:{line_no}"
        if len(fields) != 3:
            raise SourceError(f"{where}: expected '<utterance-id> <recording-id> <start_s> <end_s>'")
        try:
            start, end = float(fields[1]), float(fields[2])
        except ValueError as exc:
            raise SourceError(
                f"{where}: start and end must be numbers of seconds, got {fields[1]!r} {fields[2]!r}") from exc
        if start < 0 or (end != -1 and end <= start):
            raise SourceError(f"{where}: expected 0 <= start < end (or end -1 for the recording's end), got {start} {end}")
        segments[uid] = (fields[0], start, end)

    cuts = _cut_segments(build, segments, recordings, texts)
    for uid, (line_no, text) in texts.items():
        if uid not in segments:
            build.add(uid=uid, derived_id=uid, audio_src=None, dest=None, text=text, source=f"kaldi:{uid}",
                      speaker=speakers.get(uid), audio_problem="utterance without a line in segments")
            continue
        rec, start, end = segments[uid]
        dest, problem = cuts[uid]
        build.add(uid=uid, derived_id=uid, audio_src=None, dest=dest, text=text, source=f"kaldi:{uid}",
                  speaker=speakers.get(uid), audio_problem=problem,
                  extra={"recording_id": rec, "start_s": start, "end_s": end})
    for uid in segments:
        if uid not in texts:
            build.skip(uid, "segment without a line in text")


def _cut_segments(
    build: _Build, segments: dict[str, tuple[str, float, float]], recordings: dict[str, Path],
    texts: dict[str, tuple[int, str]],
) -> dict[str, tuple[str, str | None]]:
    """Write each labelled segment as ``audio/<rec>/<utt>.wav``; ``{utt: (dest, problem or None)}``."""
    by_rec: dict[str, list[str]] = {}
    for uid, (rec, _, _) in segments.items():
        if uid in texts:
            by_rec.setdefault(rec, []).append(uid)
    out: dict[str, tuple[str, str | None]] = {}
    for rec, uids in by_rec.items():
        dests = {u: build.claim(f"audio/{_safe_name(rec)}/{_safe_name(u)}.wav", f"segment:{u}") for u in uids}
        src = recordings.get(rec)
        if src is None:
            out.update({u: (dests[u], f"recording {rec} not in wav.scp") for u in uids})
            continue
        try:
            with sf.SoundFile(src) as f:
                rate, frames, subtype = f.samplerate, f.frames, f.subtype
                if subtype in ("FLOAT", "DOUBLE"):
                    dtype, out_subtype = "float64", subtype
                elif sf.check_format("WAV", subtype) and (subtype.startswith("PCM") or subtype in ("ULAW", "ALAW")):
                    dtype, out_subtype = "int32", subtype  # integer samples: the cut is bit-exact
                else:
                    dtype, out_subtype = "float32", "FLOAT"  # lossy or exotic source: keep the decoded values
                for u in uids:
                    _, start, end = segments[u]
                    first = round(start * rate)
                    stop = frames if end == -1 else round(end * rate)
                    if first >= frames:
                        out[u] = (dests[u], f"segment starts at {start} s, after the end of {src} ({frames / rate:.3f} s)")
                        continue
                    problem = None
                    if stop - frames > KALDI_MAX_OVERSHOOT_S * rate:
                        problem = f"segment ends at {end} s, past the end of {src} ({frames / rate:.3f} s); cut short"
                    f.seek(first)
                    data = f.read(min(stop, frames) - first, dtype=dtype, always_2d=True)
                    sf.write(build.target(dests[u]), data, rate, subtype=out_subtype, format="WAV")
                    out[u] = (dests[u], problem)
        except (RuntimeError, OSError) as exc:  # soundfile.LibsndfileError is a RuntimeError
            reason = f"audio file not found: {src}" if not src.is_file() else f"cannot read recording {src}: {exc}"
            for u in uids:
                if u not in out:
                    (build.work / dests[u]).unlink(missing_ok=True)
                    out[u] = (dests[u], reason)
    return out


# -- Common Voice --------------------------------------------------------------------------------------------------


def _import_commonvoice(source: Path, build: _Build) -> None:
    tsv = source / f"{build.options.cv_split}.tsv"
    if not tsv.is_file():
        found = ", ".join(sorted(p.stem for p in source.glob("*.tsv"))) or "none"
        raise SourceError(f"{tsv}: Common Voice split not found (splits here: {found})")
    clips = source / "clips"
    # Sentences hold quotes; Common Voice writes them unescaped, so no quoting.
    reader = csv.reader(io.StringIO(_decode_utf8(tsv), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None) or []
    missing = [c for c in ("client_id", "path", "sentence") if c not in header]
    if missing:
        raise SourceError(f"{tsv}:1: missing column(s) {', '.join(missing)} (columns: {', '.join(header)})")
    for _, row in _csv_records(reader, header, tsv):
        name = row["path"].strip()
        if not name:
            src = None
        else:
            src = clips / name
            if not src.is_file() and not src.suffix and (clips / f"{name}.mp3").is_file():
                src = clips / f"{name}.mp3"  # the earliest releases list clip names without the extension
        extra = {k: v for k, v in row.items() if k not in ("client_id", "path", "sentence") and v != ""}
        build.add(uid=Path(name).stem if name else None, derived_id=f"{tsv.stem}-{reader.line_num}",
                  audio_src=src, dest=_dest_for(src, source) if src is not None else None, text=row["sentence"],
                  source=f"commonvoice:{tsv.name}:{reader.line_num}", speaker=row["client_id"], extra=extra)


# -- Hugging Face save_to_disk -------------------------------------------------------------------------------------


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


# -- Hugging Face audiofolder --------------------------------------------------------------------------------------


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


_IMPORTERS: dict[str, Callable[[Path, _Build], None]] = {
    "jsonl": _import_jsonl, "json": _import_json, "csv": _import_csv, "aishell": _import_aishell,
    "kaldi": _import_kaldi, "commonvoice": _import_commonvoice, "hf-disk": _import_hf_disk,
    "audiofolder": _import_audiofolder,
}
