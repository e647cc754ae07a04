"""Size, CER and real-time factor of the merged model and of each export, on this machine's CPU.

    .venv/bin/python bench/export.py [--model models/candidate] [--formats ggml-f16 ggml-q8_0 ...]

Uses the project's ingested test split and regression set (run the demo first). The merged model
decodes with transformers (zhasr.model.decode, batch 8); exports decode clip by clip in their runtimes.
gptq-4bit calibrates on --calibration-clips train clips.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tasks.export import transcribe_export
from zhasr.data.audio import load_16k
from zhasr.data.manifest import read_manifest
from zhasr.evaluation.metrics import character_error_rate
from zhasr.export.calibration import calibration_clips
from zhasr.export.formats import EXPORT_FORMATS, size_on_disk, write_export
from zhasr.model.decode import DecodeOptions, transcribe
from zhasr.model.loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/candidate", help="merged Hugging Face Whisper folder")
    parser.add_argument("--dataset", default="data/dataset")
    parser.add_argument("--out", default="models/exports-bench")
    parser.add_argument("--formats", nargs="*", default=list(EXPORT_FORMATS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration-clips", type=int, default=32)
    args = parser.parse_args()
    dataset, model_dir = Path(args.dataset), Path(args.model)
    manifest = read_manifest(dataset / "manifest.jsonl")
    sets = {name: [r for r in manifest if r.split == name] for name in ("test", "regression")}
    audio_s = {name: sum(r.duration_s for r in rows) for name, rows in sets.items()}

    def score(texts: list[str], name: str) -> float:
        return character_error_rate([r.text_norm for r in sets[name]], texts).cer

    calibration = calibration_clips(manifest, dataset, args.calibration_clips) if "gptq-4bit" in args.formats else []
    rows = []
    model, processor = load_model(model_dir)
    line = {"format": "merged fp32 (transformers)", "size_mb": size_on_disk(model_dir / "model.safetensors") / 1e6}
    for name, set_rows in sets.items():
        clips = [load_16k(dataset / r.audio) for r in set_rows]
        start = time.perf_counter()
        texts = [t.text for t in transcribe(model, processor, clips, DecodeOptions())]
        line[f"cer_{name}"], line[f"rtf_{name}"] = score(texts, name), (time.perf_counter() - start) / audio_s[name]
    rows.append(line)
    del model
    for fmt in args.formats:
        start = time.perf_counter()
        path = write_export(fmt, model_dir, Path(args.out), calibration)
        line = {"format": fmt, "size_mb": size_on_disk(path) / 1e6, "write_s": time.perf_counter() - start}
        for name, set_rows in sets.items():
            texts, seconds = transcribe_export(fmt, path, [dataset / r.audio for r in set_rows], "zh", args.threads)
            line[f"cer_{name}"], line[f"rtf_{name}"] = score(texts, name), seconds / audio_s[name]
        rows.append(line)
        print(line, flush=True)
    print(f"\n{len(sets['test'])} test clips ({audio_s['test'] / 60:.1f} min), {len(sets['regression'])} real-zh clips "
          f"({audio_s['regression'] / 60:.1f} min), {args.threads} threads\n")
    print("| format | size (MB) | CER test | CER real-zh | RTF test | RTF real-zh |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['format']} | {r['size_mb']:.0f} | {r['cer_test']:.2%} | {r['cer_regression']:.2%} | "
              f"{r['rtf_test']:.3f} | {r['rtf_regression']:.3f} |")


if __name__ == "__main__":
    main()
