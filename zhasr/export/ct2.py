"""CTranslate2 exports (int8, float16, ...) through its own converter, run with faster-whisper.

The export folder holds ``model.bin``, ``config.json``, ``vocabulary.json`` and
the tokenizer and preprocessor files: without ``tokenizer.json`` faster-whisper
would fetch one from the hub.
"""

from __future__ import annotations

import shutil
from pathlib import Path

QUANTIZATIONS = ("int8", "int8_float32", "float16", "float32")
COPIED_FILES = ("tokenizer.json", "preprocessor_config.json", "processor_config.json")


def write_ct2(model_dir: Path, out_dir: Path, quantization: str = "int8") -> Path:
    """Convert the Hugging Face Whisper in ``model_dir``; ``out_dir`` is complete or absent."""
    from ctranslate2.converters import TransformersConverter

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"CTranslate2 quantization {quantization!r}: expected one of {', '.join(QUANTIZATIONS)}")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{model_dir / 'tokenizer.json'}: needed beside the model, or faster-whisper "
                                "would look for a tokenizer on the hub")
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    copy = [f for f in COPIED_FILES if (model_dir / f).is_file()]
    TransformersConverter(str(model_dir), copy_files=copy).convert(str(tmp), quantization=quantization, force=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)
    return out_dir


def float32_copy(model_dir: Path, root: Path, digest: str) -> Path:
    """The Hugging Face Whisper in ``model_dir`` as a float32 CTranslate2 folder, ``root/<digest[:16]>``,
    written once per weights (``digest``: their sha256). The same model at full precision in a faster
    runtime: greedy tokens match transformers' while decoding costs a fraction on a CPU."""
    out = Path(root) / digest[:16]
    if not (out / "model.bin").is_file():
        write_ct2(model_dir, out, "float32")
    return out


def prune_copies(root: Path, keep: set[Path]) -> None:
    """Remove the float32 copies under ``root`` other than ``keep`` (each is the size of the model)."""
    for folder in Path(root).iterdir() if Path(root).is_dir() else []:
        if folder.is_dir() and folder.resolve() not in {k.resolve() for k in keep}:
            shutil.rmtree(folder, ignore_errors=True)
