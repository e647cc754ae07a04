"""Bulk transcription on a real Dask LocalCluster of 2 worker processes: 22 generated calls (mono and stereo,
one broken file), one worker killed by its pid mid-run, a rerun that skips everything, and a new champion
that makes a third run do every call again."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter

import pytest
from conftest import write_tone

from zhasr.archive.listing import list_calls
from zhasr.archive.records import DONE, FAILED, INDEX_PARQUET, all_records
from zhasr.context import StageContext


@pytest.fixture()
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local, \
            Client(local) as client:
        yield local, client


@pytest.fixture()
def calls_dir(project):
    folder = project / "night"
    for i in range(21):
        write_tone(folder / f"line{i % 3}" / f"call{i:02d}.wav", 1.0 + 0.05 * i, rate=8000, channels=1 + i % 2,
                   freq=180 + 20 * i)
    (folder / "line0" / "broken.wav").write_bytes(b"RIFF\x00\x00 not audio")
    return folder


def test_a_night_on_two_workers_survives_a_killed_worker_and_skips_what_is_done(
        project, calls_dir, cluster, tiny_model_dir, prefect_server, monkeypatch):
    from mlflow.tracking import MlflowClient
    from test_promotion import promote, write_evaluation

    from flows.archive import run_archive
    from mlflow_services import in_use, promotion, tracking
    from tasks.decoding import ensure_champion

    local, client = cluster
    sets = [f"archive.address={local.scheduler_address}", "archive.shard_calls=2", "archive.formats=[verbose_json,srt]"]
    ctx = StageContext.load(None, sets)
    tracking.configure(ctx)  # this project's store, not the one an earlier test left MLflow pointing at
    ensure_champion(ctx, tiny_model_dir)  # v1, the champion the runs follow
    out = project / "archive"

    # Kill one worker by its pid once a few calls are done; its shard runs again on the other.
    killed, finished = {}, threading.Event()

    def kill_one_worker():
        while not finished.is_set() and len(list(out.glob("records/*/*/*.json"))) < 4:
            time.sleep(0.05)
        if finished.is_set():
            return
        # the run leases the version it reads, so that a prune meanwhile keeps its files
        killed["leases"] = [lease.what for lease in in_use.leases(MlflowClient().get_model_version("zhasr-test", "1"))]
        made = [json.loads(p.read_text()) for p in out.glob("records/*/*/*.json")]
        pid = next(p for p in client.run(os.getpid).values()
                   if any(r["worker"].endswith(f":{p}") for r in made))  # a worker that finished calls
        killed["pid"] = pid
        killed["its_records"] = {r["call_id"] for r in made if r["worker"].endswith(f":{pid}")}
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    try:
        first = run_archive(overrides=sets, source=str(calls_dir))
    finally:
        finished.set()
        killer.join()
    assert killed["its_records"] and killed["leases"] == ["zhasr transcribe-archive"]
    assert not in_use.leases(MlflowClient().get_model_version("zhasr-test", "1"))  # released at the end

    records = all_records(out)
    assert Counter(r.key for r in records).most_common(1)[0][1] == 1  # each call once
    # a shard the killed worker had begun ran again and skipped the calls it had finished (the broken one too,
    # when that worker had recorded it)
    assert (len(records), first.done + first.skipped + first.failed) == (22, 22)
    assert Counter(r.status for r in records) == {DONE: 21, FAILED: 1}
    broken = next(r for r in records if r.status == FAILED)
    assert broken.call_id == "line0/broken" and "cannot decode audio" in broken.reason
    stereo = next(r for r in records if r.call_id == "line1/call01")
    assert stereo.channels == 2 and set(stereo.texts) <= {"agent", "customer"}  # split by channel
    assert Counter(r.channels for r in records) == {1: 11, 2: 10, 0: 1}
    assert {r.model_version for r in records} == {"zhasr-test v1"}
    assert (out / stereo.outputs[0]).is_file() and stereo.outputs[1].endswith(".srt")
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert len(index) == 22 and (out / INDEX_PARQUET).is_file()
    import pyarrow.parquet as pq

    assert pq.read_table(out / INDEX_PARQUET).num_rows == 22
    # what the killed worker had finished stays as it made it: not done again
    by_killed = {r.call_id for r in records if r.worker.endswith(f":{killed['pid']}")}
    assert by_killed >= killed["its_records"]

    second = run_archive(overrides=sets, source=str(calls_dir))
    assert (second.skipped, second.done, second.failed) == (22, 0, 0)

    write_evaluation(ctx, tiny_model_dir, candidate_every=10, champion_every=3)
    promote()
    promotion.approve(ctx.params.register.model_name, "2", by="reviewer", note="better on the night's calls")
    third = run_archive(overrides=sets, source=str(calls_dir))
    assert (third.done, third.failed, third.skipped) == (21, 1, 0)
    versions = Counter(r.model_version for r in all_records(out))
    assert versions == {"zhasr-test v1": 22, "zhasr-test v2": 22}
    assert len(list_calls(calls_dir)) == 22


def test_the_scheduled_archive_run_is_served_only_with_a_source():
    from flows.schedule import archive_deployment
    from zhasr.config import params_from_dict

    assert archive_deployment(params_from_dict({})) is None
    served = archive_deployment(params_from_dict({"archive": {"source": "/calls/tonight", "cron": "15 1 * * *"}}))
    assert served.schedules[0].schedule.cron == "15 1 * * *" and served.concurrency_limit == 1
    assert served.entrypoint == "flows.schedule.scheduled_archive"  # the flow with its Dask task runner


def test_label_push_reads_the_index_transcripts_as_they_are(tmp_path, tiny_model_dir):
    from tasks.label import indexed_transcripts
    from zhasr.archive.records import write_index
    from zhasr.archive.shard import transcribe_shard
    from zhasr.config import TranscribeParams
    from zhasr.transcribe import Transcriber

    write_tone(tmp_path / "calls" / "a.wav", 1.5, rate=8000, channels=2)
    (tmp_path / "calls" / "b.wav").write_bytes(b"broken")
    write_tone(tmp_path / "calls" / "c.wav", 1.0)
    out = tmp_path / "archive"
    engine = Transcriber.open(tiny_model_dir, TranscribeParams(max_new_tokens=16))
    calls = list_calls(tmp_path / "calls")
    (tmp_path / "calls" / "c.wav").unlink()  # gone between the listing and its worker: the shard goes on
    shard = transcribe_shard(calls, engine, out, "tiny", "tiny v1")
    assert [(r.call_id, r.status) for r in shard.records] == [("a", DONE), ("b", FAILED), ("c", FAILED)]
    a = shard.records[0]  # named by call and audio: another call under the name a.wav writes over nothing
    assert a.outputs == (f"transcripts/tiny_v1/a.{a.audio_sha256[:12]}.json",)
    assert shard.records[2].reason.endswith("c.wav: cannot be read (No such file or directory)")
    write_index(out, list(shard.records))
    done, failed = indexed_transcripts(out / "index.jsonl", "tiny v1")
    assert [p.name for p, _ in done] == ["a.wav"] and done[0][1].channels == "split"
    assert done[0][1].segments == engine.transcribe(tmp_path / "calls" / "a.wav", channels="split").segments
    assert failed[0].file.endswith("b.wav") and "cannot decode" in failed[0].reason
    with pytest.raises(LookupError, match="no call transcribed by tiny v2"):
        indexed_transcripts(out / "index.jsonl", "tiny v2")


def test_an_unreadable_record_counts_as_absent_and_another_versions_record_is_not_this_ones(tmp_path):
    """A record cut short by a power loss is no record: its call is transcribed again, and the index is
    written from the others. Two version names that make one folder name do not share records."""
    from zhasr.archive.records import CallRecord, read_record, record_path, write_record

    write_record(tmp_path, CallRecord("0001", "calls/0001.wav", "a" * 64, 100, 1, "m", "m v1", DONE))
    write_record(tmp_path, CallRecord("0002", "calls/0002.wav", "c" * 64, 100, 1, "m", "m v1", FAILED, reason="x"))
    assert [r.call_id for r in all_records(tmp_path)] == ["0001", "0002"]
    record_path(tmp_path, "c" * 64, "m v1", "0002").write_text('{"call_id": "00')
    assert read_record(tmp_path, "c" * 64, "m v1", "0002") is None
    assert [r.call_id for r in all_records(tmp_path)] == ["0001"]
    assert read_record(tmp_path, "a" * 64, "m_v1", "0001") is None  # the same folder name, another model
    # a record of the first layout (one per audio, records/<version>/<sha256>.json) is still read
    first_layout = tmp_path / "records" / "m_v1" / f"{'e' * 64}.json"
    first_layout.write_text(json.dumps(CallRecord("0003", "calls/0003.wav", "e" * 64, 100, 1, "m", "m v1",
                                                  DONE).to_dict()))
    assert read_record(tmp_path, "e" * 64, "m v1", "0003").call_id == "0003"
    assert [r.call_id for r in all_records(tmp_path)] == ["0001", "0003"]


def test_the_same_audio_under_two_names_gets_transcripts_and_a_row_under_each_decoded_once(tmp_path,
                                                                                            tiny_model_dir):
    """A call copied into two folders (or exported twice) is one decoding and two calls: each name has its
    transcripts and its index row; a rerun skips both; a broken file under two names fails under both."""
    import shutil

    from zhasr.archive.records import write_index
    from zhasr.archive.shard import transcribe_shard
    from zhasr.config import TranscribeParams
    from zhasr.transcribe import Transcriber

    write_tone(tmp_path / "calls" / "a" / "0001.wav", 1.5, rate=8000, channels=2)
    (tmp_path / "calls" / "a" / "broken.wav").write_bytes(b"broken")
    shutil.copytree(tmp_path / "calls" / "a", tmp_path / "calls" / "b")
    out, engine = tmp_path / "archive", Transcriber.open(tiny_model_dir, TranscribeParams(max_new_tokens=16))
    calls = list_calls(tmp_path / "calls")
    decoded, transcribe = [], engine.transcribe
    engine.transcribe = lambda audio, **kw: decoded.append(audio) or transcribe(audio, **kw)
    shard = transcribe_shard(calls, engine, out, "tiny", "tiny v1", formats=("verbose_json", "srt"))
    assert [(r.call_id, r.status) for r in shard.records] == [("a/0001", DONE), ("a/broken", FAILED),
                                                               ("b/0001", DONE), ("b/broken", FAILED)]
    assert len(decoded) == 1 and shard.copied == ("b/0001", "b/broken")
    first, copy = shard.records[0], shard.records[2]
    assert copy.texts == first.texts and copy.path.endswith("b/0001.wav") and copy.formats == ("verbose_json", "srt")
    assert copy.outputs[0].startswith("transcripts/tiny_v1/b/0001.") and copy.outputs[1].endswith(".srt")
    assert all((out / o).read_bytes() == (out / f).read_bytes() for o, f in zip(copy.outputs, first.outputs))
    assert shard.records[3].reason == shard.records[1].reason.replace("/a/broken.wav", "/b/broken.wav")
    assert "b/broken.wav" in shard.records[3].reason
    write_index(out, all_records(out))
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert [row["call_id"] for row in index] == ["a/0001", "a/broken", "b/0001", "b/broken"]
    again = transcribe_shard(calls, engine, out, "tiny", "tiny v1", formats=("verbose_json", "srt"))
    assert len(again.skipped) == 4 and not again.copied and len(decoded) == 1
    # listed from another root (other call ids) in a format the first run did not write: decoded again
    other = transcribe_shard(list_calls(tmp_path / "calls" / "a"), engine, out, "tiny", "tiny v1", formats=("vtt",))
    assert not other.skipped and other.copied == ("broken",) and len(decoded) == 2


def test_a_source_naming_nothing_usable_is_refused_with_the_file_and_line(tmp_path):
    from zhasr.archive.listing import SourceError

    write_tone(tmp_path / "a.wav", 1.0)
    (tmp_path / "calls.jsonl").write_text('{"audio": "a.wav"}\n{"audio": "missing.wav"}\n')
    with pytest.raises(SourceError, match=r"calls.jsonl:2: missing.wav: no such file"):
        list_calls(tmp_path / "calls.jsonl")
    with pytest.raises(SourceError, match="neither a folder, a glob pattern nor a manifest"):
        list_calls(tmp_path / "nowhere")
    write_tone(tmp_path / "a.flac", 1.0)
    with pytest.raises(SourceError, match="calls share an id .*: a"):
        list_calls(tmp_path)
    assert [c.call_id for c in list_calls(str(tmp_path / "*.wav"))] == ["a"]


def test_a_shard_decodes_each_call_with_the_number_detector_too_where_redaction_is_asked(project, tiny_model_dir,
                                                                                        generated_call, monkeypatch,
                                                                                        tmp_path):
    from tasks.archive import run_shard
    from tasks.transcribe import resolve
    from zhasr.transcribe import Transcriber

    decoded, transcribe = [], Transcriber.transcribe
    monkeypatch.setattr(Transcriber, "transcribe", lambda self, audio, **kw: decoded.append(
        (self.identity, kw["words"])) or transcribe(self, audio, **kw))
    from serve_harness import cut

    (tmp_path / "calls").mkdir()
    calls = list_calls(cut(generated_call[0], tmp_path / "calls" / "call.wav", 0.0, 12.0).parent)
    model = str(tiny_model_dir)  # served, and named as the detector too
    served = resolve(StageContext.load(None, []), model).identity  # the folder and its build
    for redact, decodings in (("[phone]", [(served, True), (served, True)]), ("[]", [(served, False)])):
        ctx = StageContext.load(None, [f"transcribe.redact={redact}", f"transcribe.detector={model}",
                                       f"archive.out=archive{len(redact)}"])
        decoded.clear()
        shard = run_shard(ctx, resolve(ctx, model), calls, {}, threads=0)
        assert [r.status for r in shard.records] == [DONE] and decoded == decodings


def test_a_long_lived_worker_opens_the_detector_build_named_now(project, tiny_model_dir, generated_call, monkeypatch,
                                                                tmp_path):
    """A detector folder swapped in (as ``zhasr detector`` renames a passing build into place) is opened by the
    next shard of the same worker; without a swap the worker keeps the engines it opened."""
    import shutil

    from serve_harness import cut

    from tasks.archive import run_shard
    from tasks.transcribe import resolve
    from zhasr.transcribe import Transcriber

    detector = tmp_path / "detector" / "ct2-int8"
    heard_by, transcribe = [], Transcriber.transcribe
    monkeypatch.setattr(Transcriber, "transcribe", lambda self, audio, **kw: (
        heard_by.append(self) if self.identity.startswith(f"{detector}@") else None) or transcribe(self, audio, **kw))
    (tmp_path / "calls").mkdir()
    calls = list_calls(cut(generated_call[0], tmp_path / "calls" / "call.wav", 0.0, 12.0).parent)
    shutil.copytree(tiny_model_dir, detector)
    for shard in range(3):
        if shard == 2:
            shutil.copytree(tiny_model_dir, detector.parent / "work")
            shutil.rmtree(detector)
            (detector.parent / "work").rename(detector)
        ctx = StageContext.load(None, ["transcribe.redact=[phone]", f"transcribe.detector={detector}",
                                       f"archive.out=archive{shard}"])
        assert [r.status for r in run_shard(ctx, resolve(ctx, str(tiny_model_dir)), calls, {}, threads=0).records
                ] == [DONE]
    assert len(heard_by) == 3 and heard_by[0] is heard_by[1] and heard_by[2] is not heard_by[1]


def test_a_model_folder_written_anew_is_another_model_however_its_path_is_spelt(project, tiny_model_dir, tmp_path,
                                                                                 monkeypatch):
    """An archive run keys its records by the model's identity: a folder merged anew under the same name must
    not skip every call as done, and the same folder named by another path must not decode them all again."""
    import shutil

    from tasks.transcribe import resolve

    ctx = StageContext.load(None, [])
    shutil.copytree(tiny_model_dir, tmp_path / "models" / "merged")
    monkeypatch.chdir(tmp_path)
    first = resolve(ctx, "models/merged").identity
    assert first.startswith(f"{tmp_path / 'models' / 'merged'}@")
    assert resolve(ctx, str(tmp_path / "models" / ".." / "models" / "merged")).identity == first
    config = tmp_path / "models" / "merged" / "config.json"
    config.write_bytes(config.read_bytes())  # written again, as a new merge would
    assert resolve(ctx, "models/merged").identity != first
