"""Clips per second for ingest plus validation of synthetic call-center clips on this machine.

    .venv/bin/python bench/ingest.py --clips 1000

Synthesizes the batch first (not timed), then times ``ingest_batches`` (decode,
resample to 16 kHz, hash, store, normalize) and ``validate_rows`` (the Great
Expectations suite, Data Docs included), each in a fresh dataset folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from zhasr.config import IngestParams, SynthParams, ValidateParams
from zhasr.data.ingest import ingest_batches
from zhasr.data.synth import synthesize_batch
from zhasr.data.validate import validate_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="ingest decoding threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize_batch(tmp / "incoming", SynthParams(batch="bench", n_clips=args.clips, n_speakers=40, seed=1),
                         progress=lambda done, total: None)
        started = time.perf_counter()
        rows = ingest_batches(tmp / "incoming", tmp / "dataset", IngestParams(test_fraction=0.2, workers=args.workers))
        ingest_s = time.perf_counter() - started
        started = time.perf_counter()
        report = validate_rows(rows, ValidateParams(min_chars_per_s=1.0), docs_dir=tmp / "docs")
        validate_s = time.perf_counter() - started
    audio_s = sum(r["duration_s"] for r in rows)
    total = ingest_s + validate_s
    print(f"{len(rows)} clips, {audio_s / 60:.1f} min of audio (mean {audio_s / len(rows):.1f} s), "
          f"{args.workers} workers: ingest {ingest_s:.1f} s, validate {validate_s:.1f} s "
          f"(GE import included), {len(rows) / total:.0f} clips/s overall, "
          f"{len(report.accepted)} accepted")


if __name__ == "__main__":
    main()
