import json
from pathlib import Path

import numpy as np
import soundfile as sf

from conftest import write_tone
from zhasr.ingest import IngestOptions, assign_split, ingest_batches


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
    rows = ingest_batches(incoming, dataset, IngestOptions())
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
    first = ingest_batches(incoming, dataset, IngestOptions())
    manifest = (dataset / "ingested.jsonl").read_bytes()
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*.wav"))
    second = ingest_batches(incoming, dataset, IngestOptions())
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
    (row,) = ingest_batches(incoming, dataset, IngestOptions())
    assert row["decode_error"] is None and row["rms_dbfs"] == -200.0


def test_split_is_deterministic_by_speaker_and_roughly_proportional():
    options = IngestOptions(dev_fraction=0.1, test_fraction=0.2)
    splits = [assign_split(f"spk{i}", options) for i in range(2000)]
    assert splits == [assign_split(f"spk{i}", options) for i in range(2000)]
    assert abs(splits.count("test") / 2000 - 0.2) < 0.03
    assert abs(splits.count("dev") / 2000 - 0.1) < 0.03
