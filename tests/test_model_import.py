"""CTranslate2 -> Hugging Face Whisper import, and the tiny random Whisper built on the real tokenizer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from safetensors.torch import load_file
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from zhasr.model.ct2_import import import_ct2_model
from zhasr.model.ct2_import.names import hf_state_dict_from_ct2
from zhasr.model.ct2_import.packaged import packaged_model_files, packaged_whisper_base_dir
from zhasr.model.ct2_import.reader import Ct2FormatError, read_ct2_model
from zhasr.model.ct2_import.writer import build_tokenizer, check_vocabulary
from zhasr.model.tiny import build_tiny_whisper

REAL_ZH = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-zh"
PROMPT = "<|startoftranscript|><|zh|><|transcribe|><|notimestamps|>"
PROMPT_IDS = [50258, 50260, 50359, 50363]  # multilingual Whisper (v1/v2) ids
EOT = 50257


def _tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def _generation(model_dir: Path) -> dict:
    return json.loads((model_dir / "generation_config.json").read_text())


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_whisper(tmp_path_factory.mktemp("tiny") / "tiny-random")


@pytest.fixture(scope="module")
def tiny_ct2_dir(tiny_dir, tmp_path_factory) -> Path:
    """The tiny model converted by CTranslate2's own converter (float32, no quantization)."""
    import ctranslate2

    out = tmp_path_factory.mktemp("ct2") / "tiny-ct2"
    converter = ctranslate2.converters.TransformersConverter(
        str(tiny_dir), copy_files=["tokenizer.json", "preprocessor_config.json"]
    )
    return Path(converter.convert(str(out)))


def test_tiny_model_loads_with_real_tokenizer(tiny_dir):
    model = WhisperForConditionalGeneration.from_pretrained(tiny_dir)
    processor = WhisperProcessor.from_pretrained(tiny_dir)
    tok = processor.tokenizer
    assert (model.config.d_model, model.config.encoder_layers, model.config.decoder_layers) == (64, 2, 2)
    assert model.config.vocab_size == len(tok) == 51865
    assert tok(PROMPT, add_special_tokens=False).input_ids == PROMPT_IDS
    assert tok.convert_tokens_to_ids(["<|0.00|>", "<|30.00|>"]) == [50364, 51864]
    assert tok.decode([*PROMPT_IDS, *tok("您好", add_special_tokens=False).input_ids, EOT], skip_special_tokens=True) == "您好"
    assert processor.feature_extractor.feature_size == 80
    gen = model.generation_config
    assert gen.lang_to_id["<|zh|>"] == 50260 and len(gen.lang_to_id) == 99
    assert gen.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert (gen.no_timestamps_token_id, gen.decoder_start_token_id, gen.is_multilingual) == (50363, 50258, True)
    assert gen.alignment_heads == [[1, 0], [1, 1]]  # whisper-base's heads do not exist in 2 layers


def test_tiny_generate_on_noise(tiny_dir):
    model = WhisperForConditionalGeneration.from_pretrained(tiny_dir).eval()
    processor = WhisperProcessor.from_pretrained(tiny_dir)
    noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1  # 1 s
    features = processor.feature_extractor(noise, sampling_rate=16000, return_tensors="pt").input_features
    assert features.shape == (1, 80, 3000)
    with torch.inference_mode():
        out = model.generate(features, language="zh", task="transcribe", max_new_tokens=5)
    # transformers 5 returns the new tokens only, without the prompt or <|endoftext|>
    assert out.shape[0] == 1 and out.shape[1] <= 5
    assert all(0 <= t < 51865 for t in out[0].tolist())


def test_tiny_model_is_deterministic_by_seed(tiny_dir, tmp_path):
    same, other = build_tiny_whisper(tmp_path / "same", seed=0), build_tiny_whisper(tmp_path / "other", seed=1)
    a, b, c = _tensors(tiny_dir), _tensors(same), _tensors(other)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.decoder.layers.0.fc1.weight"], c["model.decoder.layers.0.fc1.weight"])


