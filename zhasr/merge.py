"""Fold a LoRA/DoRA adapter into the base weights: a plain Hugging Face Whisper directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from peft import PeftModel
from transformers import GenerationConfig, WhisperForConditionalGeneration, WhisperProcessor

DTYPES = {"float32": torch.float32, "float16": torch.float16}


def merge_adapter(base_model_dir: Path, adapter_dir: Path, out_dir: Path, dtype: str = "float32") -> Path:
    """Write base + adapter, merged, to ``out_dir`` (weights, processor, generation config).

    Written to a temporary folder and renamed, so ``out_dir`` is complete or absent.
    """
    if dtype not in DTYPES:
        raise ValueError(f"merge dtype={dtype!r}: expected one of {', '.join(DTYPES)}")
    out_dir = Path(out_dir)
    model = WhisperForConditionalGeneration.from_pretrained(base_model_dir)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    merged.config.use_cache = True
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.to(DTYPES[dtype]).save_pretrained(tmp)
    WhisperProcessor.from_pretrained(base_model_dir).save_pretrained(tmp)
    GenerationConfig.from_pretrained(base_model_dir).save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)
    return out_dir
