"""Exports on the tiny model: each format is written, loaded by its own runtime and transcribes;
a corrupt or cut ggml file is rejected before whisper.cpp sees it."""

from __future__ import annotations

import struct

import pytest
from conftest import write_tone

from zhasr.export.formats import EXPORT_FORMATS, size_on_disk, transcribe_export, write_export
from zhasr.export.ggml import GgmlFormatError, read_ggml_header, write_ggml
from zhasr.export.whispercpp import transcribe_whispercpp


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    return write_tone(tmp_path_factory.mktemp("audio") / "call.wav", 1.5, rate=8000)


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_each_format_is_written_loaded_and_transcribes(fmt, tiny_model_dir, wav, tmp_path):
    path = write_export(fmt, tiny_model_dir, tmp_path)
    texts, seconds = transcribe_export(fmt, path, [wav, wav], "zh", threads=2, max_tokens=8)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts) and seconds > 0
    assert texts[0] == texts[1]  # greedy: the same clip gives the same text
    if fmt.startswith("ggml"):
        info = read_ggml_header(path)
        assert info.tensors == 7 + 15 * 2 + 4 + 24 * 2 and info.hparams["n_vocab"] == 51865
    else:
        assert {"model.bin", "tokenizer.json", "vocabulary.json"} <= {p.name for p in path.iterdir()}


def test_quantized_ggml_files_are_smaller(tiny_model_dir, tmp_path):
    sizes = {fmt: size_on_disk(write_ggml(tiny_model_dir, tmp_path / f"{fmt}.bin", fmt)) for fmt in ("f16", "q8_0", "q4_0")}
    assert sizes["f16"] > sizes["q8_0"] > sizes["q4_0"]


def test_corrupt_or_truncated_ggml_is_rejected_before_whispercpp(tiny_model_dir, wav, tmp_path):
    good = write_ggml(tiny_model_dir, tmp_path / "good.bin", "q8_0").read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(GgmlFormatError, match=r"cut\.bin: truncated in tensor"):
        transcribe_whispercpp(cut, [wav])
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
