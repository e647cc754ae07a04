"""CTranslate2 exports (int8, float16, ...) through its own converter, run with faster-whisper.

The export folder holds ``model.bin``, ``config.json``, ``vocabulary.json`` and
the tokenizer and preprocessor files: without ``tokenizer.json`` faster-whisper
would fetch one from the hub.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

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


def transcribe_ct2(model_dir: Path, clips: list[np.ndarray], language: str = "zh", compute_type: str = "default",
                   threads: int = 2, max_tokens: int = 224) -> tuple[list[str], float]:
    """(one text per 16 kHz clip in simplified Chinese, decoding seconds) with faster-whisper, greedy,
    fully offline (``local_files_only``)."""
    from faster_whisper import WhisperModel

    from zhasr.text import to_simplified

    model = WhisperModel(str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=threads,
                         local_files_only=True)
    texts, seconds = [], 0.0
    for clip in clips:
        start = time.perf_counter()
        segments, _ = model.transcribe(clip, language=language, beam_size=1, temperature=0.0,
                                       without_timestamps=True, condition_on_previous_text=False, vad_filter=False,
                                       max_new_tokens=max_tokens)
        texts.append(to_simplified("".join(s.text for s in segments).strip()))
        seconds += time.perf_counter() - start
    return texts, seconds
