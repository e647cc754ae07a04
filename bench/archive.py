"""Bulk transcription speed: audio hours per wall-clock hour of ``zhasr transcribe-archive`` with 1 and 2
local Dask workers, beside ``zhasr transcribe`` (one process) over the same files; each a fresh process
and a fresh output folder, so start-up, model loading and writing count.

    .venv/bin/python bench/archive.py                 # 12 generated two-channel 8 kHz calls, whisper-base
    .venv/bin/python bench/archive.py --calls 40 --model models/candidate
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zhasr.config import SynthParams  # noqa: E402
from zhasr.data.synth import synthesize_batch  # noqa: E402
from zhasr.data.synth.call import write_call  # noqa: E402


def make_calls(root: Path, n_calls: int) -> list[Path]:
    """Two-channel 8 kHz mu-law calls of 8 turns, two generated voices each."""
    options = SynthParams(batch="clips", n_clips=8 * n_calls, n_speakers=2 * n_calls, clips_per_call=4, seed=21,
                          telephone_fraction=1.0)
    batch = synthesize_batch(root / "synth", options, progress=lambda done, total: None)
    by_call: dict[str, list] = {}
    for line in (batch / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        by_call.setdefault(row["call_id"], []).append((sf.read(batch / row["audio"], dtype="float32")[0], row["text"],
                                                       row["id"]))
    groups = list(by_call.values())
    return [write_call(root / "calls", [c for pair in zip(groups[k], groups[k + 1]) for c in pair], 8000,
                       name=f"call{k // 2:03d}", seed=k)[0] for k in range(0, len(groups) - 1, 2)]


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "whisper-base")
    parser.add_argument("--shard-calls", type=int, default=2)
    args = parser.parse_args()
    from zhasr.model.ct2_import import ensure_packaged_base_model

    if args.model == REPO / "models" / "whisper-base":
        ensure_packaged_base_model(args.model)
    root = Path(tempfile.mkdtemp(prefix="zhasr-archive-bench-"))
    calls = make_calls(root, args.calls)
    audio_s = sum(sf.info(c).duration for c in calls)
    (root / "params.yaml").write_text("{}\n")
    env = {**os.environ, "ZHASR_ROOT": str(root), "PYTHONPATH": str(REPO)}
    zhasr = [sys.executable, "-m", "cli"]
    rows = [("zhasr transcribe (one process)",
             timed([*zhasr, "transcribe", *map(str, calls), "--model", str(args.model), "--channels", "split",
                    "--format", "verbose_json", "--out", str(root / "out-transcribe")], env))]
    for workers in (1, 2):
        sets = ["--set", f"archive.workers={workers}", "--set", f"archive.shard_calls={args.shard_calls}",
                "--set", f"archive.out=out-archive-{workers}"]
        command = [*zhasr, "transcribe-archive", str(root / "calls"), "--model", str(args.model), *sets]
        rows.append((f"transcribe-archive, {workers} Dask worker{'s' if workers > 1 else ''}", timed(command, env)))
    rerun = timed([*zhasr, "transcribe-archive", str(root / "calls"), "--model", str(args.model), "--set",
                   "archive.workers=2", "--set", "archive.out=out-archive-2"], env)
    print(f"\n{len(calls)} calls, {audio_s / 60:.1f} min of two-channel 8 kHz audio, {os.cpu_count()} cores, "
          f"model {args.model.name}\n")
    print("| system | wall s | audio hours / hour |")
    print("|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {audio_s / seconds:.2f} |")
    print(f"| transcribe-archive rerun, all skipped | {rerun:.1f} | - |")


if __name__ == "__main__":
    main()
