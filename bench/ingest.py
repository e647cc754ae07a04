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

from zhasr.ingest import IngestOptions, ingest_batches
from zhasr.synth import SynthOptions, synthesize_batch
from zhasr.validate import ValidationOptions, validate_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="ingest decoding threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize_batch(tmp / "incoming", SynthOptions(n_clips=args.clips, n_speakers=40, seed=1), "bench",
                         progress=lambda done, total: None)
        started = time.perf_counter()
        rows = ingest_batches(tmp / "incoming", tmp / "dataset", IngestOptions(workers=args.workers))
        ingest_s = time.perf_counter() - started
        started = time.perf_counter()
        report = validate_rows(rows, ValidationOptions(), docs_dir=tmp / "docs")
        validate_s = time.perf_counter() - started
    audio_s = sum(r["duration_s"] for r in rows)
    total = ingest_s + validate_s
    print(f"{len(rows)} clips, {audio_s / 60:.1f} min of audio (mean {audio_s / len(rows):.1f} s), "
          f"{args.workers} workers: ingest {ingest_s:.1f} s, validate {validate_s:.1f} s "
          f"(GE import included), {len(rows) / total:.0f} clips/s overall, "
          f"{len(report.accepted)} accepted")


if __name__ == "__main__":
    main()
