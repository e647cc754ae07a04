"""The command line: stages run through it, and bad params fail with the key named."""

import json

import pytest
import torch
from conftest import write_tone
from test_ingest import write_batch

from cli.main import main


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


@pytest.mark.skipif(torch.cuda.is_available(), reason="QLoRA runs on a GPU")
@pytest.mark.parametrize("command", ["train", "retrain"])
def test_qlora_on_cpu_exits_2_before_any_work(project, capsys, command):
    assert main([command, "--set", "train.method=qlora"]) == 2
    assert "train.method=qlora needs a CUDA GPU" in capsys.readouterr().err
    assert not (project / "runs").exists() and not (project / "mlflow" / "mlflow.db").exists()
