"""Training speed and memory: plain LoRA against the cached-encoder path (CPU), and zhasr against
the Hugging Face Seq2SeqTrainer recipe (GPU).

    .venv/bin/python bench/train.py                  # s/step and peak RSS, whisper-base, CPU
    .venv/bin/python bench/train.py --budget-s 300   # ... and test CER after 300 s of training each
    .venv/bin/python bench/train.py --gpu            # whisper-small-sized model, bf16, on CUDA
    .venv/bin/python bench/train.py --gpu --gpu-model base   # whisper-base, bf16, on CUDA

Data: a synthetic call-center batch (``zhasr.data.synth``) ingested into a temporary
dataset. Each configuration runs in its own process, so its peak memory is its
own. Seconds per step is the median over the steps after the first (which pays
for allocation); the encoder cache's one-off cost is printed separately.

GPU mode compares, at the same batch size, zhasr's LoRA and QLoRA training
(bf16, no cache) with the recipe of the Hugging Face Whisper fine-tuning guide: full
fine-tuning on ``Seq2SeqTrainer`` with gradient checkpointing. It prints
samples per second and peak GPU memory (``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback


class StepClock(TrainerCallback):
    """Wall time of each optimizer step; stops training ``budget_s`` after it was created.

    The budget counts model loading and the encoder cache too, so both CPU paths get the same wall time.
    """

    def __init__(self, budget_s: float = 0.0):
        self.budget_s, self.durations, self.spent = budget_s, [], 0.0
        self.created = time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.durations.append(time.perf_counter() - self.started)
        self.spent += self.durations[-1]
        if self.budget_s and time.perf_counter() - self.created >= self.budget_s:
            control.should_training_stop = True


def make_dataset(root: Path, clips: int, regression_manifest: Path) -> list[dict]:
    """Synthetic train/dev/test rows, plus the real-speech regression set when its manifest exists."""
    from zhasr.config import IngestParams, SynthParams
    from zhasr.data.importers import ImportOptions, import_dataset
    from zhasr.data.ingest import ingest_batches
    from zhasr.data.synth import synthesize_batch

    synthesize_batch(root / "incoming", SynthParams(batch="bench", n_clips=clips, n_speakers=24, seed=1),
                     progress=lambda done, total: None)
    if regression_manifest.is_file():
        import_dataset("jsonl", regression_manifest, root / "incoming", "real-zh", ImportOptions(split="regression"))
    return ingest_batches(root / "incoming", root / "dataset", IngestParams(test_fraction=0.2))


def worker(args: argparse.Namespace) -> dict:
    """One configuration, in this process: train, time the steps, optionally score the test split."""
    from zhasr.config import TrainParams
    from zhasr.data.manifest import read_jsonl
    from zhasr.model.train import train_adapter

    data = Path(args.data)
    rows = read_jsonl(data / "dataset" / "ingested.jsonl")  # not validated: synthetic and curated rows
    train_rows = [r for r in rows if r["split"] == "train"]
    clock = StepClock(args.budget_s)
    if args.variant == "hf-seq2seq":
        return hf_seq2seq_recipe(Path(args.model), train_rows, data / "dataset", data / "run-hf", args, clock)
    options = TrainParams(  # the steps are --steps, or what StepClock lets run in --budget-s
        method="qlora" if args.variant == "qlora" else "lora", targets=args.targets, rank=args.rank, alpha=2 * args.rank, batch_size=args.batch_size,
        epochs=1e6, max_steps=args.steps if not args.budget_s else 100_000, time_budget_s=0, evaluations=1,
        logging_steps=1, cached_encoder_layers=0 if args.variant == "plain" else args.cached_layers,
    )
    result = train_adapter(Path(args.model), train_rows, data / "dataset", data / f"run-{args.variant}", options,
                           callbacks=[clock])
    figures = summarize(args, clock, steps=result.steps)
    figures.update(cache_s=result.cache_seconds, cached_layers=result.cached_encoder_layers,
                   trainable_params=result.trainable_params)
    if args.budget_s:
        figures["cer"] = split_cer(Path(args.model), result.adapter_dir, rows, data / "dataset")
    return figures


def summarize(args: argparse.Namespace, clock: StepClock, steps: int) -> dict:
    per_step = statistics.median(clock.durations[1:] or clock.durations)
    figures = {"variant": args.variant, "steps": steps, "s_per_step": per_step,
               "samples_per_s": args.batch_size / per_step, "train_s": clock.spent,
               "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if torch.cuda.is_available():
        figures["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return figures


def split_cer(model_dir: Path, adapter_dir: Path | None, rows: list[dict], dataset_dir: Path) -> dict[str, float]:
    """CER (0-1) of the synthetic test split and, when imported, the real-speech regression set."""
    from zhasr.data.audio import load_16k
    from zhasr.evaluation.metrics import character_error_rate
    from zhasr.model.decode import DecodeOptions, transcribe
    from zhasr.model.loading import load_model

    model, processor = load_model(model_dir, adapter_dir)
    scores = {}
    for split in ("test", "regression"):
        chosen = [r for r in rows if r["split"] == split and not r.get("decode_error")]
        if chosen:
            clips = [load_16k(dataset_dir / r["audio"]) for r in chosen]
            hypotheses = [t.text for t in transcribe(model, processor, clips, DecodeOptions())]
            scores[split] = character_error_rate([r["text_norm"] for r in chosen], hypotheses).cer
    return scores


def describe(cer: dict[str, float]) -> str:
    return ", ".join(f"{split} CER {100 * value:.1f}%" for split, value in cer.items())


def hf_seq2seq_recipe(model_dir: Path, rows: list[dict], dataset_dir: Path, out: Path, args, clock) -> dict:
    """Full fine-tuning as in the Hugging Face Whisper guide, at the same batch size."""
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, WhisperForConditionalGeneration, WhisperProcessor

    from zhasr.model.speech_data import SpeechCollator, SpeechDataset

    processor = WhisperProcessor.from_pretrained(model_dir)
    model = WhisperForConditionalGeneration.from_pretrained(model_dir)
    model.config.use_cache = False
    training = Seq2SeqTrainingArguments(
        output_dir=str(out), per_device_train_batch_size=args.batch_size, learning_rate=1e-5, warmup_steps=1,
        max_steps=args.steps, activation_checkpointing=True, bf16=True, save_strategy="no", logging_steps=1,
        report_to=[], remove_unused_columns=False, label_names=["labels"], dataloader_num_workers=2,
    )
    dataset = SpeechDataset(rows, dataset_dir, processor, "zh", "transcribe", 128)
    trainer = Seq2SeqTrainer(model=model, args=training, train_dataset=dataset, data_collator=SpeechCollator(),
                             callbacks=[clock])
    result = trainer.train()
    return summarize(args, clock, steps=result.global_step)


def gpu_model(root: Path, size: str) -> Path:
    """whisper-base (packaged, offline) or a random model of whisper-small's shape (none is offline)."""
    from zhasr.model.loading import resolve_base_model
    from zhasr.model.tiny import TinyWhisperOptions, build_tiny_whisper

    if size == "base":
        return resolve_base_model("packaged:whisper-base", root / "models")
    small = TinyWhisperOptions(d_model=768, layers=12, heads=12, ffn_dim=3072)  # whisper-small's shape
    return build_tiny_whisper(root / "models" / "random-small", options=small)


