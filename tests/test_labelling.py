"""The labelling loop's own logic, without a Label Studio: the labelling config, tasks and predictions,
reading the full JSON export (every bad region with its reason), the pulled batch and its ledger, and
which calls go first. ``tests/test_labelstudio.py`` runs it against the real Label Studio."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

from zhasr.data.manifest import read_jsonl
from zhasr.labelling.calls import prediction, store_call, task
from zhasr.labelling.export import read_export
from zhasr.labelling.interface import label_config, region_items
from zhasr.labelling.pull_batch import PROVENANCE, QUARANTINE, LabelSource, provenance, pulled, write_batch
from zhasr.labelling.selection import Candidate, choose, disagreement
from zhasr.transcribe.confidence import call_confidence
from zhasr.transcribe.records import Segment, Transcription

SOURCE = LabelSource("http://127.0.0.1:8089", 7, "calls")


def segment(k, start, end, channel, text, logprob=-0.1, flags=()):
    return Segment(k, start, end, text, channel, ("agent", "customer")[channel], logprob, 0.01, 1.0, flags)


def transcription(*segments):
    return Transcription("".join(s.text for s in segments), tuple(segments), 10.0, "zh", "m", "transformers", "split")


def write_call(path, seconds=10.0, rate=8000):
    """A two-channel call: a 300 Hz tone on the left, 500 Hz on the right."""
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, np.stack([0.3 * np.sin(2 * np.pi * 300 * t), 0.3 * np.sin(2 * np.pi * 500 * t)], 1), rate,
             subtype="ULAW")
    return path


def export_task(task_id=1, results=(), prediction_results=(), ann_id=11, updated="2026-12-05T01:00:00Z",
                cancelled=False, data=None):
    data = data or {"audio": "/data/local-files/?d=calls/x.wav", "call_id": "c1", "audio_sha256": "ab" * 32,
                    "duration_s": 10.0, "channels": 2}
    annotation = {"id": ann_id, "completed_by": 3, "lead_time": 40.0, "updated_at": updated, "was_cancelled": cancelled,
                  "result": [item for r in results for item in r],
                  "prediction": {"model_version": "zhasr-whisper v2",
                                 "result": [item for r in prediction_results for item in r]}}
    return {"id": task_id, "data": data, "annotations": [annotation]}


def read(tasks, pulled_set=frozenset()):
    return read_export(tasks, min_region_s=0.3, max_region_s=30.0, pulled=pulled_set)


def test_the_config_names_every_role_and_parses_as_xml():
    root = ET.fromstring(label_config(["agent", "customer"]))
    assert [e.get("value") for e in root.iter("Label")] == ["agent", "customer", "unknown"]
    assert root.find("Audio").get("splitchannels") == "true"
    assert root.find("TextArea").get("perRegion") == "true"


def test_a_call_is_kept_at_its_own_rate_and_its_task_carries_predictions(tmp_path):
    stored, audio = store_call(write_call(tmp_path / "call-7.wav"), tmp_path / "labelling")
    kept, rate = sf.read(stored.path, always_2d=True)
    assert (rate, kept.shape[1], stored.channels, stored.duration_s) == (8000, 2, 2, 10.0)
    assert stored.audio_url == f"/data/local-files/?d=calls/{stored.audio_sha256}.wav"
    result = transcription(segment(0, 1.0, 2.5, 0, "您好"), segment(1, 3.0, 4.0, 1, "查快递", flags=("loop",)))
    made = task(stored, replace(result, model=str(tmp_path / "models" / "candidate")), "zhasr-whisper v2")
    assert made["data"]["call_id"] == "call-7" and str(tmp_path) not in json.dumps(made)  # no path of this machine
    pred = made["predictions"][0]
    assert pred["model_version"] == "zhasr-whisper v2"
    assert pred["score"] == pytest.approx(call_confidence(result), abs=1e-4)
    labels = [i for i in pred["result"] if i["type"] == "labels"]
    assert [(i["value"]["channel"], i["value"]["labels"]) for i in labels] == [(0, ["agent"]), (1, ["customer"])]
    assert labels[1]["score"] == 0.0  # a flagged segment is the least certain
    assert prediction(transcription(), "v")["score"] == 1.0


def test_corrected_regions_keep_times_channel_role_and_what_the_model_said():
    predicted = [region_items("seg0", 1.0, 2.5, 0, "agent", "您号"),
                 region_items("seg1", 3.0, 4.2, 1, "customer", "查快递")]
    corrected = [region_items("seg0", 1.0, 2.5, 0, "agent", "您好"),
                 region_items("seg1", 3.0, 4.2, 1, "customer", "查快递"),
                 region_items("new", 5.0, 6.0, 1, "customer", "谢谢")]
    got = read([export_task(results=corrected, prediction_results=predicted)])
    assert not got.rejected
    by_id = {r.region_id: r for r in got.regions}
    assert (by_id["seg0"].text, by_id["seg0"].predicted_text, by_id["seg0"].corrected) == ("您好", "您号", True)
    assert by_id["seg1"].corrected is False
    assert (by_id["new"].predicted_text, by_id["new"].channel, by_id["new"].role) == (None, 1, "customer")
    assert by_id["seg0"].model_version == "zhasr-whisper v2" and by_id["seg0"].annotator == 3


@pytest.mark.parametrize("region, reason", [
    (region_items("r", 9.0, 12.0, 0, "agent", "好的"), "ends past the audio's end (10.00 s)"),
    (region_items("r", 1.0, 2.0, 0, "agent", "  "), "empty text"),
    (region_items("r", 1.0, 2.0, 3, "agent", "好的"), "the call has 2 channel(s)"),
    (region_items("r", 1.0, 1.1, 0, "agent", "好"), "lasts 0.10 s, outside 0.3-30.0 s"),
    (region_items("r", 2.0, 1.0, 0, "agent", "好"), "needs 0 <= start < end"),
    (region_items("r", 1.0, 2.0, 0, "agent", "我的电话是[PHONE]"), "holds [PHONE], a redaction"),
])
def test_a_bad_region_is_rejected_with_its_reason_and_the_others_kept(region, reason):
    good = region_items("ok", 3.0, 4.0, 1, "customer", "好的")
    got = read([export_task(results=[good, region])])
    assert [r.region_id for r in got.regions] == ["ok"]
    assert len(got.rejected) == 1 and reason in got.rejected[0].reason and "region r" in got.rejected[0].reason


def test_overlapping_regions_of_one_channel_are_both_rejected_and_other_channels_may_overlap():
    regions = [region_items("a", 1.0, 5.0, 0, "agent", "一"), region_items("b", 2.0, 2.5, 0, "agent", "二"),
               region_items("c", 4.0, 4.8, 0, "agent", "三"), region_items("d", 1.0, 5.0, 1, "customer", "四")]
    got = read([export_task(results=regions)])
    assert [r.region_id for r in got.regions] == ["d"]
    assert sorted(r.region_id for r in got.rejected) == ["a", "b", "c"]
    assert all("overlaps region" in r.reason for r in got.rejected)


def test_an_export_of_another_config_or_project_is_refused_with_the_reason():
    foreign = [{"id": "x", "from_name": "label", "to_name": "image", "type": "rectanglelabels", "value": {}}]
    ours = export_task(task_id=1)
    ours["annotations"][0]["result"] = foreign
    got = read([ours, {"id": 2, "data": {"image": "a.png"}, "annotations": []}])
    reasons = [r.reason for r in got.rejected]
    assert "'label' -> 'image' (rectanglelabels) is not of zhasr's labelling config" in reasons[0]
    assert reasons[1].startswith("task 2: not a zhasr call (data lacks call_id, audio_sha256")
    with pytest.raises(ValueError, match="none of the export's 1 tasks is a zhasr call"):
        read([{"id": 2, "data": {"image": "a.png"}, "annotations": []}])


def test_skipped_and_unannotated_tasks_and_the_newest_annotation():
    skipped = export_task(task_id=1, cancelled=True)
    unlabelled = {**export_task(task_id=2), "annotations": []}
    twice = export_task(task_id=3, results=[region_items("r", 1.0, 2.0, 0, "agent", "旧")], ann_id=1,
                        updated="2026-12-01")
    twice["annotations"].append(export_task(results=[region_items("r", 1.0, 2.0, 0, "agent", "新")], ann_id=2,
                                            updated="2026-12-02")["annotations"][0])
    got = read([skipped, unlabelled, twice])
    assert [r.reason for r in got.rejected] == ["task 1: skipped by the annotator"]
    assert got.unlabelled == 1 and [r.text for r in got.regions] == ["新"]


def test_a_later_skip_leaves_a_finished_annotation_standing():
    done = export_task(task_id=1, results=[region_items("r", 1.0, 2.0, 0, "agent", "好的")], ann_id=1,
                       updated="2026-12-01")
    done["annotations"].append(export_task(ann_id=2, updated="2026-12-02", cancelled=True)["annotations"][0])
    got = read([done])
    assert not got.rejected and [(r.annotation_id, r.text) for r in got.regions] == [(1, "好的")]


def test_odd_but_possible_exports_are_read_or_refused_with_the_task_named():
    """A refused region takes no good one down with it; text that is not lines of text, a region naming no
    channel of a stereo call and an audio hash that is not one are refused with their reason; a user object
    as ``completed_by`` is read as its id."""
    blank = region_items("blank", 1.0, 3.0, 0, "agent", " ")
    good = region_items("good", 1.5, 2.5, 0, "agent", "好的")
    nulls = region_items("nulls", 4.0, 5.0, 0, "agent", "x")
    nulls[1]["value"]["text"] = ["好", None]
    no_channel = region_items("nochannel", 6.0, 7.0, 1, "customer", "嗯")
    for item in no_channel:
        del item["value"]["channel"]
    first = export_task(task_id=1, results=[blank, good, no_channel])
    first["annotations"][0]["completed_by"] = {"id": 5, "email": "a@example.com"}
    got = read([first, export_task(task_id=2, results=[nulls], ann_id=12),
                export_task(task_id=3, results=[good], ann_id=13,
                            data={"call_id": "c3", "audio_sha256": "../../elsewhere/secret", "duration_s": 10.0,
                                  "channels": 2})])
    assert [(r.region_id, r.annotator) for r in got.regions] == [("good", 5)]
    reasons = sorted(r.reason for r in got.rejected)
    assert len(reasons) == 4, reasons
    assert "region blank (1.00-3.00 s, channel 0): empty text" in reasons[0]
    assert "names no channel of a 2-channel call" in reasons[1]
    assert reasons[2].startswith("task 2, annotation 12: region nulls: its text is ['好', None], not lines of text")
    assert reasons[3].startswith("task 3: audio_sha256 '../../elsewhere/secret' is not a SHA-256")


def test_a_pull_writes_clips_from_their_channel_and_a_second_pull_adds_nothing(tmp_path):
    labelling, incoming, quarantine = tmp_path / "labelling", tmp_path / "incoming", tmp_path / "quarantine"
    stored, _ = store_call(write_call(tmp_path / "c1.wav"), labelling)
    data = {"audio": stored.audio_url, "call_id": "c1", "audio_sha256": stored.audio_sha256, "duration_s": 10.0,
            "channels": 2}
    regions = [region_items("a", 1.0, 2.0, 0, "agent", "您好"),
               region_items("b", 3.0, 4.5, 1, "customer", "查快递"),
               region_items("c", 5.0, 6.0, 1, "customer", "")]
    export = [export_task(results=regions, prediction_results=[region_items("a", 1.0, 2.0, 0, "agent", "您号")],
                          data=data)]
    got = read(export, pulled(labelling))
    result = write_batch(got.regions, got.rejected, SOURCE, labelling_dir=labelling, incoming=incoming,
                         quarantine=quarantine, batch="ls-1")
    rows = read_jsonl(incoming / "ls-1" / "manifest.jsonl")
    assert [(r["text"], r["call_channel"], r["role"], r["speaker"]) for r in rows] == [
        ("您好", 0, "agent", "c1"), ("查快递", 1, "customer", "c1")]
    clip, rate = sf.read(incoming / "ls-1" / rows[1]["audio"])
    assert rate == 8000 and len(clip) == 12000
    assert abs(np.fft.rfft(clip)).argmax() * rate / len(clip) == pytest.approx(500, abs=5)  # the right channel
    assert (result.rows, result.rejected, result.minutes, result.corrected_share) == (2, 1, 0.042, 1.0)
    assert [q["reason"] for q in read_jsonl(quarantine / "ls-1" / QUARANTINE)] == [
        "region c (5.00-6.00 s, channel 1): empty text"]
    assert provenance(incoming / "ls-1").annotations == (11,) and (incoming / "ls-1" / PROVENANCE).is_file()
    again = read(export, pulled(labelling))
    assert (again.regions, again.rejected, again.already_pulled) == ((), (), 1)
    changed = read([export_task(results=regions[:1], data=data, updated="2026-12-06T00:00:00Z")], pulled(labelling))
    assert len(changed.regions) == 1  # corrected again later: pulled again


def test_a_correction_pulled_later_replaces_the_tasks_earlier_rows_in_the_dataset(project):
    """The person fixes region a's text and deletes region b after the first pull, and a reviewer's own
    annotation of the task comes later still: each pull's batch holds the task's newest label, and
    validation keeps only the newest (whatever the batches are called), the earlier rows quarantined with
    the reason and counted as no failure of their batch."""
    from tasks import ingest, validate
    from zhasr.config import load_params
    from zhasr.context import StageContext
    from zhasr.data.manifest import read_manifest

    ctx = StageContext(project, load_params(project / "params.yaml", ["ingest.test_fraction=0.0",
                                                                      "ingest.dev_fraction=0.0"]))
    labelling = project / "labelling"
    stored, _ = store_call(write_call(project / "c1.wav"), labelling)
    data = {"audio": stored.audio_url, "call_id": "c1", "audio_sha256": stored.audio_sha256, "duration_s": 10.0,
            "channels": 2}
    first = [region_items("a", 1.0, 2.0, 0, "agent", "您号"), region_items("b", 3.0, 4.5, 1, "customer", "查快递")]
    # batch names sort against the order of the pulls: the label time decides
    for batch, regions, ann_id, updated in (
            ("z-first", first, 11, "2026-12-05T01:00:00Z"),
            ("m-second", [region_items("a", 1.0, 2.0, 0, "agent", "您好")], 11, "2026-12-06T01:00:00Z"),
            ("a-third", [region_items("a", 1.0, 2.0, 0, "agent", "您好呀")], 12, "2026-12-07T01:00:00Z")):
        got = read([export_task(results=regions, data=data, ann_id=ann_id, updated=updated)], pulled(labelling))
        write_batch(got.regions, got.rejected, SOURCE, labelling_dir=labelling, incoming=ctx.path("incoming"),
                    quarantine=ctx.path("quarantine"), batch=batch)
    ingest.run(ctx)
    report = validate.run(ctx)
    assert [(r.text, r.label_version, r.batch) for r in read_manifest(ctx.dataset_manifest())] == [
        ("您好呀", "ls7-t1@2026-12-07T01:00:00Z", "a-third")]
    reason = "replaced: task ls7-t1 was labelled again; batch a-third holds its newest label"
    assert [(r["text"], r["reasons"]) for r in read_jsonl(ctx.path("quarantine") / "z-first" / "rejected.jsonl")] == [
        ("您号", [reason]), ("查快递", [reason])]
    assert [r["text"] for r in read_jsonl(ctx.path("quarantine") / "m-second" / "rejected.jsonl")] == ["您好"]
    assert report.rejected_batches == [] and report.reasons == {"replaced": 3}


def test_choose_fills_the_budget_with_the_least_certain_calls_and_spreads_over_kinds():
    pool = [Candidate("a", 60, 0.9, "2ch@8000"), Candidate("b", 60, 0.8, "2ch@8000"),
            Candidate("c", 60, 0.6, "1ch@16000"), Candidate("d", 200, 0.99, "2ch@8000"),
            Candidate("e", 30, 0.1, "1ch@16000")]
    assert [c.call_id for c in choose(pool, "confidence", 150)] == ["a", "c", "e"]
    assert [c.call_id for c in choose(pool, "confidence", 0)] == ["d", "a", "c", "b", "e"]
    assert choose(pool, "random", 0, seed=1) == choose(pool, "random", 0, seed=1)
    with pytest.raises(ValueError, match="challenger"):
        choose(pool, "disagreement", 100)
    assert disagreement("您好请问", "您好请问") == 0.0 and disagreement("您好请问", "") == 1.0


def test_numbers_puts_calls_that_say_numbers_first_and_the_least_certain_first_among_equals():
    from zhasr.labelling.selection import numbers_heard

    assert numbers_heard("您好请问有什么可以帮您，退款金额是三百二十八元") == 0
    assert numbers_heard("我的手机号是幺三八幺二三四五六七八，身份证号码是[ID_CARD]") == 2
    assert numbers_heard("订单号是3572081634，验证码是三五七二八一") == 2  # an order number counts too
    assert numbers_heard("尾号12345[PHONE]67890") == 1  # digits on both sides of a placeholder are not one run
    pool = [Candidate("plain-unsure", 60, 0.9, "2ch@8000", numbers=0),
            Candidate("two-in-a-minute", 60, 0.1, "2ch@8000", numbers=2),
            Candidate("two-in-two-minutes", 120, 0.5, "2ch@8000", numbers=2),
            Candidate("one-in-a-minute-unsure", 60, 0.6, "2ch@8000", numbers=1),
            Candidate("plain-sure", 60, 0.2, "2ch@8000", numbers=0)]
    assert [c.call_id for c in choose(pool, "numbers", 0)] == [
        "two-in-a-minute", "one-in-a-minute-unsure", "two-in-two-minutes", "plain-unsure", "plain-sure"]
    assert [c.call_id for c in choose(pool, "numbers", 180)] == [
        "two-in-a-minute", "one-in-a-minute-unsure", "plain-unsure"]


def test_the_scheduled_push_is_served_only_when_a_calls_folder_is_set():
    from flows.schedule import label_push_deployment
    from zhasr.config import params_from_dict

    assert label_push_deployment(params_from_dict({})) is None
    served = label_push_deployment(params_from_dict({"label": {"calls_dir": "calls/tonight",
                                                               "push_cron": "30 5 * * *"}}))
    assert served.schedules[0].schedule.cron == "30 5 * * *" and served.concurrency_limit == 1


def test_labelled_minutes_count_regions_with_text_once_per_annotation(tmp_path):
    from zhasr.labelling.webhook import MinuteLedger, labelled_minutes

    result = (region_items("a", 0.0, 30.0, 0, "agent", "您好") + region_items("b", 0.0, 100.0, 1, "customer", "好的")
              + region_items("c", 5.0, 6.0, 1, "customer", ""))
    assert labelled_minutes({"id": 3, "result": result}, max_region_s=60.0) == (3, 1.5)  # b capped at 60 s, c empty
    assert labelled_minutes({"id": True, "result": []}, 60.0) is None and labelled_minutes([], 60.0) is None
    odd = region_items("d", 0.0, 1.0, 0, "agent", "好")
    for end in (10 ** 400, float("inf"), float("nan"), "9", True):  # what JSON may hold; none is a region
        odd[1]["value"]["end"] = end
        assert labelled_minutes({"id": 5, "result": odd}, 60.0) == (5, 0.0), end
    ledger = MinuteLedger(tmp_path / "minutes.json")
    assert ledger.add(3, 1.5) == 1.5 and ledger.add(3, 2.0) == 2.0 and ledger.add(4, 1.0) == 3.0
    ledger.clear({"3"})
    assert ledger.pending() == {"4": 1.0}


def test_label_commands_name_the_address_when_label_studio_is_not_there(project, monkeypatch, capsys):
    from cli.main import main
    from service.process import free_port

    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    assert main(["label", "pull"]) == 2
    assert "no Label Studio API token" in capsys.readouterr().err
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "0" * 40)
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["label", "pull", "--set", f"label.url={url}"]) == 2
    assert f"Label Studio at {url} does not answer" in capsys.readouterr().err
