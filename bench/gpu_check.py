"""Every GPU path in one run, one table: the engine's full windows in the transformers runtime, bf16 LoRA
(one window a clip and packed), QLoRA and the Hugging Face recipe on a whisper-small-sized model at batch 64,
GPTQ quantization and transcription, the engine's ct2 runtime.

    bench/gpu_check.sh                 # on a machine with CUDA; skips elsewhere
    bench/gpu_check.sh --tokenizer DIR  # random models' tokenizer from DIR, not the whisper-base wheels
    bench/gpu_check.sh --only windows --tokenizer DIR   # where only torch and the project's packages are

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


def training_rows(root: Path, data: Path, shape: str, steps: int, batch: int,
                  tokenizer_dir: Path | None) -> list[list[str]]:
    """``bench/train.py``'s GPU rows on a random model of ``shape``: LoRA one window a clip and packed (a
    quarter of the batch in windows), QLoRA, and the Hugging Face recipe, every cycle timed with its loading."""
    model_dir = train_bench.bench_model(root, shape, tokenizer_dir)
    common = ["--steps", str(steps), "--epochs", "0", "--batch-size", str(batch),
              "--packed-batch-size", str(max(1, batch // 4)), "--pack-window-s", "24", "--rank", "16",
              "--targets", "attention", "--cached-layers", "0", "--model", str(model_dir), "--data", str(data)]
    peak = next((v for k, v in train_bench.PEAK_TFLOPS.items() if k in torch.cuda.get_device_name()), None)
    rows = []
    for variant in ("lora", "lora-packed", "qlora", "hf-seq2seq"):
        try:
            f = train_bench.run_worker([*common, "--variant", variant])
            mfu = f"MFU {100 * f['model_tflops_per_s'] / peak:.0f}%" if peak else f"{f['model_tflops_per_s']:.1f} TFLOP/s"
            util = f"GPU util {f['gpu_util']:.0f}%" if f.get("gpu_util") is not None else "GPU util -"
            rows.append([f"train {variant}", f"random whisper-{shape}",
                         f"{f['samples_per_s']:.1f} samples/s, {f['clips_per_s']:.1f} clips/s",
                         f"{f['peak_gpu_gb']:.1f} GB", f"{mfu}, {util}, {f['steps']} steps of batch {f['batch']}"])
        except SystemExit as exc:
            rows.append([f"train {variant}", f"random whisper-{shape}", "failed", "", str(exc)[:80]])
    return rows


def transcription_rows(root: Path, data: Path) -> list[list[str]]:
    from zhasr.config import TranscribeParams
    from zhasr.data.audio import load_16k
    from zhasr.data.ingest import decoded_rows
    from zhasr.data.manifest import read_jsonl
    from zhasr.evaluation.metrics import character_error_rate
    from zhasr.export.formats import write_export
    from zhasr.model.loading import resolve_base_model
    from zhasr.transcribe import Transcriber

    base = resolve_base_model("packaged:whisper-base", root / "models")
    rows_all = decoded_rows(read_jsonl(data / "dataset" / "ingested.jsonl"))
    test = [r for r in rows_all if r.split == "test"][:24]
    calibration = [(load_16k(data / "dataset" / r.audio), r.text_norm)
                   for r in [r for r in rows_all if r.split == "train"][:16]]
    wavs = [data / "dataset" / r.audio for r in test]
    audio_s = sum(r.duration_s for r in test)
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
            cer = character_error_rate([r.text for r in test], texts, numbers=True).rate
            out.append([f"{fmt} on CUDA", "whisper-base", f"RTF {seconds / audio_s:.3f}",
                        f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GB",
                        f"written in {written:.0f} s; CER {cer:.1%} on {len(test)} test clips "
                        f"({transcriber.runtime_name} runtime)"])
        except Exception as exc:  # one failing check must not hide the others
            traceback.print_exc()
            out.append([f"{fmt} on CUDA", "whisper-base", "failed", "", f"{type(exc).__name__}: {exc}"[:80]])
    return out


def windows_rows(root: Path, tokenizer_dir: Path | None) -> list[list[str]]:
    """The engine's transformers runtime on CUDA on a random model of whisper-base's shape (speed only: its
    text is noise): 24-s windows decoded with timestamp tokens (full windows) and without (whole clips), in
    batches of 1, 8 and 32 (the service's batcher across requests), each decoding capped at 128 tokens."""
    import numpy as np

    from zhasr.config import TranscribeParams
    from zhasr.model.decode import DecodeOptions
    from zhasr.model.tiny import WHISPER_SHAPES, build_tiny_whisper
    from zhasr.transcribe.hf_runtime import TransformersRuntime

    shape = WHISPER_SHAPES["base"]
    model_dir = build_tiny_whisper(root / "models" / "random-base", tokenizer_dir=tokenizer_dir, options=shape)
    runtime = TransformersRuntime.open(model_dir, DecodeOptions(), device="cuda")
    rng = np.random.default_rng(0)
    windows = [(0.05 * rng.standard_normal(24 * 16000)).astype(np.float32) for _ in range(32)]
    out = []
    for timestamps in (True, False):
        for batch in (1, 8, 32):
            runtime.options = DecodeOptions(TranscribeParams(batch_size=batch, max_new_tokens=128,
                                                             retry_no_repeat_ngram=0))
            clips = windows[: max(8, batch)]
            runtime.decode(clips[:batch], timestamps=timestamps)  # warm-up
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            decoded = runtime.decode(clips, timestamps=timestamps)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            failed = [t.error for t in decoded if t.error]
            out.append([f"engine windows, {'timestamps' if timestamps else 'whole clip'}", "random whisper-base",
                        f"{len(clips) / seconds:.2f} windows/s", f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GB",
                        f"batch {batch}, {len(clips)} windows of 24 s, {sum(len(t.tokens) for t in decoded)} tokens"
                        + (f", {len(failed)} failed: {failed[0][:60]}" if failed else "")])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--only", choices=("windows",), help="only the engine's window decoding (no dataset, "
                                                            "no whisper-base: a random model of its shape)")
    shipped = Path(__file__).resolve().parent / "tokenizer"  # make gpu-tokenizer
    parser.add_argument("--tokenizer", type=Path, default=shipped if shipped.is_dir() else None,
                        help="a CTranslate2 Whisper folder with tokenizer.json and config.json (default: "
                             "bench/tokenizer/ from make gpu-tokenizer, else the packaged whisper-base's)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device, nothing to check")
        return
    from zhasr.project import apply_default_env, project_root

    root = project_root()
    apply_default_env(root, "packaged:whisper-base")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        table = windows_rows(Path(tmp), args.tokenizer)
        if args.only is None:
            train_bench.make_dataset(Path(tmp), args.clips, Path("/nonexistent"))
            table += training_rows(root, Path(tmp), "small", args.steps, args.batch_size, args.tokenizer)
            table += transcription_rows(root, Path(tmp))
    print(f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, {time.perf_counter() - started:.0f} s in all\n")
    print("| check | model | speed | peak GPU memory | notes |")
    print("|---|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
