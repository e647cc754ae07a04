"""Exports of the real whisper-base transcribe real Mandarin as well as the model they came from."""

from __future__ import annotations

import json

import pytest
from conftest import REAL_ZH

from tasks.export import transcribe_export
from zhasr.data.audio import load_16k
from zhasr.evaluation.metrics import character_error_rate
from zhasr.export.formats import write_export
from zhasr.model.decode import DecodeOptions, transcribe
from zhasr.model.loading import load_model

CLIPS = ["yeyupiaoling_test.wav", "thchs30_A2_3.wav", "higgs_zh_man_sichuan.wav"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not REAL_ZH.is_dir(), reason=f"{REAL_ZH}: real-zh clips not present beside the checkout")]


@pytest.fixture(scope="module")
def real_zh_texts() -> dict[str, str]:
    texts = {}
    for line in (REAL_ZH / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        texts[row["audio"].split("/")[-1]] = row["text"]
    return texts


@pytest.fixture(scope="module")
def references(real_zh_texts):
    return [real_zh_texts[c] for c in CLIPS]


@pytest.fixture(scope="module")
def calibration(real_zh_texts):
    """GPTQ calibrates on 8 real-zh clips other than the scored ones."""
    others = sorted(name for name in real_zh_texts if name not in CLIPS)[:8]
    return [(load_16k(REAL_ZH / name), real_zh_texts[name]) for name in others]


@pytest.fixture(scope="module")
def transformers_cer(base_dir, references):
    model, processor = load_model(base_dir)
    hypotheses = [t.text for t in transcribe(model, processor, [load_16k(REAL_ZH / c) for c in CLIPS], DecodeOptions())]
    return character_error_rate(references, hypotheses).cer


@pytest.mark.parametrize("fmt, limit", [("ggml-q8_0", 0.03), ("ggml-q5_0", 0.05), ("ct2-int8", 0.03),
                                        ("gptq-4bit", 0.05)])
def test_export_cer_stays_near_the_transformers_model(fmt, limit, base_dir, references, transformers_cer, calibration,
                                                      tmp_path):
    path = write_export(fmt, base_dir, tmp_path, calibration)
    texts, _ = transcribe_export(fmt, path, [REAL_ZH / c for c in CLIPS], "zh", threads=2)
    cer = character_error_rate(references, texts).cer
    assert cer <= transformers_cer + limit, (fmt, cer, transformers_cer, texts)
