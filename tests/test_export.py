"""Exports on the tiny model: each format is written, loaded by its own runtime and transcribes;
a corrupt or cut ggml file is rejected before whisper.cpp sees it; a GPTQ checkpoint loads back
the weights it was quantized to."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest
import torch
from conftest import write_tone
from torch import nn
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from tasks.export import transcribe_export
from zhasr.config import ExportParams
from zhasr.data.audio import load_16k
from zhasr.export.formats import EXPORT_FORMATS, size_on_disk, write_export
from zhasr.export.ggml import GgmlFormatError, read_ggml_header, write_ggml
from zhasr.export.gptq import (
    calibration_examples,
    load_gptq,
    quantize_whisper,
    transcribe_gptq,
    write_gptq,
)
from zhasr.export.whispercpp import transcribe_whispercpp

TINY_GPTQ = ExportParams(gptq_group_size=64)  # the tiny model's layers are 64 and 256 wide


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    return write_tone(tmp_path_factory.mktemp("audio") / "call.wav", 1.5, rate=8000)


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibration")
    return [(load_16k(write_tone(folder / f"{i}.wav", 1.0 + i / 2, freq=180.0 + 40 * i)), text)
            for i, text in enumerate(["您好请问有什么可以帮您", "我的订单还没有到", "好的谢谢再见"])]


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_each_format_is_written_loaded_and_transcribes(fmt, tiny_model_dir, wav, calibration, tmp_path):
    path = write_export(fmt, tiny_model_dir, tmp_path, calibration, "zh", TINY_GPTQ)
    texts, seconds = transcribe_export(fmt, path, [wav, wav], "zh", threads=2, max_tokens=8)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts) and seconds > 0
    assert texts[0] == texts[1]  # greedy: the same clip gives the same text
    if fmt.startswith("ggml"):
        info = read_ggml_header(path)
        assert info.tensors == 7 + 15 * 2 + 4 + 24 * 2 and info.hparams["n_vocab"] == 51865
    elif fmt.startswith("ct2"):
        assert {"model.bin", "tokenizer.json", "vocabulary.json"} <= {p.name for p in path.iterdir()}
    else:
        assert {"model.safetensors", "quantize_config.json", "tokenizer.json", "processor_config.json"} <= {
            p.name for p in path.iterdir()}


def _logits(model, example) -> torch.Tensor:
    with torch.no_grad():
        return model(input_features=example.input_features, decoder_input_ids=example.decoder_input_ids).logits


def test_gptq_quantizes_both_stacks_and_loads_back_what_it_quantized(tiny_model_dir, calibration, tmp_path):
    model = WhisperForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    examples = calibration_examples(WhisperProcessor.from_pretrained(tiny_model_dir), calibration, "zh")
    full = _logits(model, examples[0])
    packed = quantize_whisper(model, examples, TINY_GPTQ)  # weights now hold their 4-bit values
    quantized = _logits(model, examples[0])
    # 2 encoder layers x 6 linears (q, k, v, out, fc1, fc2) + 2 decoder layers x 10 (with cross-attention)
    assert len(packed) == 32 and {name.split(".")[1] for name in packed} == {"encoder", "decoder"}

    path = write_gptq(tiny_model_dir, tmp_path / "gptq", calibration, "zh", TINY_GPTQ)
    config = json.loads((path / "quantize_config.json").read_text())
    assert config["bits"] == 4 and config["format"] == "gptq" and config["block_name_to_quantize"] == "model"
    loaded, _ = load_gptq(path)
    kernels = {name for name, m in loaded.named_modules() if name.startswith("model.") and hasattr(m, "qweight")}
    assert kernels == set(packed) and type(loaded.proj_out) is nn.Linear
    quantization_error = (full - quantized).abs().max()
    assert quantization_error > 0
    # What loads back is the quantized model, not the full-precision one and not a mis-packed one.
    assert (_logits(loaded, examples[0]) - quantized).abs().max() < quantization_error / 2


def test_gptq_with_act_order_is_written_loaded_and_transcribes(tiny_model_dir, calibration, wav, tmp_path):
    path = write_gptq(tiny_model_dir, tmp_path / "gptq", calibration, "zh", ExportParams(gptq_group_size=64, gptq_desc_act=True))
    assert json.loads((path / "quantize_config.json").read_text())["desc_act"] is True
    texts, _ = transcribe_gptq(path, [load_16k(wav)] * 2, max_tokens=8)
    assert texts[0] == texts[1]
    # gptqmodel's import sets HF_HOME, PYTORCH_ALLOC_CONF and more for the whole process: a fresh process
    # that loads the export keeps its environment as it was
    check = ("import os; before = dict(os.environ); from zhasr.export.gptq import load_gptq; "
             f"load_gptq({str(path)!r}); print(sorted(k for k in os.environ.keys() | before if os.environ.get(k) != before.get(k)))")
    plain = {key: os.environ[key] for key in ("PATH", "HOME")}  # not this process's, which an import may have set
    changed = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True, env=plain).stdout
    assert changed.strip().splitlines()[-1] == "[]", changed


def test_gptq_refuses_a_group_size_that_does_not_divide_the_layers(tiny_model_dir, calibration, tmp_path):
    with pytest.raises(ValueError, match=r"group_size 128 must divide .*\[64, 256\]"):
        write_gptq(tiny_model_dir, tmp_path / "gptq", calibration, "zh", ExportParams(gptq_group_size=128))
    with pytest.raises(ValueError, match="calibration clips"):
        write_gptq(tiny_model_dir, tmp_path / "gptq", [], "zh", TINY_GPTQ)
    assert not (tmp_path / "gptq").exists()
    with pytest.raises(FileNotFoundError, match="quantize_config.json"):
        load_gptq(tiny_model_dir)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPTQ on GPU: no CUDA device")
def test_gptq_quantizes_and_transcribes_on_gpu(tiny_model_dir, calibration, wav, tmp_path):
    path = write_gptq(tiny_model_dir, tmp_path / "gptq", calibration, "zh", TINY_GPTQ, device="cuda")
    assert json.loads((path / "gptq_calibration.json").read_text())["device"] == "cuda"
    texts, _ = transcribe_gptq(path, [load_16k(wav)] * 2, max_tokens=8, device="cuda")
    cpu_texts, _ = transcribe_gptq(path, [load_16k(wav)] * 2, max_tokens=8)
    assert texts[0] == texts[1] and cpu_texts[0] == cpu_texts[1]


def test_quantized_ggml_files_are_smaller(tiny_model_dir, tmp_path):
    sizes = {fmt: size_on_disk(write_ggml(tiny_model_dir, tmp_path / f"{fmt}.bin", fmt)) for fmt in ("f16", "q8_0", "q4_0")}
    assert sizes["f16"] > sizes["q8_0"] > sizes["q4_0"]


def test_corrupt_or_truncated_ggml_is_rejected_before_whispercpp(tiny_model_dir, wav, tmp_path):
    good = write_ggml(tiny_model_dir, tmp_path / "good.bin", "q8_0").read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(GgmlFormatError, match=r"cut\.bin: truncated in tensor"):
        transcribe_whispercpp(cut, [load_16k(wav)], [8])
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + good[4:])
    with pytest.raises(GgmlFormatError, match="GGUF"):
        read_ggml_header(gguf)
    bad_header = tmp_path / "bad_header.bin"  # a tensor claims 9 dimensions
    offset = good.index(b"encoder.positional_embedding") - 4 * 2 - 12
    bad_header.write_bytes(good[:offset] + struct.pack("<3i", 9, 28, 0) + good[offset + 12:])
    with pytest.raises(GgmlFormatError, match=r"bad header of tensor \d+ \(dims 9"):
        read_ggml_header(bad_header)
    extra = tmp_path / "extra.bin"
    extra.write_bytes(good + b"\0" * 7)
    with pytest.raises(GgmlFormatError, match="extra.bin"):
        read_ggml_header(extra)
    with pytest.raises(GgmlFormatError, match="file not found"):
        read_ggml_header(tmp_path / "missing.bin")
