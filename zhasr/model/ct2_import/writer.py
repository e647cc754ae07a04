"""A Hugging Face Whisper folder written from mapped weights: tokenizer, config, generation config
(from CTranslate2's config.json), feature extractor; written atomically."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from tokenizers import Tokenizer
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)

from zhasr.model.ct2_import.names import WhisperDims
from zhasr.model.ct2_import.reader import Ct2FormatError

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
