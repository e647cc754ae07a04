import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import manifest_row, write_tone

from zhasr.config import IngestParams
from zhasr.data.ingest import assign_split, decoded_rows, ingest_batches
from zhasr.data.manifest import atomic_write_jsonl, read_manifest


def write_batch(incoming: Path, name: str, rows: list[dict | bytes]) -> Path:
    batch = incoming / name
    batch.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, bytes) else json.dumps(r, ensure_ascii=False).encode() for r in rows]
    (batch / "manifest.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return batch


def test_ingest_resamples_downmixes_and_keeps_bad_rows_with_reasons(tmp_path):
    incoming, dataset = tmp_path / "incoming", tmp_path / "dataset"
    batch = incoming / "b1"
    write_tone(batch / "a.wav", 2.0, rate=44100, channels=2)
    write_tone(batch / "b.flac", 1.5, rate=8000)
    (batch / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    write_batch(incoming, "b1", [
        {"id": "a", "audio": "a.wav", "text": "您好，請問", "speaker": "s1"},
        {"id": "b", "audio": "b.flac", "text": "订单号", "speaker": "s2"},
        {"id": "c", "audio": "broken.wav", "text": "坏文件", "speaker": "s3"},
        {"id": "d", "audio": "../../etc/passwd", "text": "越界", "speaker": "s4"},
        {"id": "e", "audio": "missing.wav", "text": "缺失", "speaker": "s5"},
        "坏的".encode("gbk"),
    ])
    rows = ingest_batches(incoming, dataset, IngestParams(test_fraction=0.2))
    by_id = {r["id"]: r for r in rows}
    assert len(rows) == 6
    a = by_id["a"]
    assert (a["sample_rate_src"], a["channels_src"], a["text_norm"]) == (44100, 2, "您好请问")
    assert abs(a["duration_s"] - 2.0) < 1e-3
    info = sf.info(dataset / a["audio"])
    assert (info.samplerate, info.channels) == (16000, 1)
    assert by_id["b"]["sample_rate_src"] == 8000 and by_id["b"]["decode_error"] is None
    assert (by_id["a"]["band"], by_id["b"]["band"]) == ("wideband", "telephone")
    assert -30 < a["rms_dbfs"] < -5
    assert "cannot decode" in by_id["c"]["decode_error"]
    assert "escapes the batch folder" in by_id["d"]["decode_error"]
    assert "not found" in by_id["e"]["decode_error"]
    assert "not valid UTF-8" in by_id["b1/6"]["decode_error"]
    assert (dataset / "ingested.jsonl").read_text(encoding="utf-8").count("\n") == 6


def test_reingest_is_idempotent_and_content_addressed(tmp_path):
    incoming, dataset = tmp_path / "incoming", tmp_path / "dataset"
    batch = incoming / "b1"
    write_tone(batch / "a.wav", 1.0)
    write_batch(incoming, "b1", [{"id": "a", "audio": "a.wav", "text": "一", "speaker": "s1"},
                                 {"id": "a2", "audio": "a.wav", "text": "一", "speaker": "s1"}])
    first = ingest_batches(incoming, dataset, IngestParams(test_fraction=0.2))
    manifest = (dataset / "ingested.jsonl").read_bytes()
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*.wav"))
    second = ingest_batches(incoming, dataset, IngestParams(test_fraction=0.2))
    assert first == second
    assert (dataset / "ingested.jsonl").read_bytes() == manifest
    assert sorted(p.relative_to(dataset) for p in dataset.rglob("*.wav")) == files
    assert len(files) == 1  # same audio under two ids is stored once
    assert first[0]["audio_sha256"] == first[1]["audio_sha256"]


def test_digital_silence_is_measured_not_dropped(tmp_path):
    incoming, dataset = tmp_path / "incoming", tmp_path / "dataset"
    (incoming / "b1").mkdir(parents=True)
    sf.write(incoming / "b1" / "silence.wav", np.zeros(16000, np.float32), 16000)
    write_batch(incoming, "b1", [{"id": "s", "audio": "silence.wav", "text": "喂", "speaker": "s1"}])
    (row,) = ingest_batches(incoming, dataset, IngestParams(test_fraction=0.2))
    assert row["decode_error"] is None and row["rms_dbfs"] == -200.0


def test_split_is_deterministic_by_speaker_and_roughly_proportional():
    options = IngestParams(dev_fraction=0.1, test_fraction=0.2)
    splits = [assign_split(f"spk{i}", options) for i in range(2000)]
    assert splits == [assign_split(f"spk{i}", options) for i in range(2000)]
    assert abs(splits.count("test") / 2000 - 0.2) < 0.03
    assert abs(splits.count("dev") / 2000 - 0.1) < 0.03


def test_segments_cut_a_long_recording_and_bad_segments_are_reported(tmp_path):
    incoming, dataset = tmp_path / "incoming", tmp_path / "dataset"
    write_tone(incoming / "b1" / "call.wav", 45.0, rate=8000)
    write_batch(incoming, "b1", [
        {"id": "call", "audio": "call.wav", "text": "", "speaker": "c1",
         "segments": [{"start": 0.5, "end": 3.0, "text": "您好"}, {"start": 40.0, "end": 44.0, "text": "再见"},
                      {"start": 50.0, "end": 52.0, "text": "超出"}]},
        {"id": "bad", "audio": "call.wav", "text": "x", "speaker": "c2", "segments": [{"start": 3, "end": 1, "text": "x"}]},
    ])
    rows = {r["id"]: r for r in ingest_batches(incoming, dataset, IngestParams(test_fraction=0.2))}
    assert rows["call#0"]["duration_s"] == 2.5 and rows["call#0"]["text_norm"] == "您好"
    assert rows["call#1"]["duration_s"] == 4.0 and rows["call#1"]["band"] == "telephone"
    assert "outside the audio" in rows["call#2"]["decode_error"]
    assert "start < end" in rows["bad"]["decode_error"]


def test_regression_rows_never_enter_train_and_split_once_by_speaker_into_halves(tmp_path):
    from zhasr.data.ingest import telephone_split

    incoming, dataset = tmp_path / "incoming", tmp_path / "dataset"
    rows = []
    for i in range(20):
        write_tone(incoming / "real" / f"{i}.wav", 1.0, freq=100 + 10 * i)
        rows.append({"id": f"r{i}", "audio": f"{i}.wav", "text": "您好", "speaker": f"s{i % 10}", "split": "regression"})
    write_batch(incoming, "real", rows)
    params = IngestParams(test_fraction=0.2)
    ingested = ingest_batches(incoming, dataset, params)
    judged = [r for r in ingested if r["split"] == "regression"]
    tuning = [r for r in ingested if r["split"] == "tuning"]
    assert judged and tuning and len(judged) + len(tuning) == 20  # nothing in train, dev or test
    assert not {r["speaker"] for r in judged} & {r["speaker"] for r in tuning}  # a speaker in one half only
    twin_sets = {telephone_split(c) for c in params.telephone_codecs}
    assert twin_sets == {"telephone", "telephone-alaw", "telephone-amr-nb-lossy", "telephone-g723"}
    tuning_twin_sets = {f"tuning-{s}" for s in twin_sets}
    assert {r["split"] for r in ingested} == {"regression", "tuning"} | twin_sets | tuning_twin_sets
    # each clip has a twin through every channel, in its own half: its own audio, speaker and split, the same text
    by_id = {r["id"]: r for r in ingested}
    for row, splits in [(r, twin_sets) for r in judged] + [(r, tuning_twin_sets) for r in tuning]:
        for split in splits:
            twin = by_id[f"{row['id']}@{split}"]
            assert twin["split"] == split and twin["band"] == "telephone" and twin["speaker"] == f"{row['speaker']}@{split}"
            assert twin["audio_sha256"] != row["audio_sha256"]
            assert (twin["text_norm"], twin["duration_s"]) == (row["text_norm"], row["duration_s"])
    assert len({by_id[f"{judged[0]['id']}@{s}"]["audio_sha256"] for s in twin_sets}) == 4  # four channels
    again = ingest_batches(incoming, tmp_path / "again", params)
    assert [r["audio_sha256"] for r in again] == [r["audio_sha256"] for r in ingested]  # deterministic channels


def test_telephone_channel_keeps_300_to_3400_hz_and_is_deterministic():
    from zhasr.data.audio import telephone_channel

    rate = 16000
    t = np.arange(2 * rate) / rate
    tones = {f: 0.1 * np.sin(2 * np.pi * f * t) for f in (100, 1000, 3000, 6000)}
    passed = {f: np.sqrt(np.mean(telephone_channel(x.astype(np.float32))[rate // 2:-rate // 2] ** 2)) / 0.0707
              for f, x in tones.items()}
    assert passed[1000] > 0.9 and passed[3000] > 0.9  # inside the band: through
    assert passed[100] < 0.1 and passed[6000] < 0.05  # outside: gone
    x = tones[1000].astype(np.float32)
    assert np.array_equal(telephone_channel(x), telephone_channel(x))


def test_every_codec_gives_back_the_speech_it_was_given_at_8_khz_the_same_every_time():
    """A voiced sound (a gliding 140-Hz pitch with its harmonics, syllable-like loudness) through each codec:
    as long as what went in, within 10 ms of it and still the same waveform (Opus decodes at 48 kHz, and
    an unconverted decode would be 6x too long and unlike it), and the same bytes twice."""
    from zhasr.data.codecs import CODECS, _encode_decode, narrowband

    rate = 16000
    t = np.arange(2 * rate) / rate
    phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 1.5 * t)) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2 * 0.2
    band = narrowband(voiced.astype(np.float32))
    inner = slice(400, -400)
    for codec in CODECS:
        heard = _encode_decode(band, codec)
        assert len(heard) == len(band), codec
        likeness = max(np.dot(band[inner], np.roll(heard, -lag)[inner])
                       / np.linalg.norm(band[inner]) / np.linalg.norm(heard[inner]) for lag in range(80))
        assert likeness > 0.85, (codec, likeness)
        assert np.array_equal(heard, _encode_decode(band, codec)), codec


def test_amr_nb_any_draws_its_mode_from_the_audio_and_every_mode_keeps_the_speech():
    """Lower modes keep less of the waveform; the mode a clip gets is fixed by its samples, and clips spread
    over the modes."""
    from zhasr.data.codecs import _AMR_MODES, _audio_seed, _encode_decode, narrowband, telephone

    rate = 16000
    t = np.arange(rate) / rate
    voiced = sum(np.sin(2 * np.pi * k * 140 * t) / k for k in range(1, 20)) * 0.2
    band = narrowband(voiced.astype(np.float32))
    inner = slice(400, -400)
    likeness = []
    for mode in _AMR_MODES:
        heard = _encode_decode(band, "amr-nb-any", mode)
        likeness.append(max(np.dot(band[inner], np.roll(heard, -lag)[inner]) / np.linalg.norm(band[inner])
                            / np.linalg.norm(heard[inner]) for lag in range(80)))
    assert min(likeness) > 0.8 and likeness[0] < likeness[-1], likeness  # 4.75 kbit/s below 12.2
    picked = {_AMR_MODES[_audio_seed(narrowband((voiced * g).astype(np.float32))) % 8]
              for g in np.linspace(0.5, 1, 12)}
    assert len(picked) >= 4
    clip = voiced.astype(np.float32)
    assert np.array_equal(telephone(clip, "amr-nb-any"), telephone(clip, "amr-nb-any"))


def write_template_batch(incoming: Path, clips: int, speakers: int, templates: list[str]) -> None:
    """Batch ``b1``: ``clips`` one-second tones, clip i by speaker ``s<i % speakers>`` saying template
    ``templates[i % len(templates)]``."""
    rows = []
    for i in range(clips):
        write_tone(incoming / "b1" / f"{i}.wav", 1.0, freq=100 + 10 * i)
        rows.append({"id": f"u{i}", "audio": f"{i}.wav", "text": "您好", "speaker": f"s{i % speakers}",
                     "template": templates[i % len(templates)]})
    write_batch(incoming, "b1", rows)


def test_a_held_out_template_sends_all_its_clips_to_test_and_stays_there(tmp_path):
    from zhasr.data.ingest import template_held_out

    options = IngestParams(test_fraction=0.2)
    templates = [f"order/{i}" for i in range(40)]
    held = [t for t in templates if template_held_out(t, options)]
    assert 0 < len(held) < len(templates) / 2
    incoming, dataset = tmp_path / "incoming", tmp_path / "dataset"
    write_template_batch(incoming, 80, 17, templates)
    first = ingest_batches(incoming, dataset, options)
    trained = {r["template"] for r in first if r["split"] in ("train", "dev")}
    assert not trained & set(held)  # a test sentence is never trained on
    assert {r["split"] for r in first if r["template"] in held} == {"test"}
    # test also holds clips of test speakers with trained templates: "seen" sentences
    assert any(r["split"] == "test" and r["template"] in trained for r in first)
    frozen = json.loads((dataset / "frozen_test.json").read_text())
    assert sorted(frozen["templates"]) == sorted(held)
    # holding out no template any more does not free the held-out ones
    second = ingest_batches(incoming, dataset, IngestParams(test_fraction=0.2, template_test_fraction=0.0))
    assert {r["split"] for r in second if r["template"] in held} == {"test"}


def test_a_trained_speaker_keeps_training_when_one_of_its_sentences_is_held_out(tmp_path):
    """Its held-out sentence goes to test; its other clips stay in train, pass validation and stay
    in train on every later ingest (no speaker is frozen into test for a sentence)."""
    from zhasr.config import ValidateParams
    from zhasr.data.ingest import template_held_out
    from zhasr.data.validate import validate_rows

    options = IngestParams(test_fraction=0.0, dev_fraction=0.0, template_test_fraction=0.3)
    templates = [f"t{i}" for i in range(10)]
    held = {t for t in templates if template_held_out(t, options)}
    assert held and held != set(templates)
    incoming, dataset = tmp_path / "incoming", tmp_path / "dataset"
    write_template_batch(incoming, 20, 2, templates)
    for _ in range(2):  # the second ingest reads the frozen file the first one wrote
        ingested = ingest_batches(incoming, dataset, options)
        assert {(r["split"], r["sentence_held_out"]) for r in ingested} == {("test", True), ("train", False)}
        assert {r["template"] for r in ingested if r["split"] == "test"} == held
        assert json.loads((dataset / "frozen_test.json").read_text())["speakers"] == []
        report = validate_rows(ingested, ValidateParams(min_chars_per_s=0.1))
        assert not report.rejected and len(report.accepted) == 20


def test_a_topic_is_held_out_like_a_template(tmp_path):
    from zhasr.data.ingest import template_held_out

    options = IngestParams(test_fraction=0.2, template_test_fraction=0.5)
    incoming, dataset = tmp_path / "incoming", tmp_path / "dataset"
    rows = []
    for i in range(12):
        write_tone(incoming / "b1" / f"{i}.wav", 1.0, freq=100 + 10 * i)
        rows.append({"id": f"u{i}", "audio": f"{i}.wav", "text": "您好", "speaker": f"s{i}", "topic": f"t{i % 6}"})
    write_batch(incoming, "b1", rows)
    ingested = ingest_batches(incoming, dataset, options)
    assert [r["template"] for r in ingested] == [f"t{i % 6}" for i in range(12)]
    held = {r["template"] for r in ingested if template_held_out(r["template"], options)}
    assert held and {r["split"] for r in ingested if r["template"] in held} == {"test"}


def test_test_split_stays_frozen_when_fractions_change(tmp_path):
    incoming, dataset = tmp_path / "incoming", tmp_path / "dataset"
    rows = []
    for i in range(30):
        write_tone(incoming / "b1" / f"{i}.wav", 1.0, freq=100 + 10 * i)
        rows.append({"id": f"u{i}", "audio": f"{i}.wav", "text": "您好", "speaker": f"s{i}"})
    write_batch(incoming, "b1", rows)
    first = ingest_batches(incoming, dataset, IngestParams(test_fraction=0.3))
    was_test = {r["id"] for r in first if r["split"] == "test"}
    assert was_test
    second = ingest_batches(incoming, dataset, IngestParams(test_fraction=0.0, dev_fraction=0.0))
    assert {r["id"] for r in second if r["split"] == "test"} == was_test


def test_a_copy_of_a_trained_clip_under_a_test_speaker_does_not_move_the_clip_into_test(tmp_path):
    """The copy is quarantined as the same audio; its hash must not be frozen in test, or the next ingest of the
    same batches sends the clip trained on into test."""
    incoming, dataset = tmp_path / "incoming", tmp_path / "dataset"
    params = IngestParams(test_fraction=0.5, dev_fraction=0.0)
    speakers = [f"s{i}" for i in range(40)]
    trained = next(s for s in speakers if assign_split(s, params) == "train")
    tested = next(s for s in speakers if assign_split(s, params) == "test")
    write_tone(incoming / "a1" / "0.wav", 1.0)
    write_batch(incoming, "a1", [{"id": "kept", "audio": "0.wav", "text": "您好", "speaker": trained}])
    (incoming / "b2").mkdir()
    (incoming / "b2" / "copy.wav").write_bytes((incoming / "a1" / "0.wav").read_bytes())
    write_batch(incoming, "b2", [{"id": "copy", "audio": "copy.wav", "text": "您好", "speaker": tested}])
    for _ in range(2):
        splits = {r["id"]: r["split"] for r in ingest_batches(incoming, dataset, params)}
        assert splits == {"kept": "train", "copy": "test"}


def test_a_row_that_cannot_be_taken_is_kept_with_its_reason_and_the_batch_goes_on(tmp_path):
    """A label given as a list, a key of the wrong type, a name too long for the file system, a link to itself, a
    segment ending at infinity and samples that are not numbers: each row named with why, the others ingested."""
    incoming, dataset = tmp_path / "incoming", tmp_path / "dataset"
    batch = incoming / "b1"
    write_tone(batch / "ok.wav", 1.0)
    (batch / "loop.wav").symlink_to(batch / "loop.wav")
    sf.write(batch / "nan.wav", np.array([0.1, np.nan, 0.2] * 4000, dtype=np.float32), 16000, subtype="FLOAT")
    bom = "\ufeff" + json.dumps({"id": "bom", "audio": "ok.wav", "text": "您好", "speaker": "s0"})
    write_batch(incoming, "b1", [bom.encode(), *[{"id": i, "audio": a, "text": "您好", "speaker": "s1", **extra}
                                                 for i, a, extra in [
        ("list", "ok.wav", {"text": ["您好"]}),
        ("version", "ok.wav", {"label_version": 7}),
        ("long", "a" * 300 + ".wav", {}),
        ("loop", "loop.wav", {}),
        ("inf", "ok.wav", {"text": "", "segments": [{"start": 0, "end": float("inf"), "text": "您好"}]}),
        ("nan", "nan.wav", {}),
        ("number", "ok.wav", {"speaker": 7, "call_id": 12}),
    ]]])
    rows = {r["id"]: r for r in ingest_batches(incoming, dataset, IngestParams())}
    errors = {k: r["decode_error"] for k, r in rows.items()}
    assert errors["bom"] is None and rows["bom"]["text"] == "您好"
    assert errors["list"] == "'text' must be str, got list [\"您好\"]"
    assert errors["version"] == "'label_version' must be str, got int 7"
    assert "cannot be opened" in errors["long"] and "name too long" in errors["long"]
    assert "cannot be opened" in errors["loop"] and "loop.wav" in errors["loop"]
    assert errors["inf"] == "segments[0]: start and end must be finite, got 0.0 and inf"
    assert errors["nan"].endswith("nan.wav: 4000 samples are not finite (NaN or infinity)")
    assert errors["number"] is None and (rows["number"]["speaker"], rows["number"]["call_id"]) == ("7", "12")


def test_ledger_records_each_batch_version_once(tmp_path):
    incoming, dataset = tmp_path / "incoming", tmp_path / "dataset"
    write_tone(incoming / "b1" / "a.wav", 1.0)
    write_batch(incoming, "b1", [{"id": "a", "audio": "a.wav", "text": "一", "speaker": "s1"}])
    ingest_batches(incoming, dataset, IngestParams(test_fraction=0.2))
    ingest_batches(incoming, dataset, IngestParams(test_fraction=0.2))
    ledger = (dataset / "ledger.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(ledger) == 1 and json.loads(ledger[0])["rows"] == 1
    write_batch(incoming, "b1", [{"id": "a", "audio": "a.wav", "text": "一二", "speaker": "s1"}])
    ingest_batches(incoming, dataset, IngestParams(test_fraction=0.2))
    assert len((dataset / "ledger.jsonl").read_text(encoding="utf-8").splitlines()) == 2


def test_dataset_rows_read_back_as_written_and_a_bad_row_is_named_by_file_row_and_key(tmp_path):
    rows = [manifest_row(id="call#0", segment=(1.0, 2.5), call_id="call", channel="agent"), manifest_row(id="b")]
    path = tmp_path / "manifest.jsonl"
    atomic_write_jsonl(path, rows)
    assert read_manifest(path) == rows
    assert "segment" not in json.loads(path.read_text(encoding="utf-8").splitlines()[1])  # optional keys where set
    for broken, message in (({"colour": "red"}, "row 2: row 'b' has unknown key 'colour'"),
                            ({"speaker": None}, "row 2: row 'b' lacks key 'speaker'")):
        data = {**rows[1].to_dict(), **broken}
        atomic_write_jsonl(path, [rows[0], {k: v for k, v in data.items() if v is not None}])
        with pytest.raises(ValueError, match=f"manifest.jsonl: {message}"):
            read_manifest(path)


def test_only_rows_whose_audio_decoded_become_dataset_rows(tmp_path):
    write_tone(tmp_path / "incoming" / "b" / "a.wav", 1.0)
    write_batch(tmp_path / "incoming", "b", [{"id": "a", "audio": "a.wav", "text": "您好"},
                                             {"id": "gone", "audio": "missing.wav", "text": "您好"}])
    ingested = ingest_batches(tmp_path / "incoming", tmp_path / "dataset", IngestParams())
    (row,) = decoded_rows(ingested)
    assert (row.id, row.text_norm, row.band, row.sample_rate_src) == ("a", "您好", "wideband", 16000)
    assert [r["id"] for r in ingested if r["decode_error"]] == ["gone"]


def test_a_later_batch_whose_name_sorts_first_does_not_take_over_an_accepted_clip(tmp_path):
    """Of rows with one audio, validation keeps the first: the batch that came first, not the one named first."""
    incoming, dataset = tmp_path / "incoming", tmp_path / "dataset"
    write_tone(incoming / "z-old" / "0.wav", 1.0)
    write_batch(incoming, "z-old", [{"id": "old", "audio": "0.wav", "text": "您好", "speaker": "s1"}])
    assert [r["id"] for r in ingest_batches(incoming, dataset, IngestParams())] == ["old"]
    (incoming / "a-new").mkdir()
    (incoming / "a-new" / "copy.wav").write_bytes((incoming / "z-old" / "0.wav").read_bytes())
    write_batch(incoming, "a-new", [{"id": "new", "audio": "copy.wav", "text": "谢谢再见", "speaker": "s2"}])
    assert [r["id"] for r in ingest_batches(incoming, dataset, IngestParams())] == ["old", "new"]
