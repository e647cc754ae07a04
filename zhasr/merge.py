"""Fold a LoRA/DoRA adapter into the base weights: a plain Hugging Face Whisper directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel
from transformers import GenerationConfig, WhisperForConditionalGeneration, WhisperProcessor

from zhasr.decode import log_mel

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


@torch.inference_mode()
def merge_difference(base_model_dir: Path, adapter_dir: Path, merged_dir: Path, clip: np.ndarray) -> float:
    """Largest absolute difference between the logits of base + adapter and of the merged model, on
    ``clip`` (16 kHz, (n_samples,)) with the transcription prompt and 16 decoded tokens (float32 compute)."""
    from zhasr.models import load_model

    adapter_model, processor = load_model(base_model_dir, adapter_dir)
    merged_model, _ = load_model(merged_dir)
    merged_model = merged_model.float()
    features = log_mel(processor, [clip])
    generated = adapter_model.generate(input_features=features, language="zh", task="transcribe",
                                       max_new_tokens=16, do_sample=False, return_dict_in_generate=True).sequences
    a = adapter_model(input_features=features, decoder_input_ids=generated).logits
    m = merged_model(input_features=features, decoder_input_ids=generated).logits
    return float((a - m).abs().max())
