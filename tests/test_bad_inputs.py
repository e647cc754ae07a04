"""Each bad input ends quarantined with its reason named, and the rest of the batch goes on.

Every case runs the real ingest and validate stages (through the CLI) on a batch
of four good clips plus one bad row.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import write_tone

from cli.main import main

GOOD = [("g0", "您好请问有什么可以帮您"), ("g1", "我想查一下订单"), ("g2", "好的请稍等"), ("g3", "谢谢再见")]


def _good_rows(batch: Path) -> list[dict]:
    rows = []
    for i, (uid, text) in enumerate(GOOD):
        write_tone(batch / f"{uid}.wav", 2.0 + 0.1 * i, freq=180 + 30 * i)
        rows.append({"id": uid, "audio": f"{uid}.wav", "text": text, "speaker": f"spk-{uid}"})
    return rows


def _bad(batch: Path, name: str) -> dict | bytes:
    """Write the bad case's files into ``batch``; return its manifest line (a row or raw bytes)."""
    row = {"id": "bad", "audio": "bad.wav", "text": "您好请问", "speaker": "spk-bad"}
    if name == "corrupt file":
        (batch / "bad.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 10)
    elif name == "empty file":
        (batch / "bad.wav").write_bytes(b"")
    elif name == "unknown extension":
        write_tone(batch / "bad.wav", 1.0)
        (batch / "bad.wav").rename(batch / "bad.xyz")
        row["audio"] = "bad.xyz"
    elif name in ("stereo 44.1 kHz", "8 kHz telephone"):
        rate, channels = (44100, 2) if name.startswith("stereo") else (8000, 1)
        write_tone(batch / "bad.wav", 1.5, rate=rate, channels=channels)
    elif name == "45 s clip without segments":
        write_tone(batch / "bad.wav", 45.0)
        row["text"] = "您好" * 90
    elif name == "pure silence":
        sf.write(batch / "bad.wav", np.zeros(32000, np.float32), 16000)
    elif name == "non-UTF-8 manifest line":
        return json.dumps(row, ensure_ascii=False).encode("gbk")
    elif name == "missing file":
        row["audio"] = "nowhere.wav"
    elif name == "path escaping the batch":
        row["audio"] = "../../etc/passwd"
    elif name == "same audio under two ids":
        row["audio"] = "g0.wav"
    elif name == "empty text":
        write_tone(batch / "bad.wav", 1.5)
        row["text"] = "，。"
    elif name == "English-only text for zh":
        write_tone(batch / "bad.wav", 1.5)
        row["text"] = "OK thank you"
    elif name == "label three times too long":
        write_tone(batch / "bad.wav", 1.0)
        row["text"] = "您好请问有什么可以帮您"  # 11 chars in 1 s: three times a brisk 3.7 chars/s
    return row


# case -> (quarantined?, words the reason must contain)
CASES = {
    "corrupt file": (True, "cannot decode"),
    "empty file": (True, "empty file"),
    "unknown extension": (True, "unknown audio extension '.xyz'"),
    "stereo 44.1 kHz": (False, None),
    "8 kHz telephone": (False, None),
    "45 s clip without segments": (True, "too long"),
    "pure silence": (True, "silent"),
    "non-UTF-8 manifest line": (True, "not valid UTF-8"),
    "missing file": (True, "file not found"),
    "path escaping the batch": (True, "escapes the batch folder"),
    "same audio under two ids": (True, "same audio"),
    "empty text": (True, "empty"),
    "English-only text for zh": (True, "no CJK ideograph"),
    "label three times too long": (True, "label too long for the clip"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_quarantined_and_the_batch_goes_on(case, project, capsys):
    batch = project / "data" / "incoming" / "b1"
    batch.mkdir(parents=True)
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in _good_rows(batch)]
    bad = _bad(batch, case)
    lines.append(bad if isinstance(bad, bytes) else json.dumps(bad, ensure_ascii=False).encode())
    (batch / "manifest.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    raw_before = sorted((p.name, p.stat().st_size) for p in batch.iterdir())

    assert main(["ingest"]) == 0
    assert main(["validate", "--set", "validate.max_reject_fraction=0.5"]) == 0
    capsys.readouterr()

    accepted = {json.loads(line)["id"]: json.loads(line) for line in
                (project / "data/dataset/manifest.jsonl").read_text(encoding="utf-8").splitlines()}
    quarantined = [json.loads(line) for line in
                   (project / "data/quarantine/b1/rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    should_quarantine, reason = CASES[case]
    assert {"g0", "g1", "g2", "g3"} <= set(accepted)
    if should_quarantine:
        assert len(quarantined) == 1, quarantined
        assert reason in " ".join(quarantined[0]["reasons"]), quarantined[0]["reasons"]
        assert set(accepted) == {"g0", "g1", "g2", "g3"}
    else:
        assert quarantined == []
        row = accepted["bad"]
        info = sf.info(project / "data/dataset" / row["audio"])
        assert (info.samplerate, info.channels) == (16000, 1)
        if case.startswith("stereo"):
            assert (row["sample_rate_src"], row["channels_src"], row["band"]) == (44100, 2, "wideband")
        else:
            assert (row["sample_rate_src"], row["band"]) == (8000, "telephone")
    # The raw batch is kept as delivered.
    assert sorted((p.name, p.stat().st_size) for p in batch.iterdir()) == raw_before
