"""Whole-call transcription speed, memory, CER and turns of each runtime, beside faster-whisper's own pipelines.

    .venv/bin/python bench/transcribe.py [--model models/candidate] [--ct2 models/exports/ct2-int8]
                                         [--ggml models/exports/ggml-model-q8_0.bin] [--calls synthetic real]
                                         [--channels split mix] [--repeat 3]

Two calls, each a two-channel 8 kHz G.711 mu-law WAV written once under data/bench-call/:
- synthetic: 40 synthetic turns (two espeak-ng voices) joined with 0.7-1.5 s pauses (~3.5 minutes);
- real: the 27 real-zh clips (real Mandarin nothing is tuned on) through the telephone band, turn by turn
  on alternating channels (~4.5 minutes; the THCHS-30 speaker's eleven sentences mostly on the left);
- real-alaw, real-amr-nb, real-amr-nb-lossy (on request): the real call transcoded once more.
Each system runs in its own process (peak RSS is that process's), loads its model first (not timed), then
transcribes the call ``--repeat`` times; the fastest is reported (the machine is shared, so the other
runs measure its load, not the code). The reference is the turns' labels in order; CER is on the
normalized whole transcript; a turn is found when the segment overlapping it most starts and ends
within 0.5 s of it, and its role is right when that segment is labelled with the turn's speaker.

Systems: the engine in each runtime (transformers on the merged model, ct2 and ggml on the exports), the
ct2 engine with packing off (``transcribe.pack_pieces=false``: every piece in a window of its own, as
before packing) and with one batch at a time (``transcribe.parallel_batches=false``), faster-whisper's
``BatchedInferencePipeline`` (its VAD and 30 s chunks, batch 8, greedy; as shipped, and with the engine's
malloc settings, zhasr.transcribe.allocator, to tell that gain from the engine's own) and its sequential
``WhisperModel.transcribe`` (VAD filter, greedy with its temperature fallback) on the same ct2 files;
faster-whisper mixes the channels, so it has no roles.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SYSTEMS = ("engine-transformers", "engine-ct2", "engine-ct2-unpacked", "engine-ct2-one-batch", "engine-ggml",
           "faster-whisper-batched", "faster-whisper-batched-one-heap", "faster-whisper-sequential")
ENGINE_OVERRIDES = {"engine-ct2-unpacked": ["transcribe.pack_pieces=false"],
                    "engine-ct2-one-batch": ["transcribe.parallel_batches=false"]}
REAL_ZH = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-zh"


def make_call(folder: Path) -> Path:
    """The synthetic call (written once)."""
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


def make_real_call(folder: Path) -> Path:
    """The real-speech call (written once): real-zh clips band-passed to 8 kHz, THCHS-30's speaker first
    in every pair so that most of their sentences share the left channel."""
    from zhasr.data.audio import load_16k
    from zhasr.data.codecs import narrowband
    from zhasr.data.synth.call import write_call

    wav = folder / "real-call.wav"
    if wav.is_file():
        return wav
    rows = [json.loads(line) for line in (REAL_ZH / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    same = [r for r in rows if r["audio"].startswith("thchs30")]
    others = [r for r in rows if not r["audio"].startswith("thchs30")]
    order = [r for pair in zip(same, others) for r in pair] + others[len(same):]
    clips = [(narrowband(load_16k(REAL_ZH / r["audio"])), r["text"], r["audio"]) for r in order]
    write_call(folder, clips, 8000, name="real-call")
    return wav


def make_real_call_through(codec: str) -> Callable[[Path], Path]:
    """The real-speech call with each channel sent once more through ``codec`` (zhasr.data.codecs: A-law,
    AMR-NB, lossy AMR-NB), as a PBX that transcodes would; written once, turns as the real call's."""

    def make(folder: Path) -> Path:
        import shutil

        import soundfile as sf

        from zhasr.data.codecs import telephone
        from zhasr.transcribe.media import read_call

        wav = folder / f"real-call-{codec}.wav"
        if wav.is_file():
            return wav
        source = make_real_call(folder)
        call = read_call(source, source.name, 14400.0)
        channels = [telephone(call.samples[c], codec)[: call.samples.shape[1]] for c in range(call.channels)]
        sf.write(wav, np.stack(channels).T, 16000, subtype="PCM_16")
        shutil.copy(source.with_suffix(".turns.json"), wav.with_suffix(".turns.json"))
        return wav

    return make


CALLS = {"synthetic": make_call, "real": make_real_call, **{f"real-{c}": make_real_call_through(c)
                                                             for c in ("alaw", "amr-nb", "amr-nb-lossy")}}