def test_build_is_idempotent(tiny_dir):
    stamp = (tiny_dir / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_whisper(tiny_dir, seed=7) == tiny_dir
    assert (tiny_dir / "model.safetensors").stat().st_mtime_ns == stamp


def test_ct2_round_trip_is_bit_exact(tiny_dir, tiny_ct2_dir, tmp_path):
    back = import_ct2_model(tiny_ct2_dir, tmp_path / "back")
    original, imported = _tensors(tiny_dir), _tensors(back)
    assert imported.keys() == original.keys()
    for name, tensor in original.items():
        assert imported[name].dtype == torch.float32
        assert torch.equal(imported[name], tensor), name
    assert _generation(back) == _generation(tiny_dir)
    assert import_ct2_model(tiny_ct2_dir, back) == back  # complete: returned as is
    assert [p.name for p in tmp_path.iterdir()] == ["back"]  # no temp dirs left behind


def test_parser_reads_what_ctranslate2_wrote(tiny_ct2_dir):
    ct2 = read_ct2_model(tiny_ct2_dir / "model.bin")
    assert (ct2.version, ct2.spec) == (6, "WhisperSpec")
    assert ct2.get("decoder/projection/weight") is ct2.get("decoder/embeddings/weight")  # alias
    fused = ct2.require("decoder/layer_0/self_attention/linear_0/bias")
    assert fused.shape == (3 * 64,) and not fused[64:128].any()  # k bias is zero
    state = hf_state_dict_from_ct2(ct2)
    assert state["proj_out.weight"] is state["model.decoder.embed_tokens.weight"]


def test_truncated_model_bin_names_the_file(tiny_ct2_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_ct2_dir, broken)
    with open(broken / "model.bin", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(Ct2FormatError, match=r"broken/model\.bin.*truncated"):
        import_ct2_model(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]


def test_missing_files_are_named(tiny_ct2_dir, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_ct2_dir, src)
    (src / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        import_ct2_model(src, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="model.bin"):
        read_ct2_model([src / "model.bin", src / "model.bin.part2"])


def test_packaged_tokenizer_matches_ct2_vocabulary():
    files = packaged_model_files()
    assert [p.name for p in files.model_parts] == ["model.bin.part1", "model.bin.part2"]
    check_vocabulary(build_tokenizer(files.tokenizer, 51865), files.vocabulary)


# ---------------------------------------------------------------------------
# The real whisper-base (145 MB fp16)
# ---------------------------------------------------------------------------


def _load_16k(path: Path) -> np.ndarray:
    """(n_samples,) float32 mono at 16 kHz."""
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    return soxr.resample(mono, rate, 16000).astype(np.float32) if rate != 16000 else mono


@pytest.mark.slow
def test_packaged_base_import_is_bit_exact(base_dir):
    ct2 = read_ct2_model(packaged_model_files().model_parts)
    expected = hf_state_dict_from_ct2(ct2)
    model = WhisperForConditionalGeneration.from_pretrained(base_dir)
    got = model.state_dict()
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        assert tensor.dtype == torch.float16
        assert torch.equal(got[name], tensor.float()), name
    assert (model.config.d_model, model.config.encoder_layers, model.config.decoder_attention_heads) == (512, 6, 8)
    assert model.generation_config.alignment_heads[0] == [3, 1]


@pytest.fixture(scope="module")
def base_and_reference(base_dir, tmp_path_factory):
    """(imported model, its processor, ctranslate2.models.Whisper on the same packaged weights)."""
    import ctranslate2

    ct2_dir = packaged_whisper_base_dir(tmp_path_factory.mktemp("cache"))
    model = WhisperForConditionalGeneration.from_pretrained(base_dir).eval()
    reference = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32")
    return model, WhisperProcessor.from_pretrained(base_dir), reference


@pytest.mark.slow
@pytest.mark.skipif(not REAL_ZH.is_dir(), reason=f"{REAL_ZH}: real-zh clips not present beside the checkout")
@pytest.mark.parametrize("clip", ["yeyupiaoling_test.wav", "thchs30_A2_3.wav", "higgs_zh_man_sichuan.wav"])
def test_base_greedy_tokens_match_ctranslate2(base_and_reference, clip):
    import ctranslate2

    model, processor, reference = base_and_reference
    assert processor.tokenizer(PROMPT, add_special_tokens=False).input_ids == PROMPT_IDS
    features = processor.feature_extractor(
        _load_16k(REAL_ZH / clip), sampling_rate=16000, return_tensors="np"
    ).input_features  # (1, 80, 3000) log-mel
    result = reference.generate(ctranslate2.StorageView.from_array(features), [PROMPT_IDS], beam_size=1)
    expected = result[0].sequences_ids[0]  # text tokens: no prompt, no <|endoftext|>

    with torch.inference_mode():
        out = model.generate(
            torch.from_numpy(features), language="zh", task="transcribe", num_beams=1, do_sample=False,
            return_dict_in_generate=True,  # the plain tensor drops the prompt and <|endoftext|>
        )
    tokens = out.sequences[0].tolist()
    assert tokens[:4] == PROMPT_IDS and tokens[-1] == EOT  # finished, not cut off
    assert len(expected) > 10
    assert tokens[4:-1] == expected
