"""The command line: stages run through it, and bad params fail with the key named."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch
from conftest import write_tone
from mlflow.tracking import MlflowClient
from test_ingest import write_batch

from cli.main import main
from tasks.detector import detector_in_place
from tasks.transcribe import detector_model, detector_stamp, resolve
from zhasr.calltext.pii import KINDS
from zhasr.context import StageContext


def test_ingest_and_validate_through_the_cli_with_an_override(project, capsys):
    batch = project / "data" / "incoming" / "b1"
    for i in range(3):
        write_tone(batch / f"{i}.wav", 1.5 + i * 0.1)
    write_batch(project / "data" / "incoming", "b1", [
        {"id": "ok0", "audio": "0.wav", "text": "您好请问", "speaker": "s0"},
        {"id": "ok1", "audio": "1.wav", "text": "订单号一二三", "speaker": "s1"},
        {"id": "bad", "audio": "2.wav", "text": "", "speaker": "s2"},
    ])
    assert main(["ingest", "--set", "ingest.test_fraction=0.0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 3 and summary["splits"] == {"train": 3}

    assert main(["validate", "--set", "validate.max_reject_fraction=0.5"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["accepted"], summary["quarantined"]) == (2, 1)
    quarantined = [json.loads(line) for line in (project / "data/quarantine/b1/rejected.jsonl").open(encoding="utf-8")]
    assert [q["id"] for q in quarantined] == ["bad"]
    assert "text_norm" in quarantined[0]["reasons"][0]
    assert (project / "reports/data_docs/index.html").is_file()


def test_unknown_key_exits_2_and_names_it(project, capsys):
    assert main(["ingest", "--set", "ingest.rate=8000"]) == 2
    assert "ingest.rate: unknown key" in capsys.readouterr().err


def test_wrong_type_exits_2_and_names_it(project, capsys):
    assert main(["train", "--set", "train.rank=eight"]) == 2
    assert "train.rank: expected int, got 'eight'" in capsys.readouterr().err


def test_a_bad_import_or_archive_source_exits_2_naming_the_file_and_line(project, tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "a.wav", "text": "您好"}\nnot json\n', encoding="utf-8")
    assert main(["import", "jsonl", str(bad), "--batch", "b1"]) == 2
    assert capsys.readouterr().err.strip() == f"zhasr: {bad}:2: not valid JSON (Expecting value)"
    assert main(["import", "jsonl", str(tmp_path / "gone.jsonl"), "--batch", "b1"]) == 2
    assert capsys.readouterr().err.strip() == f"zhasr: {tmp_path / 'gone.jsonl'}: import source not found"
    assert not (project / "data" / "incoming" / "b1").exists()

    (tmp_path / "calls.jsonl").write_text('{"audio": "missing.wav"}\n', encoding="utf-8")
    assert main(["transcribe-archive", str(tmp_path / "calls.jsonl"), "--model", str(tiny_model_dir)]) == 2
    assert "calls.jsonl:1: missing.wav: no such file" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="QLoRA runs on a GPU")
@pytest.mark.parametrize("command", ["train", "retrain"])
def test_qlora_on_cpu_exits_2_before_any_work(project, capsys, command):
    assert main([command, "--set", "train.method=qlora"]) == 2
    assert "train.method=qlora needs a CUDA GPU" in capsys.readouterr().err
    assert not (project / "runs").exists() and not (project / "mlflow" / "mlflow.db").exists()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_zhasr_ui_stops_with_its_web_server_on_sigterm(project):
    """``zhasr ui`` on a free loopback port answers; a SIGTERM to the pid the caller started leaves nothing
    listening (a child server used to outlive it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    ui = subprocess.Popen([sys.executable, "-m", "cli", "ui", "--port", str(port)], cwd=project,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        while not _answers(url):
            assert ui.poll() is None and time.monotonic() < deadline, "the MLflow UI did not answer"
            time.sleep(1)
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=30)
        deadline = time.monotonic() + 15
        while _answers(url) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _answers(url), "the web server outlived zhasr ui"
    finally:
        if ui.poll() is None:
            ui.kill()


def test_the_number_detector_is_trained_and_hears_where_redaction_is_asked(project, tiny_model_dir, generated_call,
                                                                           capsys, monkeypatch):
    """``zhasr detector`` trains a model on synthesized numbers and the labelled calls that hold personal
    data, and writes its int8 copy; ``transcribe`` with ``transcribe.detector`` naming it decodes the call
    with it too, with word times, where redaction is asked, and only there."""
    calls = project / "data" / "incoming" / "calls"
    for i in range(4):
        write_tone(calls / f"{i}.wav", 4.0 + 0.1 * i, freq=200 + 30 * i)
    write_batch(calls.parent, "calls", [{"id": str(i), "audio": f"{i}.wav", "speaker": f"s{i}",
                                         "text": f"我的手机号是1381234567{i}" if i % 2 else "好的请您稍等一下"}
                                        for i in range(4)])
    assert main(["ingest", "--set", "ingest.test_fraction=0.0", "--set", "ingest.template_test_fraction=0.0"]) == 0
    assert main(["validate"]) == 0
    capsys.readouterr()
    detector = ["detector", "--set", f"detector.base={tiny_model_dir}", "--set", "detector.clips=7",
                "--set", "detector.check_per_kind=1", "--set", "detector.check_others=1"]
    assert main([*detector, "--set", "detector.min_mean_recall=0", "--set", "detector.min_recall=0",
                 "--set", "detector.min_precision=0"]) == 0
    report = json.loads(capsys.readouterr().out)
    ct2 = project / "models" / "detector" / "ct2-int8"
    assert report["model_dir"] == str(ct2) and (ct2 / "model.bin").is_file() and report["sentences"] == 7
    assert report["labelled"] == 2  # the calls that give a phone number
    assert report["steps"] >= 1 and not (project / "models" / "detector" / "work").exists()
    assert report["accepted"] and set(report["check_recall"]) == set(KINDS) and report["replaced_recall"] == {}
    assert json.loads((project / "reports" / "detector.json").read_text())["base"].startswith(f"{tiny_model_dir}@")
    # a random model hears no number: at the default floors the next one is refused, the first one stays
    kept = (ct2 / "model.bin").read_bytes()
    assert main(detector) == 0
    out, err = capsys.readouterr()
    refused = json.loads(out)
    assert "failed its check (mean recall" in err and f"{ct2} stays in use" in err
    assert not refused["accepted"] and re.fullmatch(r"mean recall [\d.]+ % < 85\.0 %", refused["reasons"][0])
    assert set(refused["replaced_recall"]) == set(KINDS)  # the one in place was heard on the same check
    assert refused["model_dir"] == str(ct2) and (ct2 / "model.bin").read_bytes() == kept
    assert refused["rejected_dir"] == str(project / "models" / "detector" / "rejected" / "ct2-int8")
    assert (project / "models" / "detector" / "rejected" / "ct2-int8" / "model.bin").is_file()
    assert (report["version"], report["alias"], refused["version"], refused["alias"]) == ("1", "challenger", "2", None)
    assert refused["replaced"] == str(ct2) and "registered as zhasr-detector v2" in err

    # the registry: only the build that passed can be approved, and the approved one is what models:/ names
    assert main(["approve", "2", "--model", "zhasr-detector", "--by", "ana", "--note", "try"]) == 2
    assert re.search(r"zhasr-detector v2: did not pass the gate \(mean recall [\d.]+ % < 85\.0 %", capsys.readouterr().err)
    assert main(["approve", "1", "--model", "zhasr-detector", "--by", "ana", "--note", "heard every kind"]) == 0
    capsys.readouterr()
    assert main(["status", "--model", "zhasr-detector"]) == 0
    versions = {v["version"]: v for v in json.loads(capsys.readouterr().out)["versions"]}
    assert (versions["1"]["aliases"], versions["1"]["gate"], versions["2"]["gate"]) == ("champion", "pass", "fail")
    assert float(versions["2"]["check_recall"]) < 0.85 and versions["1"]["base"].startswith(f"{tiny_model_dir}@")
    client = MlflowClient()
    assert client.get_registered_model("zhasr-detector").description.startswith("Number detectors built by")
    card = client.get_model_version("zhasr-detector", "2").description
    assert "| **mean** |" in card and "**Check: failed**: mean recall" in card and "zhasr approve" not in card
    settings = client.get_model_version("zhasr-detector", "2").tags["zhasr.detector_settings"]
    assert f"numbers named by any noun of their kind; settings {settings})" in card
    champion = "models:/zhasr-detector@champion"
    ctx = StageContext.load(project / "params.yaml", [f"transcribe.detector={champion}"])
    assert detector_in_place(ctx, ct2).identity == "zhasr-detector v1" and detector_stamp(ctx) == "1"
    assert "ct2-int8" in detector_model(ctx).exports  # heard in its int8 copy, kept with its run
    assert detector_in_place(StageContext.load(project / "params.yaml", []), ct2).model_dir == ct2

    from zhasr.transcribe import Transcriber

    decoded, transcribe = [], Transcriber.transcribe
    monkeypatch.setattr(Transcriber, "transcribe", lambda self, audio, **kw: decoded.append(
        (self.identity, kw["words"])) or transcribe(self, audio, **kw))
    args = ["transcribe", str(generated_call[0]), "--model", str(tiny_model_dir), "--channels", "split",
            "--format", "verbose_json", "--set", f"transcribe.detector={ct2}"]
    served, detector_build = (resolve(ctx, str(folder)).identity for folder in (tiny_model_dir, ct2))  # folder@build
    for redact, models in (("all", [(served, True), (detector_build, True)]), ("none", [(served, False)])):
        decoded.clear()
        assert main([*args, "--redact", redact]) == 0
        assert json.loads(capsys.readouterr().out)["segments"] and decoded == models
    decoded.clear()
    assert main([*args, "--redact", "all", "--set", f"transcribe.detector={champion}"]) == 0
    assert decoded[1] == ("zhasr-detector v1", True)
    assert main([*args, "--redact", "all", "--set", f"transcribe.detector={project / 'missing'}"]) == 2
    assert f"transcribe.detector {project / 'missing'}: neither" in capsys.readouterr().err

    # without its check a build replaces the folder but is no candidate for champion; after it, the registry
    # keeps the newest version and the champion (register.keep_newest 1): v2, which failed, is pruned
    assert main([*detector, "--set", "detector.check_per_kind=0", "--set", "detector.check_others=0",
                 "--set", "register.keep_newest=1"]) == 0
    out, err = capsys.readouterr()
    assert (json.loads(out)["version"], json.loads(out)["alias"]) == ("3", None) and "cannot be approved" in err
    assert client.get_model_version("zhasr-detector", "3").tags["zhasr.gate"] == "unchecked"
    assert sorted(str(v.version) for v in client.search_model_versions("name='zhasr-detector'")) == ["1", "3"]
    assert main(["approve", "3", "--model", "zhasr-detector", "--by", "ana", "--note", "fast"]) == 2
    assert "did not pass the gate (not checked (detector.check_per_kind 0))" in capsys.readouterr().err
