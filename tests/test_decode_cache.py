"""The decode cache: a hit gives back the stored decoding; another option, weight or audio misses; an
entry that does not match its key is ignored."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from zhasr.config import SynthParams, TranscribeParams
from zhasr.data.audio import load_16k
from zhasr.transcribe import Transcriber
from zhasr.transcribe.cache import DecodeCache, DecodeKey, audio_digest, engine_of, transcribe_cached, weights_digest

PARAMS = TranscribeParams(max_new_tokens=8)  # the random model never stops by itself


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from zhasr.data.synth import synthesize_batch

    batch = synthesize_batch(tmp_path_factory.mktemp("cache-clips"), SynthParams(batch="cache", n_clips=3, n_speakers=1, seed=3),
                             progress=lambda done, total: None)
    return [load_16k(p) for p in sorted((batch / "audio").glob("*.wav"))]


def entry_path(cache: DecodeCache, transcriber, weights: str, clip):
    engine, options = engine_of(transcriber)
    digest = DecodeKey(weights, audio_digest(clip), engine, options).digest
    return cache.root / digest[:2] / f"{digest}.json"


def test_a_hit_returns_the_stored_decoding_and_any_change_of_key_misses(clips, tiny_model_dir, tmp_path):
    cache = DecodeCache(tmp_path / "cache")
    transcriber = Transcriber.open(tiny_model_dir, PARAMS, identity="champion")
    weights = weights_digest(tiny_model_dir)

    first = transcribe_cached(transcriber, clips, cache, weights)
    assert (first.hits, first.misses) == (0, 3)
    assert len(list(cache.root.rglob("*.json"))) == 3

    # Mark one stored decoding: a hit must hand back exactly what is stored, not decode again.
    path = entry_path(cache, transcriber, weights, clips[1])
    entry = json.loads(path.read_text())
    entry["transcription"]["text"] = "缓存里的文字"
    path.write_text(json.dumps(entry))
    again = transcribe_cached(Transcriber.open(tiny_model_dir, PARAMS, identity="v1"), clips, cache, weights)
    assert (again.hits, again.misses) == (3, 0)
    assert again.transcriptions[1].text == "缓存里的文字"
    assert [t.segments for t in again.transcriptions] == [t.segments for t in first.transcriptions]
    assert {t.model for t in again.transcriptions} == {"v1"}  # relabelled with the asking model

    # A model whose decodings are all cached is never opened.
    def must_not_open():
        raise AssertionError("opened a model although every clip was cached")

    lazy = transcribe_cached(must_not_open, clips, cache, weights, engine_of(transcriber), "v2")
    assert (lazy.hits, lazy.misses) == (3, 0) and lazy.transcriptions[1].text == "缓存里的文字"
    assert {t.model for t in lazy.transcriptions} == {"v2"}

    changed_option = Transcriber.open(tiny_model_dir, dataclasses.replace(PARAMS, max_new_tokens=9))
    assert transcribe_cached(changed_option, clips, cache, weights).misses == 3
    assert transcribe_cached(transcriber, clips, cache, "0" * 64).misses == 3  # other weights
    louder = [c * 0.5 for c in clips[:1]]
    assert transcribe_cached(transcriber, louder, cache, weights).misses == 1  # other audio


def test_an_entry_that_does_not_match_its_key_or_does_not_parse_is_decoded_again(clips, tiny_model_dir, tmp_path):
    cache = DecodeCache(tmp_path / "cache")
    transcriber = Transcriber.open(tiny_model_dir, PARAMS)
    weights = weights_digest(tiny_model_dir)
    transcribe_cached(transcriber, clips[:2], cache, weights)
    tampered, broken = (entry_path(cache, transcriber, weights, c) for c in clips[:2])
    entry = json.loads(tampered.read_text())
    entry["key"]["weights"] = "f" * 64
    entry["transcription"]["text"] = "不该被信任"
    tampered.write_text(json.dumps(entry))
    broken.write_text("{not json")

    result = transcribe_cached(transcriber, clips[:2], cache, weights)
    assert (result.hits, result.misses) == (0, 2)
    assert result.transcriptions[0].text != "不该被信任"
    assert json.loads(tampered.read_text())["key"]["weights"] == weights  # rewritten with the right key


def test_weights_digest_follows_the_bytes_of_the_weights(tiny_model_dir, tmp_path):
    import shutil

    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    assert weights_digest(copy) == weights_digest(tiny_model_dir)
    weights = next(p for p in copy.iterdir() if p.suffix == ".safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert weights_digest(copy) != weights_digest(tiny_model_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no weight file"):
        weights_digest(empty)


def test_the_engine_key_names_a_shared_lower_encoder_and_is_as_before_without_one():
    from importlib import metadata

    from zhasr.model.decode import DecodeOptions
    from zhasr.model.shared_encoder import describe
    from zhasr.transcribe.cache import engine_key

    options = DecodeOptions(PARAMS)
    plain, plain_options = engine_key("ct2", options, PARAMS, "zh")
    assert plain == f"ct2 ctranslate2={metadata.version('ctranslate2')}"  # the key decodings were stored under
    shared, shared_options = engine_key("ct2", options, PARAMS, "zh", describe(4))
    assert shared == f"{plain} [{describe(4)}]" and shared_options == plain_options
    assert engine_key("ct2", options, PARAMS, "zh", describe(3))[0] != shared


def test_evaluation_reports_its_cache_figures_at_info(project, tiny_model_dir, caplog):
    import logging

    from tasks.decoding import Model, decode_sets
    from zhasr.context import StageContext

    ctx = StageContext.load(None, ["evaluate.runtime=transformers"])
    clips = {"test": [np.zeros(16000, dtype=np.float32), np.full(8000, 0.01, dtype=np.float32)]}
    model = Model.of("champion", tiny_model_dir)
    stages = logging.getLogger("tasks")
    propagates, stages.propagate = stages.propagate, True  # the CLI sends them to stderr without the root logger
    try:
        with caplog.at_level(logging.INFO, logger="tasks"):
            decode_sets(ctx, model, clips)
            _, counts = decode_sets(ctx, model, clips)
    finally:
        stages.propagate = propagates
    assert counts == {"hits": 2, "misses": 0}
    figures = [r for r in caplog.records if r.getMessage().startswith("decode cache")]
    assert figures and {r.levelname for r in figures} == {"INFO"} and "2 hits" in figures[-1].getMessage()
