"""Redaction of a real decoding, end to end: a two-channel call in which the customer says a phone number,
served by the real whisper-base and called with the official ``openai`` client; the muted audio is
silent where the number was said, and the service log, /metrics and the jobs database hold no trace of
the number."""

from __future__ import annotations

import base64
import io
import re
import time
from pathlib import Path

import numpy as np
import openai
import pytest
import requests
import soundfile as sf
from conftest import TEST_PARAMS
from serve_harness import add_key, make_root, start_server

from zhasr.calltext.pii import KINDS
from zhasr.config import SynthParams, TranscribeParams
from zhasr.data.audio import load_16k
from zhasr.data.synth.call import assemble_call
from zhasr.data.synth.voice import Call, Speaker, apply_channel, render, speak, to_pinyin
from zhasr.transcribe import Transcriber
from zhasr.transcribe.redaction import finish_text

pytestmark = pytest.mark.slow

TURNS = [("您好，请问有什么可以帮您？", "m3", "wideband"), ("我的手机号码是，幺三八，一二三四，五六七八。", "m3", "wideband"),
         ("好的，请告诉我验证码。", "m3", "wideband"), ("验证码是，六，八，二，九。", "f2", "telephone")]


@pytest.fixture(scope="module")
def call(tmp_path_factory) -> Path:
    """Agent left, customer right, 16 kHz: the customer gives a phone number, then a code."""
    folder = tmp_path_factory.mktemp("pii-call")
    params = SynthParams()
    clips = []
    for k, (text, variant, channel) in enumerate(TURNS):
        speaker = Speaker(f"s{k}", variant, 130 if k == 1 else 150, 50)
        speech, rate = apply_channel(speak(to_pinyin(text), speaker), channel, params)
        samples = render(speech, rate, Call("c", speaker, "account", channel, 40.0, "white"),
                         np.random.default_rng(k), params)
        sf.write(folder / f"{k}.wav", samples, rate, subtype="PCM_16")
        clips.append((load_16k(folder / f"{k}.wav"), text, str(k)))
    samples, _ = assemble_call(clips, 16000, seed=0, noise_dbfs=-70)
    sf.write(folder / "call.wav", samples.T, 16000, subtype="PCM_16")
    return folder / "call.wav"


def test_a_number_said_in_a_call_is_redacted_muted_and_left_nowhere(call, base_dir, tmp_path):
    raw = Transcriber.open(base_dir, TranscribeParams()).transcribe(call, channels="split", words=True)
    spans = finish_text(raw, KINDS).redactions
    assert [r.kind for r in spans] and spans[0].kind == "phone", raw.text
    said = raw.segments[spans[0].segment].text
    number = said[said.index(re.search(r"\d", said)[0]):]  # what the model wrote for the number, as written
    digits = re.sub(r"\D", "", number)
    assert len(digits) >= 10, said

    root = make_root(tmp_path / "service", {**TEST_PARAMS, "transcribe": {}, "serve": {"model": str(base_dir)}})
    key = add_key(root, "desk")
    server = start_server(root, [])
    try:
        c = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=300)
        options = {"channels": "split", "redact": "all", "itn": "true"}
        diarized = c.audio.transcriptions.create(model="whisper-1", file=call.open("rb"),
                                                 response_format="diarized_json", extra_body=options)
        assert "[PHONE]" in diarized.text and {s.speaker for s in diarized.segments} == {"agent", "customer"}
        assert digits not in re.sub(r"\D", "", diarized.text)
        verbose = c.audio.transcriptions.create(model="whisper-1", file=call.open("rb"), response_format="verbose_json",
                                                extra_body={**options, "redacted_audio": "true"}).model_extra
        muted, rate = sf.read(io.BytesIO(base64.b64decode(verbose["redacted_audio"]["data"])), always_2d=True)
        original, _ = sf.read(call, always_2d=True)
        for r in verbose["redactions"]:
            inside = slice(int(r["audio_start"] * rate), int(r["audio_end"] * rate))
            assert np.abs(muted[inside]).max() == 0 and np.abs(original[inside, r["channel"]]).max() > 0.01
        assert np.abs(muted).max() > 0.01  # the rest is still heard
        job = requests.post(f"{server.url}/v1/audio/transcriptions/jobs", headers={"Authorization": f"Bearer {key}"},
                            files={"file": call.open("rb")}, data={"model": "whisper-1", **options}, timeout=60).json()
        deadline = time.monotonic() + 300
        while requests.get(f"{server.url}/v1/audio/transcriptions/jobs/{job['id']}", timeout=10,
                           headers={"Authorization": f"Bearer {key}"}).json()["status"] != "done":
            assert time.monotonic() < deadline
            time.sleep(1)
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    finally:
        server.stop()
    stored = b"".join(p.read_bytes() for p in (root / "serve" / "jobs").rglob("*") if p.is_file())
    for place, content in (("log", server.log.read_text(errors="replace")), ("metrics", metrics),
                           ("jobs", stored.decode("utf-8", errors="replace"))):
        assert number not in content and digits not in re.sub(r"\D", "", content.replace("\n", " ")), place
        assert "[PHONE]" in content or place != "jobs"


def test_a_number_the_served_model_cannot_hear_is_redacted_where_the_detector_heard_it(call, base_dir, tiny_model_dir,
                                                                                       tmp_path):
    """The random tiny model serves and hears no number; whisper-base, named as ``transcribe.detector``,
    hears the customer's phone number: the tiny model's characters at that time are redacted and muted."""
    served = Transcriber.open(tiny_model_dir, TranscribeParams()).transcribe(call, channels="split", words=True)
    assert served.segments and not finish_text(served, KINDS).redactions
    said = next(s for s in Transcriber.open(base_dir, TranscribeParams()).transcribe(call, channels="split").segments
                if "138" in s.text or "幺三八" in s.text)
    root = make_root(tmp_path / "service", {**TEST_PARAMS, "transcribe": {"detector": str(base_dir)},
                                            "serve": {"model": str(tiny_model_dir)}})
    key = add_key(root, "desk")
    server = start_server(root, [])
    try:
        c = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=300)
        response = c.audio.transcriptions.create(model="tiny-random", file=call.open("rb"), response_format="verbose_json",
                                                 extra_body={"channels": "split", "redact": "phone",
                                                             "redacted_audio": "true"})
    finally:
        server.stop()
    verbose = response.model_extra
    phones = [r for r in verbose["redactions"] if r["kind"] == "phone"]
    assert "[PHONE]" in response.text and phones, response.text
    muted, rate = sf.read(io.BytesIO(base64.b64decode(verbose["redacted_audio"]["data"])), always_2d=True)
    for r in phones:
        assert r["channel"] == said.channel and r["audio_start"] < said.end and said.start < r["audio_end"]
        assert np.abs(muted[int(r["audio_start"] * rate):int(r["audio_end"] * rate)]).max() == 0
    heard = re.sub(r"\D", "", said.text)  # what the detector wrote is kept nowhere either
    assert len(heard) >= 10 and heard not in re.sub(r"\D", "", server.log.read_text(errors="replace"))
