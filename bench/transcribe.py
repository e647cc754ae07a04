"""Whole-call transcription speed, memory and CER of each runtime, beside faster-whisper's own pipelines.

    .venv/bin/python bench/transcribe.py [--model models/candidate] [--ct2 models/exports/ct2-int8]
                                         [--ggml models/exports/ggml-model-q8_0.bin] [--channels mix]

The call: 40 synthetic turns (two voices, 8 kHz telephone band) joined with 0.7-1.5 s pauses into a
two-channel G.711 mu-law WAV of ~3.5 minutes (``zhasr.data.synth.call``), written once under
data/bench-call/. Each system runs in its own process (peak RSS is that process's), loads its model
first (not timed), then transcribes the call once. The reference is the turns' labels in order; CER is
on the normalized whole transcript.

Systems: the engine in each runtime (transformers on the merged model, ct2 and ggml on the exports),
faster-whisper's ``BatchedInferencePipeline`` (its VAD and 30 s chunks, batch 8, greedy) and its
sequential ``WhisperModel.transcribe`` (VAD filter, greedy with its temperature fallback) on the
same ct2 files.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SYSTEMS = ("engine-transformers", "engine-ct2", "engine-ggml", "faster-whisper-batched", "faster-whisper-sequential")


def make_call(folder: Path) -> Path:
    from zhasr.config import SynthParams
    from zhasr.data.synth import synthesize_batch
    from zhasr.data.synth.call import clips_of_batch, write_call

    wav = folder / "call.wav"
    if wav.is_file():
        return wav
    options = SynthParams(batch="call-clips", n_clips=40, n_speakers=2, clips_per_call=20, seed=7, telephone_fraction=1.0,
                           snr_db=[60.0])
    batch = folder / "clips" / "call-clips"
    clips = clips_of_batch(batch if batch.is_dir() else synthesize_batch(folder / "clips", options))
    write_call(folder, [c for pair in zip(clips[:20], clips[20:]) for c in pair], 8000)
    return wav


def run_one(system: str, args: argparse.Namespace, wav: Path) -> dict:
    """Load, then time one transcription of ``wav``; text in timeline order."""
    import dataclasses

    from zhasr.config import load_params

    params = dataclasses.replace(load_params(Path("params.yaml"), args.set).transcribe_settings(), threads=args.threads)
    if system.startswith("engine-"):
        from zhasr.transcribe import Transcriber

        model = {"engine-transformers": args.model, "engine-ct2": args.ct2, "engine-ggml": args.ggml}[system]
        transcriber = Transcriber.open(Path(model), params)
        start = time.perf_counter()
        result = transcriber.transcribe(wav, channels=args.channels)
        seconds = time.perf_counter() - start
        return {"text": result.text, "seconds": seconds, "segments": len(result.segments),
                "looped": sum(bool(s.flags) for s in result.segments), "duration_s": result.duration_s}
    from faster_whisper import BatchedInferencePipeline, WhisperModel, decode_audio

    model = WhisperModel(args.ct2, device="cpu", compute_type="default", cpu_threads=args.threads, local_files_only=True)
    audio = decode_audio(str(wav), sampling_rate=16000)  # its own decoder (PyAV), mixed to mono
    start = time.perf_counter()
    if system == "faster-whisper-batched":
        segments, _ = BatchedInferencePipeline(model).transcribe(audio, language="zh", batch_size=8, beam_size=1)
    else:
        segments, _ = model.transcribe(audio, language="zh", beam_size=1, vad_filter=True)
    segments = list(segments)
    seconds = time.perf_counter() - start
    return {"text": " ".join(s.text for s in segments), "seconds": seconds, "segments": len(segments),
            "looped": None, "duration_s": len(audio) / 16000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/candidate", help="merged Hugging Face Whisper folder")
    parser.add_argument("--ct2", default="models/exports/ct2-int8")
    parser.add_argument("--ggml", default="models/exports/ggml-model-q8_0.bin")
    parser.add_argument("--call", default="data/bench-call", help="folder of the generated call")
    parser.add_argument("--channels", default="mix", choices=("mix", "split"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--systems", nargs="*", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an engine setting, e.g. --set transcribe.min_silence_ms=1600")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one system in this process, print JSON
    args = parser.parse_args()
    wav = make_call(Path(args.call))
    if args.one:
        line = run_one(args.one, args, wav)
        line["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(line, ensure_ascii=False))
        return
    from zhasr.data.text import normalize
    from zhasr.evaluation.metrics import character_error_rate

    turns = json.loads((wav.parent / "call.turns.json").read_text(encoding="utf-8"))
    reference = normalize("".join(t["text"] for t in turns))
    rows = {}
    for system in args.systems:
        done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one", system], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{system}: failed: {done.stderr[-1500:]}", file=sys.stderr)
            continue
        line = json.loads(done.stdout.strip().splitlines()[-1])
        line["cer"] = character_error_rate([reference], [normalize(line.pop("text"))]).cer
        rows[system] = line
        print(system, json.dumps(line), flush=True)
    duration = next(iter(rows.values()))["duration_s"] if rows else 0
    batched = rows.get("faster-whisper-batched")
    print(f"\ncall: {duration / 60:.1f} min, {len(turns)} turns, channels={args.channels}, {args.threads} threads"
          f"{', ' + ' '.join(args.set) if args.set else ''}\n")
    print("| system | audio s / s | vs faster-whisper batched | CER | segments | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for system, r in rows.items():
        speed = r["duration_s"] / r["seconds"]
        ratio = f"{speed / (batched['duration_s'] / batched['seconds']):.2f}" if batched else "-"
        print(f"| {system} | {speed:.1f} | {ratio} | {r['cer']:.2%} | {r['segments']} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
