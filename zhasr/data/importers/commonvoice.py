"""Common Voice's layout: <split>.tsv beside clips/."""

from __future__ import annotations

import csv
import io
from pathlib import Path, PurePosixPath

from zhasr.data.importers.common import SourceError, _Build, _decode_utf8, _dest_for
from zhasr.data.importers.records import _csv_records


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
        name, problem = row["path"].strip(), None
        if not name:
            src = None
        elif PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:  # a release names its clips
            src, problem = None, f"path {name!r} leaves the release's clips folder"
        else:
            src = clips / name
            if not src.is_file() and not src.suffix and (clips / f"{name}.mp3").is_file():
                src = clips / f"{name}.mp3"  # the earliest releases list clip names without the extension
        extra = {k: v for k, v in row.items() if k not in ("client_id", "path", "sentence") and v != ""}
        build.add(uid=Path(name).stem if name else None, derived_id=f"{tsv.stem}-{reader.line_num}",
                  audio_src=src, dest=_dest_for(src, source) if src is not None else None, text=row["sentence"],
                  source=f"commonvoice:{tsv.name}:{reader.line_num}", speaker=row["client_id"], extra=extra,
                  audio_problem=problem)
