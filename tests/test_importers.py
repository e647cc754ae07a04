"""Importers: each source layout becomes an ingest batch (manifest.jsonl + audio/)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import write_tone

from zhasr.config import IngestParams
from zhasr.data.importers import FORMATS, ImportOptions, SourceError, import_dataset


def manifest(result) -> list[dict]:
    lines = (result.batch_dir / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in rows}


def assert_audio_inside(result, row: dict) -> Path:
    path = (result.batch_dir / row["audio"]).resolve()
    assert path.is_relative_to(result.batch_dir.resolve())
    assert path.is_file(), row
    return path


def write_mp3_or_skip(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="MP3")
    except (sf.LibsndfileError, TypeError, ValueError) as exc:
        pytest.skip(f"this libsndfile cannot write MP3: {exc}")
    return path


def test_formats_listed():
    assert FORMATS == {"jsonl", "json", "csv", "aishell", "kaldi", "commonvoice", "hf-disk", "audiofolder"}


def test_jsonl_rows_links_and_per_row_problems(tmp_path):
    src = tmp_path / "src"
    write_tone(src / "clips" / "a.wav", 0.5)
    write_tone(src / "clips" / "b.flac", 0.5, rate=8000)
    outside = write_tone(tmp_path / "elsewhere" / "c.wav", 0.5)
    lines = [
        {"audio": "clips/a.wav", "text": "您好", "id": "u1", "speaker": "s1", "channel": "left"},
        {"audio": "clips/b.flac", "text": "请问", "call_id": "call-7", "language": "yue"},
        {"audio": str(outside), "text": "再见"},
        {"audio": "clips/gone.wav", "text": "丢失"},
        {"audio": "clips/a.wav", "text": ""},
    ]
    (src / "data.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    result = import_dataset("jsonl", src / "data.jsonl", tmp_path / "incoming", "b1")
    rows = manifest(result)
    assert result.batch_dir == tmp_path / "incoming" / "b1" and result.rows == 5
    assert [r["id"] for r in rows] == ["u1", "b", "c", "gone", "a"]
    assert [r["text"] for r in rows] == ["您好", "请问", "再见", "丢失", ""]
    u1, b, c, gone, a2 = rows
    assert u1["speaker"] == "s1" and u1["channel"] == "left" and u1["language"] == "zh"
    assert u1["source"] == "jsonl:data.jsonl:1" and u1["audio"] == "audio/clips/a.wav"
    assert b["call_id"] == "call-7" and b["language"] == "yue" and "speaker" not in b
    assert c["audio"].startswith("audio/external/") and c["audio"].endswith("/c.wav")
    for row in (u1, b, c, a2):
        assert_audio_inside(result, row)
    # Hardlinked when on the same filesystem; the same source file is placed once.
    assert os.stat(result.batch_dir / u1["audio"]).st_ino == os.stat(src / "clips" / "a.wav").st_ino
    assert a2["audio"] == u1["audio"]
    assert gone["audio"] == "audio/clips/gone.wav" and not (result.batch_dir / gone["audio"]).exists()
    assert result.warnings == [("gone", f"audio file not found: {src / 'clips' / 'gone.wav'}"), ("a", "no text")]
    assert result.skipped == []

    copied = import_dataset("jsonl", src / "data.jsonl", tmp_path / "incoming", "b2", ImportOptions(link=False))
    copy_path = copied.batch_dir / "audio" / "clips" / "b.flac"
    assert os.stat(copy_path).st_ino != os.stat(src / "clips" / "b.flac").st_ino
    assert copy_path.read_bytes() == (src / "clips" / "b.flac").read_bytes()


def test_a_speaker_pattern_names_the_speaker_where_a_row_names_none(tmp_path):
    src = tmp_path / "src"
    for name in ("thchs30_A2_0.wav", "thchs30_A2_1.wav", "other.wav", "named.wav"):
        write_tone(src / name, 0.5)
    lines = [{"audio": "thchs30_A2_0.wav", "text": "一"}, {"audio": "thchs30_A2_1.wav", "text": "二"},
             {"audio": "other.wav", "text": "三"}, {"audio": "named.wav", "text": "四", "speaker": "s9"}]
    (src / "data.jsonl").write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    options = ImportOptions(split="regression", speaker_pattern=r"(thchs30_A\d+)_")
    rows = manifest(import_dataset("jsonl", src / "data.jsonl", tmp_path / "incoming", "real", options))
    assert [r.get("speaker") for r in rows] == ["thchs30_A2", "thchs30_A2", None, "s9"]
    assert {r["split"] for r in rows} == {"regression"}


def test_json_and_csv(tmp_path):
    src = tmp_path / "src"
    write_tone(src / "a.wav", 0.5)
    write_tone(src / "b.wav", 0.5)
    (src / "rows.json").write_text(json.dumps([
        {"audio": "a.wav", "text": "一", "speaker": "s1", "score": 0.9},
        {"audio": "b.wav", "text": "二", "tags": ["x"]},
    ], ensure_ascii=False), encoding="utf-8")
    result = import_dataset("json", src / "rows.json", tmp_path / "incoming", "j")
    rows = manifest(result)
    assert [(r["id"], r["text"], r.get("speaker"), r["source"]) for r in rows] == [
        ("a", "一", "s1", "json:rows.json[0]"), ("b", "二", None, "json:rows.json[1]")]
    assert rows[0]["score"] == 0.9 and "tags" not in rows[1]  # scalar extras kept, nested ones dropped

    # BOM, a quoted field with a comma and a newline, an extra column.
    (src / "rows.csv").write_bytes("\ufeffaudio,text,speaker,note\na.wav,\"好的,谢谢\",s1,x\nb.wav,\"第一行\n第二行\",s2,\n"
                                   .encode("utf-8"))
    result = import_dataset("csv", src / "rows.csv", tmp_path / "incoming", "c")
    rows = manifest(result)
    assert [(r["id"], r["text"], r["speaker"], r["note"]) for r in rows] == [
        ("a", "好的,谢谢", "s1", "x"), ("b", "第一行\n第二行", "s2", "")]
    assert rows[1]["source"] == "csv:rows.csv:4"  # the row's last physical line
    for row in rows:
        assert_audio_inside(result, row)

    (src / "bad.csv").write_text("audio,text\na.wav,一\nb.wav,二,extra\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"bad\.csv:3: 3 fields, the header has 2"):
        import_dataset("csv", src / "bad.csv", tmp_path / "incoming", "bad")
    (src / "nocol.csv").write_text("path,text\na.wav,一\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"nocol\.csv:1: missing column\(s\) audio"):
        import_dataset("csv", src / "nocol.csv", tmp_path / "incoming", "bad")
    (src / "bad.jsonl").write_text('{"audio": "a.wav", "text": "一"}\n{"audio": \n', encoding="utf-8")
    with pytest.raises(SourceError, match=r"bad\.jsonl:2: not valid JSON"):
        import_dataset("jsonl", src / "bad.jsonl", tmp_path / "incoming", "bad")
    assert sorted(p.name for p in (tmp_path / "incoming").iterdir()) == ["c", "j"]


def test_aishell(tmp_path):
    root = tmp_path / "data_aishell"
    (root / "transcript").mkdir(parents=True)
    (root / "transcript" / "aishell_transcript_v0.8.txt").write_text(
        "BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限 购\n"
        "BAC009S0724W0121 甚至 出现 交易 几乎 停滞 的 情况\n"
        "BAC009S0764W0121 无 音频\n", encoding="utf-8")
    write_tone(root / "wav" / "train" / "S0002" / "BAC009S0002W0122.wav", 0.5)
    write_tone(root / "wav" / "dev" / "S0724" / "BAC009S0724W0121.wav", 0.5)
    write_tone(root / "wav" / "test" / "S0916" / "BAC009S0916W0495.wav", 0.5)
    result = import_dataset("aishell", tmp_path, tmp_path / "incoming", "aishell")  # the folder holding data_aishell
    rows = by_id(manifest(result))
    assert set(rows) == {"BAC009S0002W0122", "BAC009S0724W0121"}
    r = rows["BAC009S0002W0122"]
    assert r["text"] == "而 对 楼市 成交 抑制 作用 最 大 的 限 购"
    assert (r["speaker"], r["orig_split"], r["source"]) == ("S0002", "train", "aishell:BAC009S0002W0122")
    assert r["audio"] == "audio/train/S0002/BAC009S0002W0122.wav"
    assert rows["BAC009S0724W0121"]["orig_split"] == "dev"
    for row in rows.values():
        assert_audio_inside(result, row)
    assert dict(result.skipped) == {
        "BAC009S0916W0495": f"audio without transcript line: {root / 'wav/test/S0916/BAC009S0916W0495.wav'}",
        "BAC009S0764W0121": "transcript without audio (aishell_transcript_v0.8.txt:3)",
    }
    assert result.warnings == []


def write_kaldi_dir(data: Path, wav_scp: str, text: str, **extra: str) -> Path:
    data.mkdir(parents=True, exist_ok=True)
    (data / "wav.scp").write_text(wav_scp, encoding="utf-8")
    (data / "text").write_text(text, encoding="utf-8")
    for name, content in extra.items():
        (data / name).write_text(content, encoding="utf-8")
    return data


def test_kaldi_without_segments(tmp_path):
    s5 = tmp_path / "s5"
    write_tone(s5 / "wavs" / "r1.wav", 0.5)
    write_tone(s5 / "wavs" / "r2.flac", 0.5)
    data = write_kaldi_dir(
        s5 / "data" / "train",
        # r1 relative to the recipe folder (two levels up), r2 through `cat ... |`, r3 never labelled.
        f"r1 wavs/r1.wav\nr2 cat {s5 / 'wavs' / 'r2.flac'} |\nr3 {s5 / 'wavs' / 'r3.wav'}\n",
        "r1 您好 请问\nr2 好的\nr4 没有录音\n",
        utt2spk="r1 spk1\nr2 spk2\nr4 spk1\n")
    result = import_dataset("kaldi", data, tmp_path / "incoming", "k")
    rows = by_id(manifest(result))
    assert rows["r1"]["text"] == "您好 请问" and rows["r1"]["speaker"] == "spk1" and rows["r1"]["source"] == "kaldi:r1"
    assert rows["r2"]["audio"] == "audio/r2.flac"
    assert_audio_inside(result, rows["r1"])
    assert_audio_inside(result, rows["r2"])
    assert not (result.batch_dir / rows["r4"]["audio"]).exists()
    assert result.warnings == [("r4", "recording r4 not in wav.scp")]
    assert result.skipped == [("r3", "recording without a line in text")]


def test_kaldi_segments_cut_to_duration(tmp_path):
    rate = 16000
    rec = write_tone(tmp_path / "audio" / "call1.wav", 3.0, rate=rate, channels=2)  # PCM_16 stereo
    original, _ = sf.read(rec, dtype="int16")
    data = write_kaldi_dir(
        tmp_path / "data",
        f"call1 {rec}\n",
        "u1 第一句\nu2 第二句\nu3 到结尾\nu4 超出很多\n",
        segments="u1 call1 0.00 0.50\nu2 call1 1.00 2.25\nu3 call1 2.50 -1\nu4 call1 2.00 4.00\nu5 call1 0.5 1.0\n",
        utt2spk="u1 A\nu2 B\nu3 A\nu4 B\nu5 A\n")
    result = import_dataset("kaldi", data, tmp_path / "incoming", "seg")
    rows = by_id(manifest(result))
    expected = {"u1": (0, 8000), "u2": (16000, 36000), "u3": (40000, 48000), "u4": (32000, 48000)}
    for uid, (first, stop) in expected.items():
        path = assert_audio_inside(result, rows[uid])
        assert rows[uid]["audio"] == f"audio/call1/{uid}.wav"
        info = sf.info(path)
        assert (info.frames, info.samplerate, info.channels, info.subtype) == (stop - first, rate, 2, "PCM_16")
        cut, _ = sf.read(path, dtype="int16")
        np.testing.assert_array_equal(cut, original[first:stop])  # bit-exact cut
    assert rows["u2"]["start_s"] == 1.0 and rows["u2"]["end_s"] == 2.25 and rows["u2"]["recording_id"] == "call1"
    assert rows["u3"]["speaker"] == "A"
    assert [w[0] for w in result.warnings] == ["u4"] and "past the end" in result.warnings[0][1]
    assert result.skipped == [("u5", "segment without a line in text")]


def test_kaldi_bad_lines_name_file_and_line(tmp_path):
    rec = write_tone(tmp_path / "r.wav", 0.5)
    incoming = tmp_path / "incoming"
    data = write_kaldi_dir(tmp_path / "d1", f"r1 {rec}\nr2 {rec}\nr3\n", "r1 一\n")
    with pytest.raises(SourceError, match=r"d1/wav\.scp:3: expected '<recording-id> <path>'"):
        import_dataset("kaldi", data, incoming, "k")
    data = write_kaldi_dir(tmp_path / "d2", f"r1 {rec}\nr2 sox {rec} -t wav -r 16000 - |\n", "r1 一\n")
    with pytest.raises(SourceError, match=r"d2/wav\.scp:2: piped command .* is not supported"):
        import_dataset("kaldi", data, incoming, "k")
    data = write_kaldi_dir(tmp_path / "d3", f"r1 {rec}\n", "u1 一\n", segments="u1 r1 0.8 0.2\n")
    with pytest.raises(SourceError, match=r"d3/segments:1: expected 0 <= start < end"):
        import_dataset("kaldi", data, incoming, "k")
    data = write_kaldi_dir(tmp_path / "d4", f"r1 {rec}\n", "r1 一\nr1 二\n")
    with pytest.raises(SourceError, match=r"d4/text:2: r1 already on line 1"):
        import_dataset("kaldi", data, incoming, "k")
    assert list(incoming.iterdir()) == []


def test_commonvoice(tmp_path):
    cv = tmp_path / "cv-corpus" / "zh-CN"
    write_mp3_or_skip(cv / "clips" / "common_voice_zh-CN_1.mp3")
    write_mp3_or_skip(cv / "clips" / "common_voice_zh-CN_2.mp3")
    header = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment\n"
    (cv / "validated.tsv").write_text(
        header
        + "c1\tcommon_voice_zh-CN_1.mp3\tsid1\t他说\"好\"\t\t2\t0\t\t\t\t\tzh-CN\t\n"
        + "c2\tcommon_voice_zh-CN_2.mp3\tsid2\t谢谢\t\t3\t0\tthirties\t\t\t\tzh-CN\t\n", encoding="utf-8")
    (cv / "train.tsv").write_text(header + "c1\tcommon_voice_zh-CN_1.mp3\tsid1\t他说\"好\"\t\t2\t0\t\t\t\t\tzh-CN\t\n",
                                  encoding="utf-8")
    result = import_dataset("commonvoice", cv, tmp_path / "incoming", "cv")
    rows = manifest(result)
    assert [(r["id"], r["text"], r["speaker"]) for r in rows] == [
        ("common_voice_zh-CN_1", '他说"好"', "c1"), ("common_voice_zh-CN_2", "谢谢", "c2")]
    assert rows[0]["audio"] == "audio/clips/common_voice_zh-CN_1.mp3" and rows[0]["locale"] == "zh-CN"
    assert rows[1]["age"] == "thirties" and rows[0]["source"] == "commonvoice:validated.tsv:2"
    for row in rows:
        assert sf.info(assert_audio_inside(result, row)).format == "MP3"
    train = import_dataset("commonvoice", cv, tmp_path / "incoming", "cv-train", ImportOptions(cv_split="train"))
    assert [r["id"] for r in manifest(train)] == ["common_voice_zh-CN_1"]
    with pytest.raises(SourceError, match=r"other\.tsv: Common Voice split not found \(splits here: train, validated\)"):
        import_dataset("commonvoice", cv, tmp_path / "incoming", "x", ImportOptions(cv_split="other"))


def test_hf_disk_bytes_and_splits(tmp_path):
    from datasets import Audio, Dataset, DatasetDict

    wav = write_tone(tmp_path / "raw" / "a.wav", 0.5).read_bytes()
    flac = write_tone(tmp_path / "raw" / "b.flac", 0.5, rate=8000).read_bytes()
    train = Dataset.from_dict({
        "audio": [{"path": "a.wav", "bytes": wav}, {"path": None, "bytes": flac}],
        "sentence": ["您好", "再见"], "speaker_id": ["s1", "s2"], "up_votes": [1, 2],
    }).cast_column("audio", Audio(decode=False))
    test = Dataset.from_dict({
        "audio": [{"path": "c.wav", "bytes": wav}], "sentence": ["测试"], "speaker_id": ["s3"], "up_votes": [0],
    }).cast_column("audio", Audio(decode=False))
    DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "hf"))

    result = import_dataset("hf-disk", tmp_path / "hf", tmp_path / "incoming", "hf")
    rows = by_id(manifest(result))
    assert set(rows) == {"a", "train-1", "c"}
    assert rows["a"]["audio"] == "audio/train/a.wav" and rows["a"]["text"] == "您好" and rows["a"]["speaker"] == "s1"
    assert rows["train-1"]["audio"] == "audio/train/train-1.flac"  # no name: extension from the bytes
    assert (result.batch_dir / rows["train-1"]["audio"]).read_bytes() == flac
    assert (result.batch_dir / rows["a"]["audio"]).read_bytes() == wav
    assert rows["c"]["orig_split"] == "test" and rows["c"]["source"] == "hf-disk:test/0" and rows["a"]["up_votes"] == 1
    assert result.warnings == []

    only_test = import_dataset("hf-disk", tmp_path / "hf", tmp_path / "incoming", "hf-test", ImportOptions(hf_split="test"))
    assert [r["id"] for r in manifest(only_test)] == ["c"]
    with pytest.raises(SourceError, match=r"no split 'dev' \(splits: train, test\)"):
        import_dataset("hf-disk", tmp_path / "hf", tmp_path / "incoming", "x", ImportOptions(hf_split="dev"))
    with pytest.raises(SourceError, match=r"no text column 'label'"):
        import_dataset("hf-disk", tmp_path / "hf", tmp_path / "incoming", "x", ImportOptions(text_column="label"))

    # A single Dataset, text in "transcription", an id column.
    Dataset.from_dict({"audio": [{"path": "x.wav", "bytes": wav}], "transcription": ["一"], "id": ["utt-9"]}) \
        .cast_column("audio", Audio(decode=False)).save_to_disk(str(tmp_path / "hf1"))
    single = manifest(import_dataset("hf-disk", tmp_path / "hf1", tmp_path / "incoming", "hf1"))
    assert [(r["id"], r["text"], r["audio"], r["source"]) for r in single] == [("utt-9", "一", "audio/utt-9.wav", "hf-disk:0")]


def test_audiofolder(tmp_path):
    folder = tmp_path / "af"
    write_tone(folder / "data" / "a.wav", 0.5)
    write_tone(folder / "data" / "b.wav", 0.5)
    write_tone(folder / "data" / "unlabelled.wav", 0.5)
    (folder / "metadata.csv").write_text(
        "file_name,transcription,speaker_id,snr\ndata/a.wav,您好,s1,20\ndata/b.wav,,s2,15\n", encoding="utf-8")
    result = import_dataset("audiofolder", folder, tmp_path / "incoming", "af")
    rows = manifest(result)
    assert [(r["id"], r["text"], r["speaker"], r["snr"], r["source"]) for r in rows] == [
        ("a", "您好", "s1", "20", "audiofolder:metadata.csv:2"), ("b", "", "s2", "15", "audiofolder:metadata.csv:3")]
    assert rows[0]["audio"] == "audio/data/a.wav"
    for row in rows:
        assert_audio_inside(result, row)
    assert result.warnings == [("b", "no text")]
    assert result.skipped == [("data/unlabelled.wav", "audio file without a metadata row")]

    # Split folders with metadata.jsonl each.
    split_folder = tmp_path / "af2"
    for split in ("train", "test"):
        write_tone(split_folder / split / f"{split}1.wav", 0.5)
        (split_folder / split / "metadata.jsonl").write_text(
            json.dumps({"file_name": f"{split}1.wav", "text": f"{split}句"}, ensure_ascii=False) + "\n", encoding="utf-8")
    rows = by_id(manifest(import_dataset("audiofolder", split_folder, tmp_path / "incoming", "af2")))
    assert rows["train1"]["orig_split"] == "train" and rows["test1"]["text"] == "test句"
    assert rows["test1"]["audio"] == "audio/test/test1.wav"


def test_reimport_refused(tmp_path):
    write_tone(tmp_path / "a.wav", 0.5)
    (tmp_path / "m.jsonl").write_text('{"audio": "a.wav", "text": "一"}\n', encoding="utf-8")
    import_dataset("jsonl", tmp_path / "m.jsonl", tmp_path / "incoming", "b")
    with pytest.raises(FileExistsError, match=r"incoming/b: batch already exists"):
        import_dataset("jsonl", tmp_path / "m.jsonl", tmp_path / "incoming", "b")
    with pytest.raises(ValueError, match="unknown import format"):
        import_dataset("parquet", tmp_path / "m.jsonl", tmp_path / "incoming", "c")
    with pytest.raises(ValueError, match="plain folder name"):
        import_dataset("jsonl", tmp_path / "m.jsonl", tmp_path / "incoming", "../c")


def test_failure_mid_import_leaves_no_batch(tmp_path, monkeypatch):
    from zhasr.data import importers

    for name in ("a", "b", "c"):
        write_tone(tmp_path / f"{name}.wav", 0.5)
    (tmp_path / "m.jsonl").write_text("".join(f'{{"audio": "{n}.wav", "text": "一"}}\n' for n in "abc"), encoding="utf-8")
    real_place = importers._Build.place_file
    calls = []

    def failing_place(self, src, dest):
        calls.append(dest)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_place(self, src, dest)

    monkeypatch.setattr(importers._Build, "place_file", failing_place)
    incoming = tmp_path / "incoming"
    with pytest.raises(OSError, match="disk full"):
        import_dataset("jsonl", tmp_path / "m.jsonl", incoming, "b")
    assert list(incoming.iterdir()) == []  # neither the batch nor the staging folder


def test_imported_batch_ingests(tmp_path):
    from zhasr.data.ingest import ingest_batches

    write_tone(tmp_path / "src" / "a.wav", 0.5)
    (tmp_path / "src" / "m.jsonl").write_text(
        '{"audio": "a.wav", "text": "您好", "speaker": "s1"}\n{"audio": "gone.wav", "text": "再见"}\n', encoding="utf-8")
    import_dataset("jsonl", tmp_path / "src" / "m.jsonl", tmp_path / "incoming", "b")
    rows = by_id(ingest_batches(tmp_path / "incoming", tmp_path / "dataset", IngestParams(test_fraction=0.2, workers=1)))
    assert rows["a"]["decode_error"] is None and rows["a"]["duration_s"] == pytest.approx(0.5)
    assert "file not found" in rows["gone"]["decode_error"]


def test_a_row_the_importer_found_wrong_stays_out_and_segments_come_through(tmp_path):
    """A Kaldi segment cut short at its recording's end decodes, but its text was said past it: ingest keeps
    it out with the importer's reason. A JSONL line's labelled segments reach ingest (they were dropped, and
    the recording went in under its empty text)."""
    from zhasr.data.ingest import ingest_batches

    rate = 16000
    rec = write_tone(tmp_path / "rec.wav", 3.0, rate=rate)
    data = write_kaldi_dir(tmp_path / "data", f"r1 {rec}\n", "u1 第一句\nu2 说到了很后面\n",
                           segments="u1 r1 0.0 1.0\nu2 r1 1.0 8.0\n", utt2spk="u1 A\nu2 A\n")
    import_dataset("kaldi", data, tmp_path / "incoming", "k")
    (tmp_path / "src").mkdir()
    write_tone(tmp_path / "src" / "call.wav", 4.0)
    line = {"id": "call1", "audio": "call.wav", "text": "", "segments": [
        {"start": 0.0, "end": 1.5, "text": "您好"}, {"start": 2.0, "end": 3.5, "text": "请问"}]}
    (tmp_path / "src" / "m.jsonl").write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    import_dataset("jsonl", tmp_path / "src" / "m.jsonl", tmp_path / "incoming", "j")
    rows = by_id(ingest_batches(tmp_path / "incoming", tmp_path / "dataset", IngestParams(workers=1)))
    assert rows["u1"]["decode_error"] is None
    assert rows["u2"]["decode_error"].startswith("import: segment ends at 8.0 s, past the end of")
    assert (rows["call1#0"]["text"], rows["call1#1"]["text"]) == ("您好", "请问")


def test_a_common_voice_path_leaving_its_clips_folder_is_not_copied(tmp_path):
    cv = tmp_path / "cv-corpus" / "zh-CN"
    (cv / "clips").mkdir(parents=True)
    secret = write_tone(tmp_path / "private" / "secret.wav", 0.5)
    (cv / "validated.tsv").write_text("client_id\tpath\tsentence\nc1\t../../../private/secret.wav\t您好\n",
                                      encoding="utf-8")
    result = import_dataset("commonvoice", cv, tmp_path / "incoming", "cv")
    assert result.warnings == [("secret", "path '../../../private/secret.wav' leaves the release's clips folder")]
    assert not any(p.name == secret.name for p in result.batch_dir.rglob("*"))
