"""Synthetic call-center corpus: text, pinyin, determinism, channels, durations, failures."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from zhasr.calltext.pii import find_pii
from zhasr.config import DEFAULT_TEXT_REGEX, SynthParams
from zhasr.data import synth
from zhasr.data.synth import check_batch_settings, synthesize_batch, words
from zhasr.data.synth.voice import MissingToolError, to_pinyin
from zhasr.data.synth.words import int_zh
from zhasr.data.text import HAN_CHAR, normalize

needs_tools = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="needs espeak-ng and sox (apt-get install espeak-ng sox)")

OPTIONS = SynthParams(batch="b1", n_clips=8, n_speakers=4, seed=3, telephone_fraction=0.5)
QUIET = lambda done, total: None  # noqa: E731


def read_rows(batch: Path) -> list[dict]:
    return [json.loads(line) for line in (batch / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> tuple[Path, Path]:
    """The same options synthesized twice, into two folders."""
    a = synthesize_batch(tmp_path_factory.mktemp("a"), OPTIONS, progress=QUIET)
    b = synthesize_batch(tmp_path_factory.mktemp("b"), OPTIONS, progress=QUIET)
    return a, b


def test_pinyin_of_a_sample_sentence():
    assert to_pinyin("您好，请问订单号是三五七二吗？") == (
        "nin2 hao3 , qing3 wen4 ding4 dan1 hao4 shi4 san1 wu3 qi1 er4 ma5 .")
    assert to_pinyin("女士，退款一百零五元。") == "nv3 shi4 , tui4 kuan3 yi4 bai3 ling2 wu3 yuan2 ."
    with pytest.raises(ValueError, match="'1'"):
        to_pinyin("订单123")


def test_numbers_are_written_as_spoken():
    cases = {0: "零", 10: "十", 15: "十五", 105: "一百零五", 110: "一百一十", 1050: "一千零五十",
             20010: "二万零一十", 12345: "一万二千三百四十五"}
    assert {n: int_zh(n) for n in cases} == cases
    assert words.digits_zh("3572") == "三五七二"
    assert words.count_zh(2) == "两"


def test_sentences_are_chinese_and_mostly_distinct():
    rng = np.random.default_rng(0)
    sentences = [words.make_sentence(rng, words.TOPICS[i % len(words.TOPICS)], first=i % 4 == 0, last=i % 4 == 3)
                 for i in range(1000)]
    texts = [text for text, _ in sentences]
    assert len(set(texts)) > 800
    templates = {template for _, template in sentences}  # "order/3": which template each text filled
    assert templates == {f"{kind}/{i}" for kind, pool in words.TEMPLATES.items() for i in range(len(pool))}
    for text in texts:
        to_pinyin(text)  # no digits or Latin letters
        assert len(HAN_CHAR.findall(text)) >= 5


@needs_tools
def test_same_seed_gives_identical_bytes(batches):
    a, b = batches
    assert (a / "manifest.jsonl").read_bytes() == (b / "manifest.jsonl").read_bytes()
    names = sorted(p.name for p in (a / "audio").iterdir())
    assert names == sorted(p.name for p in (b / "audio").iterdir()) and len(names) == OPTIONS.n_clips
    for name in names:
        assert (a / "audio" / name).read_bytes() == (b / "audio" / name).read_bytes(), name


@needs_tools
def test_manifest_rows_channels_and_durations(batches):
    batch = batches[0]
    rows = read_rows(batch)
    assert len(rows) == OPTIONS.n_clips
    assert {r["channel"] for r in rows} == {"telephone", "wideband"}
    assert len({r["speaker"] for r in rows}) == OPTIONS.n_speakers
    for row in rows:
        assert set(row) == {"id", "audio", "text", "template", "speaker", "call_id", "channel", "snr_db"}
        assert row["snr_db"] in OPTIONS.snr_db
        samples, rate = sf.read(batch / row["audio"], dtype="float32")
        assert rate == (8000 if row["channel"] == "telephone" else 16000)
        assert samples.ndim == 1 and 0.5 <= len(samples) / rate <= 15.0
        assert np.sqrt(np.mean(samples**2)) > 1e-3  # not silent
        assert len(HAN_CHAR.findall(row["text"])) >= 5
    by_call: dict[str, set] = {}
    for row in rows:  # one call: one speaker, one channel, one noise level
        by_call.setdefault(row["call_id"], set()).add((row["speaker"], row["channel"], row["snr_db"]))
    assert all(len(v) == 1 for v in by_call.values())


@needs_tools
def test_personal_calls_come_after_the_others_and_say_their_kind(tmp_path, batches):
    options = replace(OPTIONS, batch="p", personal_clips=37)  # every kind and written form; not whole calls
    rows = read_rows(synthesize_batch(tmp_path, options, progress=QUIET))
    topic_rows, personal = rows[:OPTIONS.n_clips], rows[OPTIONS.n_clips:]
    unnamed = lambda rows: [{k: v for k, v in r.items() if k not in ("id", "audio")} for r in rows]  # noqa: E731
    assert unnamed(topic_rows) == unnamed(read_rows(batches[0]))  # the other calls unchanged
    for old, new in zip(read_rows(batches[0]), topic_rows):
        assert (batches[0] / old["audio"]).read_bytes() == (tmp_path / "p" / new["audio"]).read_bytes()
    calls: dict[str, list[dict]] = {}
    for row in personal:
        calls.setdefault(row["call_id"], []).append(row)
    assert len(personal) == 37 and set(calls).isdisjoint(r["call_id"] for r in topic_rows)
    assert len(calls) == 10 and {len(c) for c in calls.values()} == {3, 4}  # near-equal, clips_per_call at most
    assert all(len({(r["speaker"], r["channel"], r["snr_db"]) for r in c}) == 1 for c in calls.values())
    kinds = [r.get("personal", "") for r in personal]
    assert kinds == [synth.PERSONAL_ROTATION[i % 7] for i in range(37)]
    forms = {"digits": 0, "spaced": 0, "dashed": 0, "said": 0}
    for row, kind in zip(personal, kinds):
        _, named, frame = row["template"].split("/")
        assert named == (kind or "other") and int(frame) % 2 == 0  # odd frames are left for judging
        assert re.fullmatch(DEFAULT_TEXT_REGEX, normalize(row["text"])), row["text"]  # passes validation
        if kind:
            assert kind in {f.kind for f in find_pii(row["text"])}, row["text"]
        if kind in ("phone", "id_card", "bank_card"):
            written = "dashed" if re.search(r"\d-\d", row["text"]) else "spaced" if re.search(r"\d \d", row["text"]) else (
                "digits" if re.search(r"\d", row["text"]) else "said")
            forms[written] += 1
        samples, rate = sf.read(tmp_path / "p" / row["audio"], dtype="float32")
        assert rate == (8000 if row["channel"] == "telephone" else 16000) and len(samples) / rate > 1.0
    assert all(forms.values()), forms  # labels in every written form ("digits" includes the mixed one)


@needs_tools
def test_other_seed_other_corpus(tmp_path, batches):
    other = synthesize_batch(tmp_path, SynthParams(batch="b2", n_clips=2, n_speakers=2, seed=4), progress=QUIET)
    assert [r["text"] for r in read_rows(other)] != [r["text"] for r in read_rows(batches[0])[:2]]
    assert all(r["speaker"].startswith("syn4-") for r in read_rows(other))


@needs_tools
def test_progress_and_existing_batch(tmp_path):
    calls = []
    synthesize_batch(tmp_path, SynthParams(batch="b", n_clips=2, n_speakers=1), progress=lambda d, n: calls.append((d, n)))
    assert calls[-1] == (2, 2)
    with pytest.raises(FileExistsError):
        synthesize_batch(tmp_path, SynthParams(batch="b", n_clips=2, n_speakers=1), progress=QUIET)


def test_a_batch_made_with_other_settings_is_named_with_what_differs(tmp_path):
    made = SynthParams(batch="b")
    (tmp_path / "synth.json").write_text(json.dumps({"options": {**asdict(made), "retired": 1}}), encoding="utf-8")
    check_batch_settings(tmp_path, made)  # the same settings; a setting the code no longer has is not compared
    with pytest.raises(ValueError, match=r"synth.json: .*personal_clips 0 there, 420 asked\); remove"):
        check_batch_settings(tmp_path, replace(made, personal_clips=420))
    before_naming = {k: v for k, v in asdict(replace(made, personal_clips=420)).items() if k != "personal_naming"}
    (tmp_path / "synth.json").write_text(json.dumps({"options": before_naming}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"personal_naming 'frame' there, 'any' asked"):  # made before the setting
        check_batch_settings(tmp_path, replace(made, personal_clips=420))
    check_batch_settings(tmp_path, replace(made, personal_clips=420, personal_naming="frame"))


@needs_tools
def test_failure_leaves_no_half_batch(tmp_path, monkeypatch):
    real_speak = synth.speak

    def flaky(pinyin, speaker):
        if speaker.id.endswith("spk01"):
            raise RuntimeError("espeak-ng died")
        return real_speak(pinyin, speaker)

    monkeypatch.setattr(synth, "speak", flaky)
    with pytest.raises(RuntimeError, match="espeak-ng died"):
        synthesize_batch(tmp_path, SynthParams(batch="b", n_clips=4, n_speakers=2), progress=QUIET)
    assert list(tmp_path.iterdir()) == []


def test_missing_binaries_are_named(tmp_path, monkeypatch):
    espeak = shutil.which("espeak-ng")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match=r"espeak-ng not found on PATH.*apt-get install espeak-ng"):
        synthesize_batch(tmp_path / "out", replace(OPTIONS, batch="b"), progress=QUIET)
    assert not (tmp_path / "out").exists()
    if espeak:  # espeak-ng present, sox absent
        (tmp_path / "espeak-ng").symlink_to(espeak)
        with pytest.raises(MissingToolError, match=r"sox not found on PATH.*apt-get install sox"):
            synth.check_tools()


def test_sentences_become_calls_of_two_voices_each_sentence_once(tmp_path):
    from zhasr.data.synth.call import sentence_calls

    paths = []
    for i in range(13):  # voice i % 4; odd sentences at 8 kHz, even ones at 16 kHz, as speak_sentences writes them
        rate = 8000 if i % 2 else 16000
        burst = np.sin(np.arange(rate) * 2 * np.pi * 300 / rate).astype(np.float32) * 0.3
        paths.append(tmp_path / f"s{i}.wav")
        sf.write(paths[-1], np.concatenate([np.zeros(rate // 4, np.float32), burst, np.zeros(rate // 4, np.float32)]),
                 rate)
    calls = sentence_calls(paths, tmp_path / "calls", voices=4, per_call=4)
    assert sorted(i for c in calls for i in c.sentences) == list(range(13))
    for call in calls:
        info = sf.info(call.wav)
        assert info.channels == 2 and {sf.info(paths[i]).samplerate for i in call.sentences} == {info.samplerate}
        voice_of = {turn.channel: {i % 4 for t, i in zip(call.turns, call.sentences) if t.channel == turn.channel}
                    for turn in call.turns}
        assert all(len(v) == 1 for v in voice_of.values())  # a channel is one voice
        assert len(voice_of) == 1 or voice_of[0] != voice_of[1]
        assert [t.clip for t in call.turns] == [paths[i].stem for i in call.sentences]
        assert [t.channel for t in call.turns][:2] in ([0, 1], [0])
        assert all(b.start > a.end for a, b in zip(call.turns, call.turns[1:]))  # turns do not overlap
