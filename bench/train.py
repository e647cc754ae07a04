"""Training speed, memory and quality: one window a clip against packed windows, plain LoRA against the
cached lower encoder (CPU), and zhasr against the Hugging Face Seq2SeqTrainer recipe (GPU); one table.

    .venv/bin/python bench/train.py                   # speed: 6 steps a configuration, whisper-base, CPU
    .venv/bin/python bench/train.py --epochs 3        # ... trained 3 epochs each, then test and real-speech CER
    .venv/bin/python bench/train.py --gpu --shape small --batch-size 64   # random whisper-small, bf16, CUDA
    .venv/bin/python bench/train.py --gpu --shape large-v3 --tokenizer DIR # where only torch and zhasr are

Data: a synthetic call-center batch (``zhasr.data.synth``, 4-5 s clips) ingested into a temporary
dataset, plus the real-speech regression set when its manifest exists. Each configuration runs in its
own process, so its peak memory is its own.

What is timed is the whole step cycle: from the end of one optimizer step to the end of the next, so
making the batch (reading cached states, log-mel extraction, collation) counts; the median over the
cycles after the first two. Every step is a full batch (the last partial batch of an epoch is dropped).
``samples/s`` counts training windows, ``clips/s`` the clips in them (the same unless packed).
``model TFLOP/s`` is 3 x the forward pass's FLOPs (counted from the shape: linear layers, attention,
convolutions and the vocabulary projection; the cached layers left out) over the cycle; MFU divides it
by the GPU's bf16 dense peak (``--peak-tflops``; H100/H200: 989). GPU utilisation is
``torch.cuda.utilization()`` sampled ten times a second during training.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import TrainerCallback

if TYPE_CHECKING:
    from zhasr.data.manifest import ManifestRow

PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}


class CycleClock(TrainerCallback):
    """Seconds from the end of one optimizer step to the end of the next (the batch's making included), and
    ``torch.cuda.utilization()`` sampled while the steps run."""

    def __init__(self) -> None:
        self.cycles: list[float] = []
        self.utilization: list[int] = []
        self._last: float | None = None
        self._running = False

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = time.perf_counter()
        if torch.cuda.is_available():
            self._running = True
            threading.Thread(target=self._sample, daemon=True).start()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.cycles.append(now - self._last)
        self._last = now

    def on_train_end(self, args, state, control, **kwargs):
        self._running = False

    def _sample(self) -> None:
        while self._running:
            try:
                self.utilization.append(torch.cuda.utilization())
            except Exception:  # no NVML: the column stays empty
                return
            time.sleep(0.1)

    def seconds_per_step(self) -> float:
        steady = self.cycles[2:] or self.cycles[1:] or self.cycles
        return statistics.median(steady)


def forward_tflops(config, label_tokens: float, cached_layers: int = 0) -> float:
    """TFLOPs of one forward pass over one 30-s window with ``label_tokens`` decoder positions.

    Multiply-adds x 2 of the linear layers, attention scores and values, both convolutions (unless cached)
    and the vocabulary projection; layer norms and activations left out."""
    d, frames, mels = config.d_model, config.max_source_positions, config.num_mel_bins
    ffn_e, ffn_d = config.encoder_ffn_dim, config.decoder_ffn_dim
    encoder_layer = frames * (4 * d * d + 2 * d * ffn_e + 2 * frames * d)
    convolutions = 2 * frames * 3 * mels * d + frames * 3 * d * d
    encoder = (config.encoder_layers - cached_layers) * encoder_layer + (0 if cached_layers else convolutions)
    t = label_tokens
    decoder_layer = t * (4 * d * d + 2 * d * d + 2 * d * ffn_d + t * d + 2 * frames * d) + frames * 2 * d * d
    decoder = config.decoder_layers * decoder_layer + t * d * config.vocab_size
    return 2 * (encoder + decoder) / 1e12


def make_dataset(root: Path, clips: int, regression_manifest: Path) -> list[ManifestRow]:
    """Synthetic train/dev/test rows, plus the real-speech regression set when its manifest exists."""
    from zhasr.config import IngestParams, SynthParams
    from zhasr.data.importers import ImportOptions, import_dataset
    from zhasr.data.ingest import decoded_rows, ingest_batches
    from zhasr.data.synth import synthesize_batch

    synthesize_batch(root / "incoming", SynthParams(batch="bench", n_clips=clips, n_speakers=24, seed=1),
                     progress=lambda done, total: None)
    if regression_manifest.is_file():
        import_dataset("jsonl", regression_manifest, root / "incoming", "real-zh", ImportOptions(split="regression"))
    return decoded_rows(ingest_batches(root / "incoming", root / "dataset", IngestParams(test_fraction=0.2)))


VARIANTS = {  # name: (cached lower encoder, packed windows, method)
    "plain": (False, False, "lora"), "cached": (True, False, "lora"),
    "plain-packed": (False, True, "lora"), "cached-packed": (True, True, "lora"),
    "lora": (False, False, "lora"), "lora-packed": (False, True, "lora"),
    "qlora": (False, False, "qlora"), "qlora-packed": (False, True, "qlora"),
}


def worker(args: argparse.Namespace) -> dict:
    """One configuration, in this process: train, time the cycles, optionally score the test split."""
    from transformers import AutoConfig

    from zhasr.config import TrainParams
    from zhasr.data.ingest import decoded_rows
    from zhasr.data.manifest import read_jsonl
    from zhasr.model.train import train_adapter

    data = Path(args.data)
    rows = decoded_rows(read_jsonl(data / "dataset" / "ingested.jsonl"))  # not validated: synthetic and curated rows
    train_rows = [r for r in rows if r.split == "train"]
    clock = CycleClock()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    if args.variant == "hf-seq2seq":
        steps, windows, labels = hf_seq2seq_recipe(Path(args.model), train_rows, data / "dataset",
                                                   data / "run-hf", args, clock)
        cached = 0
    else:
        cached_path, packed, method = VARIANTS[args.variant]
        options = TrainParams(
            method=method, targets=args.targets, rank=args.rank, alpha=2 * args.rank,
            batch_size=args.packed_batch_size if packed else args.batch_size, epochs=args.epochs or 1e6,
            max_steps=0 if args.epochs else args.steps, time_budget_s=0, evaluations=1, logging_steps=1,
            cached_encoder_layers=args.cached_layers if cached_path else 0,
            pack_window_s=args.pack_window_s if packed else 0.0, gradient_checkpointing=args.checkpointing,
        )
        result = train_adapter(Path(args.model), train_rows, data / "dataset", data / f"run-{args.variant}", options,
                               callbacks=[clock])
        steps, windows, cached = result.steps, result.windows, result.cached_encoder_layers
        labels = mean_label_tokens(Path(args.model), train_rows, options)
    batch = args.packed_batch_size if VARIANTS.get(args.variant, (0, False))[1] else args.batch_size
    per_step = clock.seconds_per_step()
    config = AutoConfig.from_pretrained(args.model)
    figures = {"variant": args.variant, "steps": steps, "batch": batch, "windows": windows, "clips": len(train_rows),
               "s_per_step": per_step, "samples_per_s": batch / per_step,
               "clips_per_s": batch / per_step * len(train_rows) / windows,
               "model_tflops_per_s": 3 * batch * forward_tflops(config, labels, cached) / per_step,
               "cached_layers": cached, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if torch.cuda.is_available():
        figures["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
        figures["gpu_util"] = statistics.mean(clock.utilization) if clock.utilization else None
    if args.epochs and args.variant != "hf-seq2seq":
        figures["cer"] = split_cer(Path(args.model), result.adapter_dir, rows, data / "dataset")
    return figures


def mean_label_tokens(model_dir: Path, rows: list[ManifestRow], options) -> float:
    """Mean label length of the training windows ``options`` makes of ``rows`` (decoder positions a window)."""
    from transformers import WhisperProcessor

    from zhasr.model.speech_data import text_tokens, window_label_ids
    from zhasr.model.training_windows import pack_rows, single_windows

    processor = WhisperProcessor.from_pretrained(model_dir)
    windows = (pack_rows(rows, options.pack_window_s, options.pack_gap_s, text_tokens(processor), options.seed)
               if options.pack_window_s else single_windows(rows))
    return statistics.mean(len(window_label_ids(processor, w, "zh", "transcribe", options.max_label_tokens,
                                                options.pack_timestamps)) for w in windows)


def split_cer(model_dir: Path, adapter_dir: Path | None, rows: list[ManifestRow], dataset_dir: Path) -> dict[str, float]:
    """CER (0-1) of the synthetic test split and, when imported, the real-speech regression set."""
    from zhasr.data.audio import load_16k
    from zhasr.evaluation.metrics import character_error_rate
    from zhasr.model.decode import DecodeOptions, transcribe
    from zhasr.model.loading import load_model

    model, processor = load_model(model_dir, adapter_dir)
    scores = {}
    for split in ("test", "regression"):
        chosen = [r for r in rows if r.split == split]
        if chosen:
            clips = [load_16k(dataset_dir / r.audio) for r in chosen]
            hypotheses = [t.text for t in transcribe(model, processor, clips, DecodeOptions())]
            scores[split] = character_error_rate([r.text_norm for r in chosen], hypotheses).cer
    return scores


def hf_seq2seq_recipe(model_dir: Path, rows: list[ManifestRow], dataset_dir: Path, out: Path, args,
                      clock: CycleClock) -> tuple[int, int, float]:
    """Full fine-tuning as in the Hugging Face Whisper guide (bf16, activation checkpointing, two loader
    workers), at the same batch size; returns (steps, windows, mean label tokens)."""
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, WhisperForConditionalGeneration, WhisperProcessor

    from zhasr.config import TrainParams
    from zhasr.model.speech_data import SpeechCollator, SpeechDataset
    from zhasr.model.training_windows import single_windows

    processor = WhisperProcessor.from_pretrained(model_dir)
    model = WhisperForConditionalGeneration.from_pretrained(model_dir)
    model.config.use_cache = False
    training = Seq2SeqTrainingArguments(
        output_dir=str(out), per_device_train_batch_size=args.batch_size, learning_rate=1e-5, warmup_steps=1,
        max_steps=args.steps, activation_checkpointing=True, bf16=True, save_strategy="no", logging_steps=1,
        report_to=[], remove_unused_columns=False, label_names=["labels"], dataloader_num_workers=2,
        dataloader_drop_last=True,
    )
    dataset = SpeechDataset(single_windows(rows), dataset_dir, processor, "zh", "transcribe", 128)
    trainer = Seq2SeqTrainer(model=model, args=training, train_dataset=dataset, data_collator=SpeechCollator(),
                             callbacks=[clock])
    result = trainer.train()
    return result.global_step, len(rows), mean_label_tokens(model_dir, rows, TrainParams())


def bench_model(root: Path, shape: str, tokenizer_dir: Path | None) -> Path:
    """The packaged whisper-base (``base-real``, offline), or a random model of a released shape."""
    from zhasr.model.loading import resolve_base_model
    from zhasr.model.tiny import WHISPER_SHAPES, build_tiny_whisper

    if shape == "base-real":
        return resolve_base_model("packaged:whisper-base", root / "models")
    return build_tiny_whisper(root / "models" / f"random-{shape}", tokenizer_dir=tokenizer_dir,
                              options=WHISPER_SHAPES[shape])


def run_worker(argv: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"worker {' '.join(argv)} failed ({done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table_row(f: dict, peak_tflops: float | None) -> str:
    cells = [f["variant"], f"{f['batch']}", f"{f['windows']} for {f['clips']}", f"{f['steps']}",
             f"{f['s_per_step']:.2f}", f"{f['samples_per_s']:.2f}", f"{f['clips_per_s']:.2f}",
             f"{f['model_tflops_per_s']:.3f}"]
    if "peak_gpu_gb" in f:
        cells += [f"{100 * f['model_tflops_per_s'] / peak_tflops:.0f}%" if peak_tflops else "-",
                  f"{f['gpu_util']:.0f}%" if f.get("gpu_util") is not None else "-", f"{f['peak_gpu_gb']:.1f}"]
    else:
        cells += [f"{f['peak_rss_gb']:.1f}"]
    if "cer" in f:
        cells += [" / ".join(f"{100 * v:.1f}" for v in f["cer"].values())]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps a configuration (speed only)")
    parser.add_argument("--epochs", type=float, default=0.0,
                        help="train each configuration this many passes over its windows, then score test CER")
    parser.add_argument("--batch-size", type=int, default=8, help="clips a step, one window each")
    parser.add_argument("--packed-batch-size", type=int, default=2, help="packed windows a step")
    parser.add_argument("--pack-window-s", type=float, default=24.0)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--targets", default="attention", help="adapter preset (zhasr.model.adapters.TARGET_PRESETS)")
    parser.add_argument("--cached-layers", type=int, default=3, help="encoder layers the cached path freezes")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing in zhasr's rows")
    parser.add_argument("--clips", type=int, default=120, help="synthetic clips to make (train is ~70%%)")
    parser.add_argument("--gpu", action="store_true", help="LoRA and QLoRA, packed or not, and the HF recipe on CUDA")
    parser.add_argument("--shape", default="base-real",
                        help="base-real (the packaged whisper-base) or a random model: tiny, base, small, medium, "
                             "large-v3, large-v3-turbo")
    parser.add_argument("--variants", help="comma-separated, default: CPU plain,cached,plain-packed,cached-packed; "
                                           "GPU lora,lora-packed,qlora,hf-seq2seq")
    parser.add_argument("--tokenizer", type=Path, help="a CTranslate2 Whisper folder with tokenizer.json and "
                                                         "config.json for the random shapes (default: the packaged one)")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's bf16 dense peak (default: known for its name)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # worker process
        print(json.dumps(worker(args)))
        return

    from zhasr.config import RegressionParams
    from zhasr.project import apply_default_env, project_root

    root = project_root()
    apply_default_env(root, "packaged:whisper-base")
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA device visible")
    model_dir = bench_model(root, args.shape, args.tokenizer)
    default = "lora,lora-packed,qlora,hf-seq2seq" if args.gpu else "plain,cached,plain-packed,cached-packed"
    variants = (args.variants or default).split(",")
    peak = args.peak_tflops or (next((v for k, v in PEAK_TFLOPS.items() if k in torch.cuda.get_device_name()), None)
                                if args.gpu else None)
    passthrough = ["--steps", str(args.steps), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                   "--packed-batch-size", str(args.packed_batch_size), "--pack-window-s", str(args.pack_window_s),
                   "--rank", str(args.rank), "--targets", args.targets, "--cached-layers", str(args.cached_layers),
                   "--model", str(model_dir), *(["--checkpointing"] if args.checkpointing else [])]
    with tempfile.TemporaryDirectory() as tmp:
        rows = make_dataset(Path(tmp), args.clips, root / RegressionParams().manifest)
        device = f"CUDA {torch.cuda.get_device_name()}" if args.gpu else f"CPU, {torch.get_num_threads()} threads"
        print(f"{args.shape}, {sum(r.split == 'train' for r in rows)} train clips, r={args.rank} on {args.targets}, "
              f"{'%g epochs' % args.epochs if args.epochs else '%d steps' % args.steps}, {device}")
        header = ["variant", "batch", "windows", "steps", "s/step", "samples/s", "clips/s", "model TFLOP/s"]
        header += ["MFU", "GPU util", "peak GPU GB"] if args.gpu else ["peak RSS GB"]
        header += ["test / real CER %"] if args.epochs else []
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header), flush=True)
        for variant in variants:
            try:
                print(table_row(run_worker([*passthrough, "--variant", variant, "--data", tmp]), peak), flush=True)
            except SystemExit as exc:
                print(f"| {variant} | failed: {exc} |", flush=True)


if __name__ == "__main__":
    main()
