"""The export formats by name (``zhasr.config.EXPORT_FORMATS``): where each is written and how.

    ggml-<f16|q8_0|q5_0|q4_0>   whisper.cpp (pywhispercpp), one .bin file
    ct2-<int8|float16>           CTranslate2 / faster-whisper, a folder
    gptq-4bit                    GPTQ (optimum / gptqmodel kernels, CPU or GPU), a folder; needs
                                 calibration clips with their reference texts
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from zhasr.config import EXPORT_FORMATS, ModelParams

if TYPE_CHECKING:
    import numpy as np

    from zhasr.config import ExportParams

LOW_BIT = frozenset({"ggml-q5_0", "ggml-q4_0", "gptq-4bit"})  # judged against the looser CER limit


def _split(fmt: str) -> tuple[str, str]:
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    runtime, variant = fmt.split("-", 1)
    return runtime, variant


def export_path(fmt: str, out_root: Path) -> Path:
    runtime, variant = _split(fmt)
    return Path(out_root) / (f"ggml-model-{variant}.bin" if runtime == "ggml" else fmt)


def write_export(fmt: str, model_dir: Path, out_root: Path, calibration: Sequence[tuple[np.ndarray, str]] = (),
                 language: str = ModelParams.language, gptq: ExportParams | None = None) -> Path:
    """Write ``model_dir`` (a merged Hugging Face Whisper) as ``fmt`` under ``out_root``; returns its path.

    ``calibration`` ((16 kHz audio, reference text) pairs) and ``gptq`` (its ``gptq_*`` settings; default
    ExportParams') are used by gptq-4bit only.
    """
    runtime, variant = _split(fmt)
    path = export_path(fmt, out_root)
    if runtime == "ggml":
        from zhasr.export.ggml import write_ggml

        return write_ggml(model_dir, path, variant)
    if runtime == "gptq":
        from zhasr.config import ExportParams
        from zhasr.export.gptq import write_gptq

        return write_gptq(model_dir, path, list(calibration), language, gptq or ExportParams())
    from zhasr.export.ct2 import write_ct2

    return write_ct2(model_dir, path, variant)


def size_on_disk(path: Path) -> int:
    """Bytes of a file, or of every file in a folder."""
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
