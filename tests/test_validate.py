"""The Great Expectations suite over ingested rows: each rule quarantines exactly its bad row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from zhasr.config import ValidateParams, params_from_dict
from zhasr.data.validate import ValidationReport, validate_rows

SPEAKERS = {"spk0": "train", "spk1": "train", "spk2": "dev", "spk3": "test", "spk4": "train"}
LABELS = ["您好请问有什么可以帮您", "我想查一下订单", "好的请稍等", "订单号是ab123", "谢谢再见"]
BAD = 3  # position of the row a case breaks

DURATION = "expect_column_values_to_be_between(duration_s)"
SILENT = "expect_column_values_to_be_between(rms_dbfs)"
EMPTY = "expect_column_value_lengths_to_be_between(text_norm)"
CHARSET = "expect_column_values_to_match_regex(text_norm)"
RATE = "expect_column_values_to_be_between(chars_per_s)"
DUP_ID = "expect_column_values_to_be_in_set(id_repeated)"
DUP_AUDIO = "expect_column_values_to_be_in_set(audio_repeated)"
DECODE = "expect_column_values_to_be_null(decode_error)"
SPLIT = "expect_column_values_to_be_in_set(speaker_in_other_split)"


def make_rows(n: int = 10) -> list[dict[str, Any]]:
    """Clean ingested rows: 3-5 chars/s, one split per speaker, unique ids and hashes."""
    rows = []
    for i in range(n):
        speaker = f"spk{i % len(SPEAKERS)}"
        label = LABELS[i % len(LABELS)]
        n_chars = len(label.replace(" ", ""))
        rows.append({
            "id": f"b1/{i}", "audio": f"audio/{i:02x}/{i:064x}.wav", "text": label, "text_norm": label,
            "duration_s": round(n_chars / 4.0, 3), "sample_rate_src": 8000, "speaker": speaker,
            "split": SPEAKERS[speaker], "batch": "b1", "audio_sha256": f"{i:064x}", "decode_error": None,
            "rms_dbfs": -25.0,
        })
    return rows


def rule_names(reasons: list[str]) -> list[str]:
    return [r.split(":")[0] for r in reasons]


@pytest.fixture(scope="module")
def options() -> ValidateParams:
    return ValidateParams(min_chars_per_s=1.0)


def test_clean_rows_all_accepted(options, tmp_path):
    rows = make_rows()
    report = validate_rows(rows, options)
    assert isinstance(report, ValidationReport)
    assert report.accepted == rows
    assert report.rejected == []
    assert report.reject_fraction == 0.0 and not report.batch_rejected
    assert report.results_json["success"] is True
    assert report.results_json["statistics"]["unsuccessful_expectations"] == 0
    assert len(report.rules) == report.results_json["statistics"]["evaluated_expectations"] == 9
    json.dumps(report.results_json)


def _set(**fields: Any) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(rows: list[dict[str, Any]]) -> None:
        rows[BAD].update(fields)
    return mutate


def _copy_from_first(*keys: str) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(rows: list[dict[str, Any]]) -> None:
        rows[BAD].update({k: rows[0][k] for k in keys})
    return mutate


def _speaker_in_two_splits(rows: list[dict[str, Any]]) -> None:
    rows[BAD]["speaker"] = rows[0]["speaker"]  # spk0 is in train; row BAD stays in test
    assert rows[BAD]["split"] != rows[0]["split"]


def _label_three_times_too_long(rows: list[dict[str, Any]]) -> None:
    row = rows[BAD]
    row["text"] = row["text_norm"] = row["text_norm"] * 3  # 4 chars/s becomes 12


CASES = {
    "too short": (_set(text="好", text_norm="好", duration_s=0.2), DURATION, "too short"),
    "too long": (_set(text="好" * 120, text_norm="好" * 120, duration_s=31.0), DURATION, "too long"),
    "pure silence": (_set(rms_dbfs=-200.0), SILENT, "silent"),
    "empty text": (_set(text="。。。", text_norm=""), EMPTY, "empty"),
    "english only": (_set(text="OK, thanks", text_norm="ok thanks"), CHARSET, "ok thanks"),
    "bad characters": (_set(text="您好こんにちは", text_norm="您好こんにちは"), CHARSET, "こんにちは"),
    "chars per second too high": (_label_three_times_too_long, RATE, "too fast"),
    "chars per second too low": (_set(duration_s=20.0), RATE, "too slow"),
    "duplicate id": (_copy_from_first("id"), DUP_ID, "already used by row 0"),
    "duplicate audio hash": (_copy_from_first("audio", "audio_sha256"), DUP_AUDIO, "row 0"),
    "decode error": (
        _set(decode_error="clips/x.wav: Format not recognised", audio=None, audio_sha256=None,
             duration_s=0.0, sample_rate_src=0),
        DECODE, "Format not recognised"),
    "speaker in two splits": (_speaker_in_two_splits, SPLIT, "is in split 'train'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_rule_quarantines_exactly_the_bad_row(case, options):
    mutate, rule, words = CASES[case]
    rows = make_rows()
    mutate(rows)
    report = validate_rows(rows, options)

    assert [row for row, _ in report.rejected] == [rows[BAD]]
    (_, reasons), = report.rejected
    assert rule_names(reasons) == [rule], reasons
    assert words in reasons[0]
    assert report.accepted == rows[:BAD] + rows[BAD + 1:]
    assert report.reject_fraction == pytest.approx(0.1)
    assert not report.batch_rejected
    assert report.results_json["success"] is False


def test_row_failing_several_rules_lists_every_reason(options):
    rows = make_rows()
    rows[BAD].update(text_norm="hello", duration_s=0.1, id=rows[0]["id"])
    report = validate_rows(rows, options)
    (row, reasons), = report.rejected
    assert row is rows[BAD]
    assert set(rule_names(reasons)) == {DURATION, CHARSET, RATE, DUP_ID}


def test_options_change_the_thresholds():
    rows = make_rows()  # every clean row speaks 4 chars/s
    report = validate_rows(rows, ValidateParams(min_chars_per_s=1.0, max_chars_per_s=3.5, max_reject_fraction=1.0))
    assert len(report.rejected) == len(rows)
    assert all(rule_names(reasons) == [RATE] for _, reasons in report.rejected)
    assert not report.batch_rejected  # a fraction of 1.0 is not over a limit of 1.0


def test_batch_rejected_when_fraction_over_threshold():
    options = ValidateParams(min_chars_per_s=1.0, max_reject_fraction=0.3)
    rows = make_rows()
    for i in range(3):
        rows[i]["decode_error"] = "unreadable"
    report = validate_rows(rows, options)
    assert report.reject_fraction == pytest.approx(0.3) and not report.batch_rejected

    rows[3]["decode_error"] = "unreadable"
    report = validate_rows(rows, options)
    assert report.reject_fraction == pytest.approx(0.4) and report.batch_rejected
    assert len(report.accepted) == 6


def test_data_docs_site_written(options, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything GE wrote outside docs_dir would show up here
    rows = make_rows()
    rows[BAD]["duration_s"] = 0.05
    docs = tmp_path / "docs"
    report = validate_rows(rows, options, docs_dir=docs)

    assert report.docs_index == docs / "index.html"
    assert report.docs_index.is_file()
    pages = list((docs / "validations").rglob("*.html"))
    assert len(pages) == 1
    html = pages[0].read_text(encoding="utf-8")
    assert "zhasr_ingested_rows" in html and "speaker_in_other_split" in html
    assert [p.name for p in tmp_path.iterdir()] == ["docs"]

    rebuilt = report.write_data_docs(tmp_path / "docs_again")
    assert rebuilt.is_file()
    assert list((tmp_path / "docs_again" / "validations").rglob("*.html"))


def test_empty_input(options):
    report = validate_rows([], options)
    assert report.accepted == [] and report.rejected == []
    assert report.reject_fraction == 0.0 and not report.batch_rejected


def test_invalid_options_refused():
    with pytest.raises(ValueError, match="allowed_text_regex"):
        params_from_dict({"validate": {"allowed_text_regex": "["}})
    with pytest.raises(ValueError, match="min_duration_s"):
        params_from_dict({"validate": {"min_duration_s": 5.0, "max_duration_s": 1.0}})


def test_thousand_rows_in_a_few_seconds(options, tmp_path):
    import time

    rows = make_rows(1000)
    for row in rows[::10]:
        row["duration_s"] = 0.1
    start = time.perf_counter()
    report = validate_rows(rows, options, docs_dir=tmp_path / "docs")
    elapsed = time.perf_counter() - start
    assert len(report.rejected) == 100
    assert elapsed < 10, f"validation of 1,000 rows took {elapsed:.1f} s"


def test_no_forbidden_imports():
    source = (Path(__file__).resolve().parents[1] / "zhasr" / "data" / "validate.py").read_text(encoding="utf-8")
    assert "prefect" not in source and "mlflow" not in source
