"""whisper.cpp's legacy ggml ``.bin`` format (what whisper.cpp 1.8 reads; it refuses GGUF), written from a
Hugging Face Whisper folder, plus a reader of its header that rejects a corrupt or cut file before
whisper.cpp sees it (whisper.cpp itself may crash on one).

Layout, all little-endian::

    u32 magic 0x67676d6c ("ggml")
    i32 n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer,
        n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype
    i32 n_mel, n_fft; f32[n_mel * n_fft] mel filter bank
    i32 n_tokens; n_tokens x (i32 length, bytes)       byte-level BPE tokens below <|endoftext|>
    tensors until EOF: i32 n_dims, name_len, ttype; i32 ne[n_dims] (fastest first); name; data

Weight matrices (and the token embedding) are stored in the model's type (f16 or a quantized type,
quantized row by row with the ``gguf`` package's numpy quantizers, byte-identical to libggml's);
convolution kernels stay f16, biases, norms and positional embeddings f32, as whisper.cpp expects.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = 0x67676D6C
QNT_VERSION = 2  # GGML_QNT_VERSION; the header's ftype of a quantized file is ftype + 1000 * QNT_VERSION
# name: (file ftype, tensor type of the weight matrices), from ggml.h's ggml_ftype and ggml_type
FORMATS = {"f32": (0, 0), "f16": (1, 1), "q4_0": (2, 2), "q8_0": (7, 8), "q5_0": (8, 6)}
# ggml_type -> (elements per block, bytes per block)
TYPE_SIZES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 6: (32, 22), 8: (32, 34)}
HPARAMS = ("n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer", "n_text_ctx",
           "n_text_state", "n_text_head", "n_text_layer", "n_mels", "ftype")

# Hugging Face module names -> openai/whisper names, which whisper.cpp uses
_RENAME = {
    "self_attn.q_proj": "attn.query", "self_attn.k_proj": "attn.key", "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out", "self_attn_layer_norm": "attn_ln",
    "encoder_attn.q_proj": "cross_attn.query", "encoder_attn.k_proj": "cross_attn.key",
    "encoder_attn.v_proj": "cross_attn.value", "encoder_attn.out_proj": "cross_attn.out",
    "encoder_attn_layer_norm": "cross_attn_ln", "fc1": "mlp.0", "fc2": "mlp.2", "final_layer_norm": "mlp_ln",
}
_TOP_LEVEL = {
    "encoder.layer_norm": "encoder.ln_post", "decoder.layer_norm": "decoder.ln",
    "encoder.embed_positions": "encoder.positional_embedding", "decoder.embed_positions": "decoder.positional_embedding",
    "decoder.embed_tokens": "decoder.token_embedding",
}


class GgmlFormatError(ValueError):
    """A file that is not a complete whisper.cpp ggml model; the message names the file and the defect."""


def ggml_name(hf_name: str) -> str | None:
    """``model.encoder.layers.0.self_attn.q_proj.weight`` -> ``encoder.blocks.0.attn.query.weight``;
    None for tensors whisper.cpp does not read (``proj_out``, tied to the token embedding)."""
    parts = hf_name.removeprefix("model.").split(".")
    if parts[0] == "proj_out":
        return None
    if parts[1] == "layers":
        return ".".join([parts[0], "blocks", parts[2], _RENAME[".".join(parts[3:-1])], parts[-1]])
    module, leaf = ".".join(parts[:-1]), parts[-1]
    if module in _TOP_LEVEL:
        mapped = _TOP_LEVEL[module]
        return mapped if mapped.endswith("positional_embedding") else f"{mapped}.{leaf}"
    return ".".join(parts)


def _tensor_type(name: str, array: np.ndarray, weight_type: int) -> int:
    if array.ndim == 3:  # conv kernels
        return 0 if weight_type == 0 else 1
    if array.ndim < 2 or name.endswith("positional_embedding") or name.endswith(".bias"):
        return 0
    return weight_type


def _encode(array: np.ndarray, ttype: int) -> bytes:
    if ttype == 0:
        return np.ascontiguousarray(array, dtype="<f4").tobytes()
    if ttype == 1:
        return np.ascontiguousarray(array, dtype="<f2").tobytes()
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    return quantize(np.ascontiguousarray(array, dtype=np.float32), GGMLQuantizationType(ttype)).tobytes()


def _token_bytes(model_dir: Path) -> list[bytes]:
    """Byte strings of the BPE tokens below ``<|endoftext|>``, in id order."""
    from transformers import WhisperTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode  # the GPT-2 byte <-> char table

    tokenizer = WhisperTokenizerFast.from_pretrained(model_dir)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    by_id = {i: t for t, i in tokenizer.get_vocab().items() if i < eot}
    byte_of = {ch: b for b, ch in bytes_to_unicode().items()}
    return [bytes(byte_of[ch] for ch in by_id[i]) for i in range(eot)]


def write_ggml(model_dir: Path, out_file: Path, fmt: str = "f16") -> Path:
    """Write the Whisper model in ``model_dir`` as ``out_file`` in format ``fmt`` (f32, f16, q8_0, q5_0,
    q4_0); written to a temporary file and renamed, so ``out_file`` is complete or absent."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    if fmt not in FORMATS:
        raise ValueError(f"ggml format {fmt!r}: expected one of {', '.join(FORMATS)}")
    file_ftype, weight_type = FORMATS[fmt]
    if weight_type not in (0, 1):
        file_ftype += 1000 * QNT_VERSION
    config = WhisperConfig.from_pretrained(model_dir)
    if config.encoder_ffn_dim != 4 * config.d_model or config.decoder_ffn_dim != 4 * config.d_model:
        raise ValueError(f"{model_dir}: feed-forward width {config.encoder_ffn_dim}/{config.decoder_ffn_dim} is not "
                         f"4 x d_model={config.d_model}; whisper.cpp cannot hold this model")
    filters = WhisperFeatureExtractor.from_pretrained(model_dir).mel_filters.T.astype(np.float32)  # (n_mels, n_fft)
    state = WhisperForConditionalGeneration.from_pretrained(model_dir, torch_dtype=torch.float32).state_dict()
    hparams = (config.vocab_size, config.max_source_positions, config.d_model, config.encoder_attention_heads,
               config.encoder_layers, config.max_target_positions, config.d_model, config.decoder_attention_heads,
               config.decoder_layers, config.num_mel_bins, file_ftype)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.tmp")
    with tmp.open("wb") as f:
        f.write(struct.pack("<I", MAGIC) + struct.pack(f"<{len(hparams)}i", *hparams))
        f.write(struct.pack("<2i", *filters.shape) + filters.astype("<f4").tobytes())
        tokens = _token_bytes(model_dir)
        f.write(struct.pack("<i", len(tokens)))
        for token in tokens:
            f.write(struct.pack("<i", len(token)) + token)
        for hf_name, tensor in state.items():
            name = ggml_name(hf_name)
            if name is None:
                continue
            array = tensor.numpy()
            if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
                array = array.reshape(-1, 1)  # whisper.cpp holds them as [1, n_state]
            ttype = _tensor_type(name, array, weight_type)
            encoded = name.encode()
            f.write(struct.pack("<3i", array.ndim, len(encoded), ttype))
            f.write(struct.pack(f"<{array.ndim}i", *reversed(array.shape)) + encoded)
            f.write(_encode(array, ttype))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(out_file)
    return out_file