def run_worker(argv: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"worker {' '.join(argv)} failed ({done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per configuration")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--targets", default="attention", help="adapter preset (zhasr.model.adapters.TARGET_PRESETS)")
    parser.add_argument("--cached-layers", type=int, default=4, help="encoder layers the cached path freezes")
    parser.add_argument("--clips", type=int, default=120, help="synthetic clips to train on")
    parser.add_argument("--budget-s", type=float, default=0.0,
                        help="train each CPU configuration this long instead of --steps, then score the test split")
    parser.add_argument("--gpu", action="store_true", help="LoRA, QLoRA and the HF recipe in bf16 on CUDA")
    parser.add_argument("--gpu-model", choices=("small", "base"), default="small",
                        help="--gpu: a whisper-small-sized random model, or the packaged whisper-base")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # worker process
        print(json.dumps(worker(args)))
        return

    from zhasr.config import RegressionParams
    from zhasr.model.loading import resolve_base_model
    from zhasr.project import apply_default_env, project_root

    root = project_root()
    apply_default_env(root, "packaged:whisper-base")
    if args.gpu:
        if not torch.cuda.is_available():
            raise SystemExit("--gpu: no CUDA device visible")
        model_dir = gpu_model(root, args.gpu_model)
        variants = ["lora", "qlora", "hf-seq2seq"]
    else:
        model_dir = resolve_base_model("packaged:whisper-base", root / "models")
        variants = ["plain", "cached"]
    common = ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--rank", str(args.rank),
              "--targets", args.targets, "--budget-s", str(args.budget_s), "--model", str(model_dir),
              "--cached-layers", str(args.cached_layers)]
    with tempfile.TemporaryDirectory() as tmp:
        rows = make_dataset(Path(tmp), args.clips, root / RegressionParams().manifest)
        n_train = sum(r["split"] == "train" for r in rows)
        print(f"{model_dir.name}, {n_train} train clips, batch {args.batch_size}, targets {args.targets}, "
              f"r={args.rank}, {torch.get_num_threads()} threads, {'CUDA ' + torch.cuda.get_device_name() if args.gpu else 'CPU'}")
        if args.budget_s:
            print(f"zero-shot: {describe(split_cer(model_dir, None, rows, Path(tmp) / 'dataset'))}")
        for variant in variants:
            f = run_worker([*common, "--variant", variant, "--data", tmp])
            line = (f"{variant:>10}: {f['s_per_step']:.2f} s/step, {f['samples_per_s']:.2f} samples/s, "
                    f"peak RSS {f['peak_rss_gb']:.1f} GB")
            if "peak_gpu_gb" in f:
                line += f", peak GPU {f['peak_gpu_gb']:.1f} GB"
            if f.get("cached_layers"):
                line += f", encoder cache {f['cache_s']:.0f} s once ({f['cached_layers']} layers)"
            if "cer" in f:
                line += f", {f['steps']} steps in {args.budget_s:.0f} s -> {describe(f['cer'])}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
