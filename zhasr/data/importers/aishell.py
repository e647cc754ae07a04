"""AISHELL-1's layout: transcript/aishell_transcript_v0.8.txt and wav/<split>/<speaker>/<id>.wav."""

from __future__ import annotations

from pathlib import Path

from zhasr.data.importers.common import SourceError, _Build, _dest_for, _lines

AISHELL_SPLITS = ("train", "dev", "test")


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
