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
    """Shape of a random Whisper; the default is the tiny test model: ~3.5 M parameters, almost all in the
    51,865 x 64 token embedding. ``WHISPER_SHAPES`` holds the released models' shapes for benchmarks."""

    d_model: int = 64
    layers: int = 2  # encoder layers, and decoder layers unless decoder_layers is set
    heads: int = 2
    ffn_dim: int = 256  # 4 x d_model, as in every Whisper (whisper.cpp assumes it)
    decoder_layers: int | None = None  # large-v3-turbo: 4 decoder layers under 32 encoder layers
    n_mels: int = 80  # large-v3 and its turbo read 128 mel bins
    # large-v3's 51,866 (one more language, <|yue|>): here one more timestamp token instead, the same shape
    vocab_size: int = 51865

    def dims(self) -> WhisperDims:
        return WhisperDims(
            d_model=self.d_model, encoder_layers=self.layers, decoder_layers=self.decoder_layers or self.layers,
            encoder_attention_heads=self.heads, decoder_attention_heads=self.heads,
            encoder_ffn_dim=self.ffn_dim, decoder_ffn_dim=self.ffn_dim, num_mel_bins=self.n_mels,
            vocab_size=self.vocab_size,
        )


WHISPER_SHAPES = {  # the released checkpoints' shapes (OpenAI's model card), for random models of that size
    "tiny": TinyWhisperOptions(d_model=384, layers=4, heads=6, ffn_dim=1536),
    "base": TinyWhisperOptions(d_model=512, layers=6, heads=8, ffn_dim=2048),
    "small": TinyWhisperOptions(d_model=768, layers=12, heads=12, ffn_dim=3072),
    "medium": TinyWhisperOptions(d_model=1024, layers=24, heads=16, ffn_dim=4096),
    "large-v3": TinyWhisperOptions(d_model=1280, layers=32, heads=20, ffn_dim=5120, n_mels=128, vocab_size=51866),
    "large-v3-turbo": TinyWhisperOptions(d_model=1280, layers=32, heads=20, ffn_dim=5120, decoder_layers=4,
                                         n_mels=128, vocab_size=51866),
}


def tokenizer_files(tokenizer_dir: Path | None = None) -> Ct2Files:
    """The tokenizer.json and CTranslate2 config.json a random Whisper takes: those of ``tokenizer_dir`` (a
    CTranslate2 Whisper folder; model.bin is not read), else the packaged whisper-base's."""
    return packaged_model_files() if tokenizer_dir is None else Ct2Files.from_dir(tokenizer_dir, need_model=False)


def random_whisper_config(options: TinyWhisperOptions, files: Ct2Files):
    """(WhisperConfig, tokenizer, CTranslate2 config) of a random Whisper of ``options``' shape."""
    dims = options.dims()
    ct2_config = load_ct2_config(files.config)
    tokenizer = build_tokenizer(files.tokenizer, dims.vocab_size, dims.max_target_positions)
    return build_whisper_config(dims, tokenizer, ct2_config), tokenizer, ct2_config


def build_tiny_whisper(
    out_dir: Path, tokenizer_dir: Path | None = None, seed: int = 0, options: TinyWhisperOptions = TinyWhisperOptions()
) -> Path:
    """Write a random Whisper of ``options``' shape (the tiny test model by default) as a Hugging Face
    directory ``out_dir`` and return it.

    ``tokenizer_dir``: see ``tokenizer_files``. Weights depend only on ``seed``. An already complete
    ``out_dir`` is returned as is.
    """
    if is_complete_model_dir(out_dir):
        return Path(out_dir)
    files = tokenizer_files(tokenizer_dir)

    def build(tmp: Path) -> None:
        config, tokenizer, ct2_config = random_whisper_config(options, files)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = WhisperForConditionalGeneration(config).eval()
        save_whisper_dir(tmp, model, tokenizer, build_generation_config(tokenizer, ct2_config, options.dims()))

    return write_dir_atomically(out_dir, build)
