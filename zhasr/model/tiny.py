"""A randomly initialized tiny Whisper with the real multilingual tokenizer, for fast tests.

Same vocabulary, special tokens, feature extractor and generation config as the
packaged whisper-base (built by :mod:`zhasr.model.ct2_import`), so every code path
that touches tokens or features runs unchanged; only the network is small.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import WhisperForConditionalGeneration

from zhasr.model.ct2_import.names import WhisperDims
from zhasr.model.ct2_import.packaged import packaged_model_files
from zhasr.model.ct2_import.reader import Ct2Files, load_ct2_config
from zhasr.model.ct2_import.writer import (
    build_generation_config,
    build_tokenizer,
    build_whisper_config,
    is_complete_model_dir,
    save_whisper_dir,
    write_dir_atomically,
)


@dataclass(frozen=True)
class TinyWhisperOptions:
    """Shape of the tiny model: ~3.5 M parameters, almost all in the 51,865 x 64 token embedding."""

    d_model: int = 64
    layers: int = 2  # encoder and decoder each
    heads: int = 2
    ffn_dim: int = 256  # 4 x d_model, as in every Whisper (whisper.cpp assumes it)

    def dims(self) -> WhisperDims:
        return WhisperDims(
            d_model=self.d_model, encoder_layers=self.layers, decoder_layers=self.layers,
            encoder_attention_heads=self.heads, decoder_attention_heads=self.heads,
            encoder_ffn_dim=self.ffn_dim, decoder_ffn_dim=self.ffn_dim,
        )


def build_tiny_whisper(
    out_dir: Path, tokenizer_dir: Path | None = None, seed: int = 0, options: TinyWhisperOptions = TinyWhisperOptions()
) -> Path:
    """Write a random tiny Whisper as a Hugging Face directory ``out_dir`` and return it.

    ``tokenizer_dir`` is a CTranslate2 Whisper directory whose tokenizer.json and
    config.json (suppress ids, language ids) are used; default: the packaged
    whisper-base's (model.bin is not read). Weights depend only on ``seed``. An
    already complete ``out_dir`` is returned as is.
    """
    if is_complete_model_dir(out_dir):
        return Path(out_dir)
    files = packaged_model_files() if tokenizer_dir is None else Ct2Files.from_dir(tokenizer_dir, need_model=False)
    dims = options.dims()

    def build(tmp: Path) -> None:
        ct2_config = load_ct2_config(files.config)
        tokenizer = build_tokenizer(files.tokenizer, dims.vocab_size, dims.max_target_positions)
        config = build_whisper_config(dims, tokenizer, ct2_config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = WhisperForConditionalGeneration(config).eval()
        save_whisper_dir(tmp, model, tokenizer, build_generation_config(tokenizer, ct2_config, dims))

    return write_dir_atomically(out_dir, build)