@dataclass(frozen=True)
class GgmlInfo:
    hparams: dict[str, int]
    tensors: int
    weight_type: int  # ggml_type of the weight matrices
    size_bytes: int


def read_ggml_header(path: Path) -> GgmlInfo:
    """Walk the whole file (headers only, data skipped): magic, hyper-parameters, filters, vocabulary and
    every tensor's type, shape and data size must be consistent and the file must end exactly after the
    last tensor. Raises GgmlFormatError naming the file and what is wrong."""
    path = Path(path)
    size = path.stat().st_size if path.is_file() else -1
    if size < 0:
        raise GgmlFormatError(f"{path}: file not found")

    with path.open("rb") as f:
        def read(n: int, what: str) -> bytes:
            data = f.read(n)
            if len(data) != n:
                raise GgmlFormatError(f"{path}: truncated in {what} at byte {f.tell()} of {size}")
            return data

        (magic,) = struct.unpack("<I", read(4, "magic"))
        if magic != MAGIC:
            hint = " (a GGUF file: whisper.cpp 1.8 reads only ggml .bin)" if magic == 0x46554747 else ""
            raise GgmlFormatError(f"{path}: bad magic 0x{magic:08x}, expected 0x{MAGIC:08x}{hint}")
        hparams = dict(zip(HPARAMS, struct.unpack(f"<{len(HPARAMS)}i", read(4 * len(HPARAMS), "hyper-parameters"))))
        ftype = hparams["ftype"] % 1000
        weight_type = {f: w for f, w in FORMATS.values()}.get(ftype)
        if weight_type is None or hparams["n_mels"] not in (80, 128) or hparams["n_vocab"] <= 0:
            raise GgmlFormatError(f"{path}: implausible hyper-parameters {hparams}")
        n_mel, n_fft = struct.unpack("<2i", read(8, "mel filters"))
        if n_mel != hparams["n_mels"] or not 0 < n_fft <= 4096:
            raise GgmlFormatError(f"{path}: mel filter bank {n_mel}x{n_fft} does not match n_mels={hparams['n_mels']}")
        read(4 * n_mel * n_fft, "mel filters")
        (n_tokens,) = struct.unpack("<i", read(4, "vocabulary"))
        if not 0 < n_tokens <= hparams["n_vocab"]:
            raise GgmlFormatError(f"{path}: {n_tokens} tokens for n_vocab={hparams['n_vocab']}")
        for _ in range(n_tokens):
            (length,) = struct.unpack("<i", read(4, "vocabulary"))
            if not 0 <= length <= 256:
                raise GgmlFormatError(f"{path}: token of length {length} at byte {f.tell()}")
            read(length, "vocabulary")
        tensors = 0
        while f.tell() < size:
            n_dims, name_len, ttype = struct.unpack("<3i", read(12, f"tensor {tensors} header"))
            if not 1 <= n_dims <= 4 or not 0 < name_len <= 256 or ttype not in TYPE_SIZES:
                raise GgmlFormatError(f"{path}: bad header of tensor {tensors} (dims {n_dims}, type {ttype}) "
                                      f"at byte {f.tell() - 12}")
            shape = struct.unpack(f"<{n_dims}i", read(4 * n_dims, f"tensor {tensors} shape"))
            name = read(name_len, f"tensor {tensors} name").decode("utf-8", errors="replace")
            if name.endswith("mlp.0.weight") and list(shape) != [hparams["n_audio_state"], 4 * hparams["n_audio_state"]]:
                raise GgmlFormatError(f"{path}: tensor {name} has shape {list(shape)}, whisper.cpp expects "
                                      f"[{hparams['n_audio_state']}, {4 * hparams['n_audio_state']}]")
            block, block_bytes = TYPE_SIZES[ttype]
            if shape[0] % block:
                raise GgmlFormatError(f"{path}: tensor {name} rows of {shape[0]} are not a multiple of {block}")
            nbytes = int(np.prod(shape)) // block * block_bytes
            if f.tell() + nbytes > size:
                raise GgmlFormatError(f"{path}: truncated in tensor {name}: needs {nbytes} bytes, "
                                      f"{size - f.tell()} left")
            f.seek(nbytes, os.SEEK_CUR)
            tensors += 1
    # encoder: positions, 2 convs (weight, bias), final norm (2) + 15 per layer;
    # decoder: positions, token embedding, final norm (2) + 24 per layer (self- and cross-attention)
    expected = 7 + 15 * hparams["n_audio_layer"] + 4 + 24 * hparams["n_text_layer"]
    if tensors != expected:
        raise GgmlFormatError(f"{path}: {tensors} tensors, a Whisper with {hparams['n_audio_layer']}+"
                              f"{hparams['n_text_layer']} layers has {expected}")
    return GgmlInfo(hparams, tensors, weight_type, size)
