"""Seconds per optimizer step and peak memory of LoRA training on the base model, on this machine.

    .venv/bin/python bench/train_step.py --steps 3 --batch-size 4 --targets q_proj,v_proj

Prints one line per configuration. Inputs are 30 s log-mel windows (Whisper always
pads to 3000 frames, so audio length does not change the cost) and 32-token labels.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch
from peft import get_peft_model
from transformers import WhisperForConditionalGeneration

from zhasr.models import resolve_base_model
from zhasr.project import apply_default_env, project_root
from zhasr.train import TrainOptions, adapter_config


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def bench(model_dir: Path, targets: tuple[str, ...], batch_size: int, steps: int, rank: int) -> dict:
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration.from_pretrained(model_dir)
    model.config.use_cache = False
    model = get_peft_model(model, adapter_config(TrainOptions(target_modules=targets, rank=rank, alpha=2 * rank)))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    features = torch.randn(batch_size, model.config.num_mel_bins, 3000)
    labels = torch.randint(220, 50000, (batch_size, 32))
    times = []
    for step in range(steps + 1):  # the first step warms up allocators and kernels; not counted
        started = time.perf_counter()
        loss = model(input_features=features, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step:
            times.append(time.perf_counter() - started)
    trainable, total = model.get_nb_trainable_parameters()
    return {"s_per_step": sum(times) / len(times), "peak_rss_gb": peak_rss_gb(), "trainable_m": trainable / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="packaged:whisper-base", help="model.base spec")
    parser.add_argument("--targets", default="q_proj,v_proj", help="comma-separated LoRA target modules")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rank", type=int, default=16)
    args = parser.parse_args()
    root = project_root()
    apply_default_env(root, args.model)
    model_dir = resolve_base_model(args.model, root / "models")
    targets = tuple(args.targets.split(","))
    result = bench(model_dir, targets, args.batch_size, args.steps, args.rank)
    print(f"model={args.model} targets={args.targets} batch={args.batch_size} rank={args.rank} "
          f"threads={torch.get_num_threads()}: {result['s_per_step']:.2f} s/step, "
          f"peak RSS {result['peak_rss_gb']:.2f} GB, trainable {result['trainable_m']:.2f} M params")


if __name__ == "__main__":
    main()
