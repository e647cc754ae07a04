"""Evaluation's shared lower encoder on a real Whisper: whisper-base computes its lower 4 layers' output
on the real-zh clips, the demo's candidate (when the demo has run) reads it where its lower layers are the
base model's (trained on a CPU, merged in float32), and each decodes the same text as with CTranslate2's
own float32 encoder. That a merged candidate does share them is checked on the tiny model in test_flow_e2e."""

from __future__ import annotations

import json

import pytest
from conftest import REAL_ZH, REPO

from zhasr.config import TranscribeParams
from zhasr.data.audio import load_16k
from zhasr.export.ct2 import float32_copy
from zhasr.model.decode import DecodeOptions
from zhasr.model.shared_encoder import SharedLowerEncoder
from zhasr.transcribe.cache import weights_digest
from zhasr.transcribe.ct2_runtime import Ct2Runtime

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not REAL_ZH.is_dir(), reason=f"{REAL_ZH}: real-zh clips not present beside the checkout")]

CANDIDATE = REPO / "models" / "candidate"


def test_shared_lower_layers_decode_as_ctranslate2_own_encoder(base_dir, tmp_path):
    clips = [load_16k(REAL_ZH / json.loads(line)["audio"])
             for line in (REAL_ZH / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    options = DecodeOptions(TranscribeParams())
    models = [base_dir] + ([CANDIDATE] if (CANDIDATE / "config.json").is_file() else [])
    computed = set()
    for model in models:
        ct2_dir = float32_copy(model, tmp_path / "ct2", weights_digest(model))
        own = [t.text for t in Ct2Runtime(ct2_dir, options).decode(clips)]
        encoder = SharedLowerEncoder(model, 4, tmp_path / "states")
        shared = [t.text for t in Ct2Runtime(ct2_dir, options, encoder=encoder).decode(clips)]
        assert shared == own, model
        # a candidate trained on the cached-encoder path reads what the base model computed
        read = encoder.folder in computed
        assert (encoder.hits, encoder.misses) == ((len(clips), 0) if read else (0, len(clips))), model
        computed.add(encoder.folder)
