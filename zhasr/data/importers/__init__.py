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
- A problem with one utterance does not stop the import. Its row is written
  with the reasons in ``import_problem``, so that ingest quarantines it (its
  audio may decode: a segment cut short does) and nothing is lost silently,
  and ``ImportResult.warnings`` gets ``(id, reason)``. This covers an
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

import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from zhasr.data.importers.aishell import _import_aishell
from zhasr.data.importers.common import FORMATS, ImportOptions, ImportResult, SourceError, _Build, _write_manifest
from zhasr.data.importers.commonvoice import _import_commonvoice
from zhasr.data.importers.huggingface import _import_audiofolder, _import_hf_disk
from zhasr.data.importers.kaldi import _import_kaldi
from zhasr.data.importers.records import _import_csv, _import_json, _import_jsonl

__all__ = ["FORMATS", "ImportOptions", "ImportResult", "SourceError", "import_dataset"]


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


_IMPORTERS: dict[str, Callable[[Path, _Build], None]] = {
    "jsonl": _import_jsonl, "json": _import_json, "csv": _import_csv, "aishell": _import_aishell,
    "kaldi": _import_kaldi, "commonvoice": _import_commonvoice, "hf-disk": _import_hf_disk,
    "audiofolder": _import_audiofolder,
}