def run_one(system: str, args: argparse.Namespace, wav: Path) -> dict:
    """Load, then time ``args.repeat`` transcriptions of ``wav``; the fastest one's text and segments."""
    import dataclasses

    from zhasr.config import load_params

    overrides = list(args.set) + ENGINE_OVERRIDES.get(system, [])
    params = dataclasses.replace(load_params(Path("params.yaml"), overrides).transcribe, threads=args.threads)
    best = None
    if system.startswith("engine-"):
        from zhasr.transcribe import Transcriber

        model = args.model if system == "engine-transformers" else args.ggml if system == "engine-ggml" else args.ct2
        transcriber = Transcriber.open(Path(model), params)
        for _ in range(args.repeat):
            start = time.perf_counter()
            result = transcriber.transcribe(wav, channels=args.channels)
            seconds = time.perf_counter() - start
            if best is None or seconds < best["seconds"]:
                best = {"text": result.text, "seconds": seconds, "duration_s": result.duration_s,
                        "segments": [[s.start, s.end, s.speaker] for s in result.segments],
                        "windows": result.timings.windows, "unplaced": result.timings.unplaced,
                        "looped": sum(bool(s.flags) for s in result.segments)}
        return best
    from faster_whisper import BatchedInferencePipeline, WhisperModel, decode_audio

    if system == "faster-whisper-batched-one-heap":
        from zhasr.transcribe.allocator import keep_freed_memory

        keep_freed_memory()
    model = WhisperModel(args.ct2, device="cpu", compute_type="default", cpu_threads=args.threads, local_files_only=True)
    for _ in range(args.repeat):
        start = time.perf_counter()
        audio = decode_audio(str(wav), sampling_rate=16000)  # its own decoder (PyAV), mixed to mono
        if system.startswith("faster-whisper-batched"):
            segments, _ = BatchedInferencePipeline(model).transcribe(audio, language="zh", batch_size=8, beam_size=1)
        else:
            segments, _ = model.transcribe(audio, language="zh", beam_size=1, vad_filter=True)
        segments = list(segments)
        seconds = time.perf_counter() - start
        if best is None or seconds < best["seconds"]:
            best = {"text": " ".join(s.text for s in segments), "seconds": seconds, "duration_s": len(audio) / 16000,
                    "segments": [[s.start, s.end, ""] for s in segments], "windows": None, "unplaced": None,
                    "looped": None}
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/candidate", help="merged Hugging Face Whisper folder")
    parser.add_argument("--ct2", default="models/exports/ct2-int8")
    parser.add_argument("--ggml", default="models/exports/ggml-model-q8_0.bin")
    parser.add_argument("--folder", default="data/bench-call", help="where the generated calls are kept")
    parser.add_argument("--calls", nargs="*", default=["synthetic", "real"], choices=CALLS)
    parser.add_argument("--channels", default="split", choices=("mix", "split"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="transcriptions per system; the fastest counts")
    parser.add_argument("--systems", nargs="*", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an engine setting, e.g. --set transcribe.min_silence_ms=1600")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # (call, system): run in this process, print JSON
    args = parser.parse_args()
    if args.one:
        call, system = args.one
        line = run_one(system, args, CALLS[call](Path(args.folder)))
        line["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(line, ensure_ascii=False))
        return
    for call in args.calls:
        bench_call(call, args)


def bench_call(call: str, args: argparse.Namespace) -> None:
    from types import SimpleNamespace

    from zhasr.data.text import normalize
    from zhasr.evaluation.metrics import character_error_rate
    from zhasr.evaluation.turns import match_turns

    wav = CALLS[call](Path(args.folder))
    turns = [SimpleNamespace(**t) for t in json.loads(wav.with_suffix(".turns.json").read_text(encoding="utf-8"))]
    reference = normalize("".join(t.text for t in turns))
    rows = {}
    for system in args.systems:
        if system == "engine-ggml" and not Path(args.ggml).is_file():
            print(f"{system}: skipped, no ggml export at {args.ggml}", file=sys.stderr)
            continue
        done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one", call, system], capture_output=True,
                              text=True)
        if done.returncode != 0:
            print(f"{system}: failed: {done.stderr[-1500:]}", file=sys.stderr)
            continue
        line = json.loads(done.stdout.strip().splitlines()[-1])
        line["cer"] = character_error_rate([reference], [normalize(line.pop("text"))]).cer
        segments = [SimpleNamespace(start=a, end=b, speaker=c) for a, b, c in line.pop("segments")]
        line["turns"], line["n_segments"] = match_turns(segments, turns), len(segments)
        rows[system] = line
        print(call, system, line, flush=True)
    duration = next(iter(rows.values()))["duration_s"] if rows else 0
    batched = rows.get("faster-whisper-batched")
    print(f"\n{call} call: {duration / 60:.1f} min, {len(turns)} turns, channels={args.channels}, {args.threads} threads,"
          f" best of {args.repeat}{', ' + ' '.join(args.set) if args.set else ''}\n")
    print("| system | audio s / s | vs faster-whisper batched | CER | turns within 0.5 s | roles right | segments "
          "| windows (decoded again) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for system, r in rows.items():
        speed = r["duration_s"] / r["seconds"]
        ratio = f"{speed / (batched['duration_s'] / batched['seconds']):.2f}" if batched else "-"
        found = r["turns"]
        roles = f"{found.right_speaker}/{found.turns}" if args.channels == "split" and system.startswith("engine") else "-"
        windows = f"{r['windows']} ({r['unplaced']})" if r["windows"] is not None else "-"
        print(f"| {system} | {speed:.1f} | {ratio} | {r['cer']:.2%} | {found.close}/{found.turns} | {roles} | "
              f"{r['n_segments']} | {windows} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
