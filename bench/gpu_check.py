"""Every GPU path in one run, one table: bf16 LoRA, QLoRA and the Hugging Face recipe on whisper-base
and a whisper-small-sized model, GPTQ quantization and transcription, the engine's ct2 runtime.

    bench/gpu_check.sh                 # on a machine with CUDA; skips elsewhere

Training rows run ``bench/train.py``'s workers (each configuration in its own process, so peak GPU
memory is its own) at the same batch. GPTQ quantizes whisper-base on CUDA with train clips as
calibration and transcribes the test clips with the result; ct2 writes the int8 export and
transcribes the same clips through the engine on CUDA. A check that fails prints its error in the
table and the others still run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train as train_bench  # noqa: E402  (bench/train.py)


def training_rows(root: Path, data: Path, size: str, steps: int, batch: int) -> list[list[str]]:
    model_dir = train_bench.gpu_model(root, size)
    common = ["--steps", str(steps), "--batch-size", str(batch), "--rank", "16", "--targets", "attention",
              "--budget-s", "0", "--model", str(model_dir), "--cached-layers", "0", "--data", str(data)]
    rows = []
    for variant in ("lora", "qlora", "hf-seq2seq"):
        try:
            f = train_bench.run_worker([*common, "--variant", variant])
            rows.append([f"train {variant}", f"whisper-{size}", f"{f['samples_per_s']:.1f} samples/s",
                         f"{f['peak_gpu_gb']:.1f} GB", f"{f['steps']} steps of batch {batch}"])
        except SystemExit as exc:
            rows.append([f"train {variant}", f"whisper-{size}", "failed", "", str(exc)[:80]])
    return rows


def transcription_rows(root: Path, data: Path) -> list[list[str]]:
    from zhasr.config import TranscribeParams
    from zhasr.data.audio import load_16k
    from zhasr.data.manifest import read_jsonl
    from zhasr.evaluation.metrics import character_error_rate
    from zhasr.export.formats import write_export
    from zhasr.model.loading import resolve_base_model
    from zhasr.transcribe import Transcriber

    base = resolve_base_model("packaged:whisper-base", root / "models")
    rows_all = read_jsonl(data / "dataset" / "ingested.jsonl")
    test = [r for r in rows_all if r["split"] == "test"][:24]
    calibration = [(load_16k(data / "dataset" / r["audio"]), r["text_norm"])
                   for r in [r for r in rows_all if r["split"] == "train"][:16]]
    wavs = [data / "dataset" / r["audio"] for r in test]
    audio_s = sum(r["duration_s"] for r in test)
    out = []
    for fmt in ("gptq-4bit", "ct2-int8"):
        try:
            started = time.perf_counter()
            torch.cuda.reset_peak_memory_stats()
            path = write_export(fmt, base, data / "exports", calibration, "zh")
            written = time.perf_counter() - started
            transcriber = Transcriber.open(path, TranscribeParams(), device="cuda")
            started = time.perf_counter()
            texts = [t.text for t in transcriber.transcribe_many(wavs, channels="mix")]
            seconds = time.perf_counter() - started
            cer = character_error_rate([r["text"] for r in test], texts, numbers=True).rate
            out.append([f"{fmt} on CUDA", "whisper-base", f"RTF {seconds / audio_s:.3f}",
                        f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GB",
                        f"written in {written:.0f} s; CER {cer:.1%} on {len(test)} test clips "
                        f"({transcriber.runtime_name} runtime)"])
        except Exception as exc:  # one failing check must not hide the others
            traceback.print_exc()
            out.append([f"{fmt} on CUDA", "whisper-base", "failed", "", f"{type(exc).__name__}: {exc}"[:80]])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--clips", type=int, default=64)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device, nothing to check")
        return
    from zhasr.project import apply_default_env, project_root

    root = project_root()
    apply_default_env(root, "packaged:whisper-base")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train_bench.make_dataset(Path(tmp), args.clips, Path("/nonexistent"))
        table = []
        for size in ("base", "small"):
            table += training_rows(root, Path(tmp), size, args.steps, args.batch_size)
        table += transcription_rows(root, Path(tmp))
    print(f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, {time.perf_counter() - started:.0f} s in all\n")
    print("| check | model | speed | peak GPU memory | notes |")
    print("|---|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
