"""A Kaldi data folder: wav.scp, text, utt2spk and, when present, segments cut from their recordings."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import soundfile as sf

from zhasr.data.importers.common import SourceError, _Build, _lines, _safe_name

KALDI_MAX_OVERSHOOT_S = 0.5  # s a segment may run past its recording's end unreported (Kaldi extract-segments default)


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
