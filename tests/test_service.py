"""The transcription service started for real (uvicorn on a loopback port, the tiny Whisper) and called
with the official ``openai`` client and with plain HTTP."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import requests
import yaml
from conftest import REPO, TEST_PARAMS, write_tone
from serve_harness import add_key, cut, make_root, start_server

from zhasr.serve.jobs import JobStore
from zhasr.serve.keys import KeyStore

MODEL = "tiny-random"  # the name a folder is served under


def service_params(tiny_model_dir: Path, **serve) -> dict:
    return {**TEST_PARAMS, "serve": {"model": str(tiny_model_dir), "max_upload_mb": 5.0, "max_audio_s": 240.0,
                                     "batch_wait_ms": 10.0, **serve}}


@pytest.fixture(scope="module")
def clip(generated_call, tmp_path_factory) -> Path:
    """12 s of the generated two-channel 8 kHz call: a few turns of each side."""
    return cut(generated_call[0], tmp_path_factory.mktemp("clip") / "clip.wav", 0.0, 12.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    """The tiny model served, and named as the number detector too: redaction requests decode twice."""
    params = service_params(tiny_model_dir)
    root = make_root(tmp_path_factory.mktemp("service"),
                     {**params, "transcribe": {**params["transcribe"], "detector": str(tiny_model_dir)}})
    keys = {name: add_key(root, name) for name in ("alice", "bob", "revoked")}
    KeyStore(root / "serve" / "keys.json").revoke("revoked")
    server = start_server(root, [])
    server.keys = keys
    yield server
    server.stop()


def client(server, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key or server.keys["alice"], max_retries=0, timeout=120)


def post(server, key: str | None, files: dict | None = None, data: dict | None = None, path="/v1/audio/transcriptions"):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(server.url + path, headers=headers, files=files, data=data or {"model": MODEL}, timeout=120)


def test_openai_client_gets_every_response_format(server, clip, tiny_model_dir):
    c = client(server)
    as_json = c.audio.transcriptions.create(model=MODEL, file=clip.open("rb"))
    assert as_json.text and as_json.model.startswith(f"{tiny_model_dir}@")  # the identity: the folder and its build
    verbose = c.audio.transcriptions.create(model="whisper-1", file=clip.open("rb"), response_format="verbose_json")
    assert verbose.duration == pytest.approx(12.0, abs=0.01) and verbose.segments
    assert verbose.text == as_json.text
    assert all(0 <= s.start < s.end <= 12.0 for s in verbose.segments)
    text = c.audio.transcriptions.create(model=MODEL, file=clip.open("rb"), response_format="text")
    assert text.strip() == "\n".join(s.text for s in verbose.segments)
    srt = c.audio.transcriptions.create(model=MODEL, file=clip.open("rb"), response_format="srt")
    assert re.match(r"1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n", srt)
    vtt = c.audio.transcriptions.create(model=MODEL, file=clip.open("rb"), response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n") and "-->" in vtt


def test_segment_and_word_timestamps(server, clip):
    raw = client(server).audio.transcriptions.with_raw_response.create(
        model=MODEL, file=clip.open("rb"), response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert raw.headers["x-model-version"] == MODEL
    result = raw.parse()
    assert result.segments and result.words
    for w in result.words:
        segment = next(s for s in result.segments if s.start <= w.start <= s.end)
        assert w.start <= w.end <= segment.end + 1e-6 and w.word
    # words spell their segments' text (Chinese has no spaces: the words are characters or tokens)
    spelled = "".join(w.word for w in result.words).replace(" ", "")
    assert spelled == "".join(s.text for s in result.segments).replace(" ", "")


def test_stream_sends_segments_as_deltas_then_done(server, clip):
    # split: the two channels' turns are segments of their own (a mixed 12-s clip is one segment, decoded whole)
    events = list(client(server).audio.transcriptions.create(model=MODEL, file=clip.open("rb"), stream=True,
                                                             extra_body={"channels": "split"}))
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert events[-1].type == "transcript.text.done" and len(deltas) >= 2
    assert "".join(d.delta for d in deltas) == events[-1].text
    starts = [d.model_extra["start"] for d in deltas]
    assert starts == sorted(starts)


def test_split_channels_label_the_speakers(server, clip):
    result = client(server).audio.transcriptions.create(
        model=MODEL, file=clip.open("rb"), response_format="verbose_json", extra_body={"channels": "split"})
    speakers = {s.model_extra["speaker"] for s in result.segments}
    assert speakers == {"agent", "customer"}
    assert {s.model_extra["channel"] for s in result.segments} == {0, 1}


def test_models_health_ready_and_openapi(server):
    models = client(server).models.list()
    assert [m.id for m in models.data] == [MODEL] and models.data[0].model_extra["version"] == MODEL
    assert requests.get(server.url + "/health", timeout=5).json() == {"status": "ok"}
    assert requests.get(server.url + "/ready", timeout=5).json()["status"] == "ready"
    paths = requests.get(server.url + "/openapi.json", timeout=5).json()["paths"]
    assert {"/v1/audio/transcriptions", "/v1/audio/transcriptions/jobs", "/v1/models", "/metrics"} <= set(paths)


def test_keys_none_wrong_and_revoked_get_401(server, clip):
    for key in (None, "zk-not-a-key", server.keys["revoked"]):
        r = post(server, key, files={"file": clip.open("rb")})
        assert r.status_code == 401, (key, r.text)
        assert r.json()["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        client(server, "zk-wrong").audio.transcriptions.create(model=MODEL, file=clip.open("rb"))
    log = server.log.read_text()
    assert all(k not in log for k in server.keys.values())
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert all(k not in metrics for k in server.keys.values())
    assert 'zhasr_auth_rejections_total{reason="missing"}' in metrics


def test_bad_requests_get_their_4xx_with_the_reason(server, clip, tmp_path):
    key = server.keys["bob"]
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * 6_000_000)
    r = post(server, key, files={"file": big.open("rb")})
    assert r.status_code == 413 and "limit is 5 MB" in r.json()["error"]["message"]

    def chunked():  # no Content-Length: the body is cut off where it passes the limit
        yield b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\n' + MODEL.encode() + b"\r\n"
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        for _ in range(60):
            yield b"\0" * 100_000
        yield b"\r\n--b--\r\n"

    r = requests.post(server.url + "/v1/audio/transcriptions", data=chunked(), timeout=30,
                      headers={"Authorization": f"Bearer {key}", "Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and r.json()["error"] == {
        "message": "upload of more than 5 MB, the limit", "type": "invalid_request_error", "param": "file",
        "code": "file_too_large"}, r.text
    long = write_tone(tmp_path / "long.wav", 250.0, rate=8000)
    r = post(server, key, files={"file": long.open("rb")})
    assert r.status_code == 413 and "250 s of audio" in r.json()["error"]["message"]
    junk = tmp_path / "notes.txt"
    junk.write_text("this is not audio " * 100)
    r = post(server, key, files={"file": junk.open("rb")})
    assert r.status_code == 415 and "notes.txt" in r.json()["error"]["message"]
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert post(server, key, files={"file": empty.open("rb")}).status_code == 400
    r = post(server, key, files={"file": clip.open("rb")}, data={"model": MODEL, "colour": "blue"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "colour"
    for field, value in (("response_format", "xml"), ("temperature", "hot"), ("temperature", "3"),
                         ("channels", "left"), ("language", "fr"), ("timestamp_granularities[]", "char"),
                         ("hotwords", "顺丰；" + "长" * 21), ("hotwords", " ".join(["退款"] * 51))):
        r = post(server, key, files={"file": clip.open("rb")}, data={"model": MODEL, field: value})
        assert r.status_code == 422 and r.json()["error"]["param"] == field, (field, r.text)
    r = post(server, key, files={"file": clip.open("rb")}, data={"model": "gpt-9"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = post(server, key, data={"model": MODEL})
    assert r.status_code == 422 and r.json()["error"]["param"] == "file"
    # a path is only ever a name: the server reads no file a client names
    r = post(server, key, files={"file": ("x.wav", str(clip).encode())})
    assert r.status_code == 415


def test_the_labelstudio_webhook_counts_each_annotation_once_and_refuses_what_is_not_one(server):
    from zhasr.labelling.interface import region_items

    url, auth = f"{server.url}/v1/labelstudio/webhook", {"Authorization": f"Bearer {server.keys['alice']}"}
    annotation = {"id": 5, "result": region_items("r", 1.0, 7.0, 0, "agent", "您好") + region_items("s", 8.0, 14.0, 1,
                                                                                                    "customer", "")}
    created = {"action": "ANNOTATION_CREATED", "annotation": annotation}
    first = requests.post(url, headers=auth, json=created, timeout=10)
    assert first.status_code == 200 and first.json()["minutes"] == 0.1  # the region without text is not counted
    again = requests.post(url, headers=auth, json={**created, "action": "ANNOTATION_UPDATED"}, timeout=10)
    assert again.json()["pending_min"] == 0.1 and again.json()["retrain_started"] is False  # once, below 30 min
    assert requests.post(url, headers=auth, json={"action": "PROJECT_UPDATED"}, timeout=10).json()["counted"] is False
    assert requests.post(url, json=created, timeout=10).status_code == 401
    bad = requests.post(url, headers=auth, json={"action": "ANNOTATION_CREATED", "annotation": {"id": "x"}}, timeout=10)
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "annotation"
    assert requests.post(url, headers=auth, json=[1, 2], timeout=10).status_code == 422
    for action in ([], {}, None, 3):  # not an event name: refused, not a server error
        r = requests.post(url, headers=auth, json={"action": action}, timeout=10)
        assert r.status_code == 422 and r.json()["error"]["param"] == "action", (action, r.text)


def test_metrics_count_requests_audio_and_batches(server, clip):
    client(server).audio.transcriptions.create(model=MODEL, file=clip.open("rb"))
    text = requests.get(server.url + "/metrics", timeout=5).text
    for name in ("zhasr_http_requests_total", "zhasr_audio_seconds_total", "zhasr_batch_size_bucket",
                 "zhasr_real_time_factor_bucket", "zhasr_queue_wait_seconds_bucket", "zhasr_model_info"):
        assert name in text, name
    assert re.search(r'zhasr_http_requests_total\{method="POST",route="/v1/audio/transcriptions",status="200"\} '
                     r'[1-9]', text)
    assert f'version="{MODEL}"' in text


def test_every_dashboard_metric_is_exported(server, clip):
    client(server).audio.transcriptions.create(model=MODEL, file=clip.open("rb"))
    exposed = set(re.findall(r"^(zhasr_\w+)[{ ]", requests.get(server.url + "/metrics", timeout=5).text, re.M))
    dashboard = json.loads((REPO / "monitoring" / "grafana-dashboard.json").read_text())
    used = set(re.findall(r"\b(zhasr_\w+)", json.dumps(dashboard)))
    assert len(used) >= 15 and used <= exposed, used - exposed
    scrape = yaml.safe_load((REPO / "monitoring" / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["metrics_path"] == "/metrics"


@pytest.fixture(scope="module")
def limited(tmp_path_factory, tiny_model_dir):
    root = make_root(tmp_path_factory.mktemp("limited"),
                     service_params(tiny_model_dir, requests_per_minute=5, max_queued=1, retry_after_s=3))
    keys = {name: add_key(root, name) for name in ("rate", "queue")}
    server = start_server(root, [])
    server.keys = keys
    yield server
    server.stop()


def test_rate_limit_429_with_retry_after(limited, clip):
    codes = [post(limited, limited.keys["rate"], files={"file": clip.open("rb")}) for _ in range(7)]
    assert [r.status_code for r in codes[:5]] == [200] * 5
    refused = codes[5]
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "5 requests a minute" in refused.json()["error"]["message"]
    with pytest.raises(openai.RateLimitError):
        client(limited, limited.keys["rate"]).audio.transcriptions.create(model=MODEL, file=clip.open("rb"))
    assert 'zhasr_rate_limited_total{limit="requests"}' in requests.get(limited.url + "/metrics", timeout=5).text


def test_full_queue_503_with_retry_after(limited, generated_call):
    call = generated_call[0]
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(post, limited, limited.keys["queue"], {"file": call.open("rb")})
        deadline = time.monotonic() + 30  # until the first whole call holds the one place
        while "zhasr_requests_in_flight 1.0" not in requests.get(limited.url + "/metrics", timeout=5).text:
            assert time.monotonic() < deadline and not first.done()
            time.sleep(0.05)
        second = post(limited, limited.keys["queue"], files={"file": call.open("rb")})
        assert first.result().status_code == 200
    assert second.status_code == 503 and second.headers["Retry-After"] == "3"
    assert "limit is 1" in second.json()["error"]["message"]


def test_jobs_survive_kill_9_each_done_once(tmp_path, tiny_model_dir, generated_call):
    root = make_root(tmp_path / "jobs", service_params(tiny_model_dir))
    key = add_key(root, "jobs")
    call = cut(generated_call[0], tmp_path / "minute.wav", 0.0, 60.0)  # a minute of the call: seconds to decode
    server = start_server(root, [])
    try:
        ids = []
        for _ in range(5):
            r = post(server, key, files={"file": call.open("rb")}, path="/v1/audio/transcriptions/jobs",
                     data={"model": MODEL, "response_format": "verbose_json"})
            assert r.status_code == 202, r.text
            assert r.headers["Location"].endswith(r.json()["id"])
            ids.append(r.json()["id"])
    finally:
        server.kill9()
    db = root / "serve" / "jobs" / "jobs.sqlite"
    with sqlite3.connect(db) as con:
        states = dict(con.execute("SELECT id, state FROM jobs").fetchall())
    assert set(states) == set(ids) and list(states.values()).count("done") < 5, states  # killed mid-way
    running_at_kill = {i for i, s in states.items() if s == "running"}
    print("states at kill -9:", sorted(states.values()))
    server = start_server(root, [])
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            bodies = [requests.get(f"{server.url}/v1/audio/transcriptions/jobs/{i}", timeout=10,
                                   headers={"Authorization": f"Bearer {key}"}).json() for i in ids]
            if all(b["status"] == "done" for b in bodies):
                break
            time.sleep(1)
        assert all(b["status"] == "done" and b["result"]["segments"] for b in bodies), bodies
        other = add_key(root, "other")
        assert requests.get(f"{server.url}/v1/audio/transcriptions/jobs/{ids[0]}", timeout=10,
                            headers={"Authorization": f"Bearer {other}"}).status_code == 404
    finally:
        server.stop()
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT id, state, completions, attempts FROM jobs").fetchall()
    assert [(s, c) for _, s, c, _ in rows] == [("done", 1)] * 5  # every job done, each result written once
    # a job cut off mid-decoding was taken again after the restart, and only that one
    assert {i for i, _, _, a in rows if a == 2} == running_at_kill
    if running_at_kill:
        assert f"{len(running_at_kill)} job(s) left running by the last server are queued again" in server.log.read_text()
    assert not list((root / "serve" / "jobs" / "audio").iterdir())  # audio removed once each job is done


def test_serve_keys_cli_adds_lists_and_revokes(project, capsys):
    from cli.main import main

    assert main(["serve-keys", "add", "carol"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("zk-") and len(key) > 40
    stored = (project / "serve" / "keys.json").read_text()
    assert key not in stored and KeyStore(project / "serve" / "keys.json").name_of(key) == "carol"
    assert main(["serve-keys", "add", "carol"]) == 2  # one active key per name
    assert main(["serve-keys", "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(k["name"], k["revoked"]) for k in listed] == [("carol", None)] and key not in json.dumps(listed)
    assert main(["serve-keys", "revoke", "carol"]) == 0
    assert KeyStore(project / "serve" / "keys.json").name_of(key) is None
    # a key with its own prompt terms: the service prompts with them when a request names none
    assert main(["serve-keys", "add", "desk-7", "--hotwords", "顺丰,京东物流 退款"]) == 0
    capsys.readouterr()
    store = KeyStore(project / "serve" / "keys.json")
    assert store.hotwords_of("desk-7") == ["顺丰", "京东物流", "退款"] and store.hotwords_of("carol") == []
    assert main(["serve-keys", "add", "desk-8", "--hotwords", "顺丰;" + "长" * 21]) == 2  # a request's bounds hold
    assert "--hotwords: at most 50 terms of at most 20 characters" in capsys.readouterr().err


def test_a_detector_swapped_into_its_folder_is_heard_with_from_the_next_poll(project, tiny_model_dir, tmp_path):
    """As ``zhasr detector`` renames a new detector into place, the served version gets it on the next poll
    (requests admitted before keep the ``Loaded`` they hold); a build that cannot load leaves the last one."""
    import shutil

    from service.metrics import Metrics
    from service.models import ServedModel
    from zhasr.config import load_params
    from zhasr.context import StageContext

    detector = tmp_path / "detector" / "ct2-int8"
    shutil.copytree(tiny_model_dir, detector)
    make_root(project, {**TEST_PARAMS, "serve": {"model": str(tiny_model_dir)},
                        "transcribe": {**TEST_PARAMS["transcribe"], "detector": str(detector)}})
    served = ServedModel(StageContext(project, load_params(project / "params.yaml")), Metrics())
    first = served.load()
    served.check_detector()
    assert served.current is first and first.detector is served.detector  # nothing replaced: nothing loaded

    def swap_in(build) -> None:  # as the detector stage does: written beside, renamed into place
        build(detector.parent / "work")
        shutil.rmtree(detector)
        (detector.parent / "work").rename(detector)

    swap_in(lambda folder: shutil.copytree(tiny_model_dir, folder))
    served.check_detector()
    second = served.current
    assert second.detector is not first.detector and second.transcriber is first.transcriber
    assert first.detector is not None and second.version == first.version  # the held Loaded is untouched
    swap_in(lambda folder: folder.mkdir() or (folder / "config.json").write_text("{}"))
    served.check_detector()
    served.check_detector()  # the failed build is not tried again
    assert served.current is second and served.metrics.model_load_failures._value.get() == 1


def test_a_service_started_before_any_detector_was_approved_serves_once_one_is(project, tiny_model_dir):
    """With ``transcribe.detector`` naming ``models:/zhasr-detector@champion`` and no champion yet, nothing is
    served (the error says how to get one) and polls do not retry the same attempt; once a person approves a
    detector the next poll loads the model with it."""
    from mlflow_services import promotion, registry, tracking
    from service.metrics import Metrics
    from service.models import ServedModel
    from zhasr.config import load_params
    from zhasr.context import StageContext

    make_root(project, {**TEST_PARAMS, "serve": {"model": str(tiny_model_dir), "poll_s": 0.2},
                        "transcribe": {**TEST_PARAMS["transcribe"], "detector": "models:/zhasr-detector@champion"}})
    ctx = StageContext(project, load_params(project / "params.yaml"))
    served = ServedModel(ctx, Metrics())
    with pytest.raises(LookupError, match="no version of zhasr-detector holds the alias 'champion'.*zhasr approve"):
        served.load()
    served.start()
    try:
        failures = served.metrics.model_load_failures._value
        deadline = time.monotonic() + 60
        while failures.get() == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # five polls more
        assert served.current is None and failures.get() == 1  # tried once
        with tracking.stage_run(ctx, "setup"):
            registry.log_and_register("zhasr-detector", tiny_model_dir, "zh", {"zhasr.gate": "pass"})
        promotion.approve("zhasr-detector", "1", by="ana", note="heard every kind")
        deadline = time.monotonic() + 60
        while served.current is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert served.current is not None and served.current.detector.identity == "zhasr-detector v1"
    finally:
        served.stop()


def test_hot_swap_follows_approve_and_rollback_without_a_failed_request(project, tiny_model_dir, clip, tmp_path):
    """v1 serves; approving v2 swaps it in within poll_s plus the load time while a client keeps sending;
    an approved v3 that cannot load leaves v2 serving (logged, counted); rollback to v1 swaps back."""
    import mlflow

    from cli.main import main
    from mlflow_services import registry, tracking
    from tasks.decoding import ensure_champion
    from zhasr.config import load_params
    from zhasr.context import StageContext

    make_root(project, {**TEST_PARAMS, "serve": {"poll_s": 1.0, "batch_wait_ms": 10.0}})
    ctx = StageContext(project, load_params(project / "params.yaml"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_model_dir / "config.json").read_text())  # no weights
    with tracking.stage_run(ctx, "setup"):
        assert ensure_champion(ctx, tiny_model_dir).version == 1
        for model_dir in (tiny_model_dir, broken):
            with mlflow.start_run(nested=True):
                registry.log_and_register("zhasr-test", model_dir, "zh", {"zhasr.gate": "pass"})
    key = add_key(project, "swap")
    short = cut(clip, tmp_path / "short.wav", 0.0, 4.0)
    server = start_server(project, [])
    seen: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def send() -> None:
        c = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=60)
        while not stop.is_set():
            raw = c.audio.transcriptions.with_raw_response.create(model="zhasr-test", file=short.open("rb"))
            seen.append((time.monotonic(), raw.status_code, raw.headers["x-model-version"]))
            assert raw.parse().model == f"zhasr-test v{raw.headers['x-model-version']}"

    def until(version: str, since: float, limit: float = 60.0) -> float:
        while time.monotonic() - since < limit:
            if seen and seen[-1][2] == version and seen[-1][0] > since:
                return seen[-1][0] - since
            time.sleep(0.1)
        raise AssertionError(f"no response from v{version} within {limit:.0f} s: {seen[-5:]}\n{server.tail()}")

    sender = threading.Thread(target=send, daemon=True)
    try:
        sender.start()
        until("1", time.monotonic())
        t0 = time.monotonic()
        assert main(["approve", "2", "--by", "tester", "--note", "hot swap"]) == 0
        to_v2 = until("2", t0)
        t1 = time.monotonic()
        assert main(["approve", "3", "--by", "tester", "--note", "a version that cannot load"]) == 0
        deadline = time.monotonic() + 60
        while "version 3 failed to load" not in server.log.read_text():
            assert time.monotonic() < deadline, server.tail()
            time.sleep(0.2)
        assert all(v == "2" for at, _, v in seen if at > t1 + to_v2)  # still serving v2
        assert "zhasr_model_load_failures_total 1.0" in requests.get(server.url + "/metrics", timeout=5).text
        t2 = time.monotonic()
        assert main(["rollback", "--to", "1", "--by", "tester", "--note", "back to the base"]) == 0
        to_v1 = until("1", t2)
        settled = len(seen)
        while len(seen) < settled + 3:  # v1 keeps serving
            time.sleep(0.1)
    finally:
        stop.set()
        sender.join(timeout=60)
        server.stop()
    assert to_v2 < 30 and to_v1 < 30, (to_v2, to_v1)
    assert all(code == 200 for _, code, _ in seen)
    versions = [v for _, _, v in seen]
    changes = [b for a, b in zip(versions, versions[1:]) if a != b]
    assert changes == ["2", "1"], versions  # one switch each way, never back and forth
    print(f"swap to v2 in {to_v2:.1f} s, back to v1 in {to_v1:.1f} s, {len(seen)} requests, none failed")


def test_a_version_a_service_loaded_by_number_keeps_its_files_through_a_prune_until_the_service_stops(
        project, tiny_model_dir, capsys):
    """``serve.model=models:/zhasr-test/2`` on the service's own command line, which a prune run from cron does
    not read: the service leases v2 while it serves, a prune keeps it and says who holds it, and after the
    service stopped the next prune takes it. A holder killed without releasing leaves a lease that ends by
    itself."""
    from datetime import datetime, timedelta, timezone

    import mlflow
    from mlflow.tracking import MlflowClient

    from cli.main import main
    from mlflow_services import in_use, registry, tracking
    from zhasr.config import load_params
    from zhasr.context import StageContext

    ctx = StageContext(project, load_params(project / "params.yaml"))
    with tracking.stage_run(ctx, "setup"):
        for _ in range(3):
            with mlflow.start_run(nested=True):
                registry.log_and_register("zhasr-test", tiny_model_dir, "zh", {"zhasr.gate": "pass"})
    keep = ["--set", "register.keep_newest=1", "--set", "register.keep_champions=1"]

    def prune(*options: str) -> dict[str, str]:
        capsys.readouterr()
        assert main(["prune", *keep, *options]) == 0
        return {v["version"]: v["why"] for v in json.loads(capsys.readouterr().out)[0]["versions"]}

    # the service's own params name another model to register: clients still see the name of the one it serves
    server = start_server(project, ["serve.model=models:/zhasr-test/2", "register.model_name=zhasr-other"])
    try:
        assert [m.id for m in client(server, add_key(project, "alice")).models.list().data] == ["zhasr-test"]
        fates = prune()
        assert fates["3"] == "newest 1" and fates["1"] == "pruned", fates
        assert re.fullmatch(rf"in use by zhasr serve on .+-{server.process.pid}-[0-9a-f]{{4}}", fates["2"]), fates
        capsys.readouterr()
        assert main(["status"]) == 0  # what a person reads: which versions running processes hold
        held = {row["version"]: row["in_use"] for row in json.loads(capsys.readouterr().out)["versions"]}
        assert held["2"].startswith("zhasr serve on ") and held["3"] == "", held
        assert requests.get(server.url + "/ready", timeout=5).status_code == 200
    finally:
        server.stop()
    assert not in_use.leases(MlflowClient().get_model_version("zhasr-test", "2"))  # released on stop

    killed = in_use.Holdings("a run killed since")
    killed.hold("model", "zhasr-test", "2")  # and never released
    assert prune("--dry-run")["2"] == f"in use by a run killed since on {killed.holder}"
    ended = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat(timespec="seconds")
    MlflowClient().set_model_version_tag("zhasr-test", "2", in_use.TAG_PREFIX + killed.holder,
                                         f"a run killed since{in_use.UNTIL}{ended}")  # as its lease reads once ended
    assert prune() == {"3": "newest 1", "2": "pruned"}


def test_a_holding_keeps_a_version_while_any_of_its_roles_holds_it_and_releases_only_its_own_leases(
        project, tiny_model_dir):
    """One version held as model and as detector stays leased until both roles let go; a holding's thread renews
    its leases; two holdings of one process (two flow runs) each release only their own lease."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from mlflow_services import in_use, registry, tracking
    from zhasr.config import load_params
    from zhasr.context import StageContext

    with tracking.stage_run(StageContext(project, load_params(project / "params.yaml")), "setup"):
        with mlflow.start_run(nested=True):
            registry.log_and_register("zhasr-test", tiny_model_dir, "zh", {"zhasr.gate": "pass"})
    leases = lambda: in_use.leases(MlflowClient().get_model_version("zhasr-test", "1"))  # noqa: E731
    holders = lambda: {lease.holder for lease in leases()}  # noqa: E731
    first, second = in_use.Holdings("the service"), in_use.Holdings("a night's run", renew_s=0.5)
    first.hold("model", "zhasr-test", "1")
    first.hold("detector", "zhasr-test", "1")
    first.hold("model", None, None)  # the model now a folder: the detector still holds v1
    second.hold("model", "zhasr-test", "1")
    assert holders() == {first.holder, second.holder} and first.holder != second.holder
    until = {lease.holder: lease.until for lease in leases()}
    time.sleep(2.0)  # the second holding's thread renews its lease; the first's renews hourly
    renewed = {lease.holder: lease.until for lease in leases()}
    assert renewed[second.holder] > until[second.holder] and renewed[first.holder] == until[first.holder]
    first.release()
    first.hold("model", "zhasr-test", "1")  # a load that finished after the release marks nothing
    assert holders() == {second.holder}
    with second:
        pass
    assert holders() == set()


def test_redact_itn_diarized_json_and_muted_audio_through_the_openai_client(server, clip):
    import base64
    import io

    import numpy as np
    import soundfile as sf

    c = client(server)
    split = {"channels": "split", "redact": "all", "itn": "true"}
    diarized = c.audio.transcriptions.create(model=MODEL, file=clip.open("rb"), response_format="diarized_json",
                                             extra_body=split)
    assert type(diarized).__name__ == "TranscriptionDiarized" and diarized.segments
    assert {s.speaker for s in diarized.segments} <= {"agent", "customer"} and diarized.duration == pytest.approx(12.0)
    verbose = c.audio.transcriptions.create(model=MODEL, file=clip.open("rb"), response_format="verbose_json",
                                            extra_body={**split, "redacted_audio": "true"})
    body = verbose.model_extra
    assert body["call"]["turns"] >= 1 and {f["speaker"] for f in body["call"]["speakers"]} <= {"agent", "customer"}
    muted, rate = sf.read(io.BytesIO(base64.b64decode(body["redacted_audio"]["data"])), always_2d=True)
    original, _ = sf.read(clip, always_2d=True)
    assert muted.shape[1] == 2 and abs(len(muted) / rate - len(original) / 8000) < 0.01
    assert rate == body["redacted_audio"]["sample_rate"] == 8000  # the call's own rate, not the decoder's
    for r in body.get("redactions", []):  # the random model says what it says; each span it made is silent
        assert np.abs(muted[int((r["audio_start"]) * rate):int(r["audio_end"] * rate)]).max(initial=0) == 0
    assert "redaction also hears numbers with" in server.log.read_text()
    for fields, param in [({"redact": "passport"}, "redact"), ({"redact": "phone", "stream": "true"}, "stream"),
                          ({"response_format": "diarized_json", "channels": "mix"}, "response_format"),
                          ({"redacted_audio": "true"}, "redacted_audio"),
                          ({"redact": "phone", "redacted_audio": "true", "response_format": "json"}, "redacted_audio")]:
        r = post(server, server.keys["alice"], files={"file": clip.open("rb")}, data={"model": MODEL, **fields})
        assert r.status_code == 422 and r.json()["error"]["param"] == param, (fields, r.text)


def test_a_redacted_job_keeps_its_muted_audio_until_purged(server, clip):
    key = server.keys["bob"]
    headers = {"Authorization": f"Bearer {key}"}
    r = post(server, key, files={"file": clip.open("rb")}, path="/v1/audio/transcriptions/jobs",
             data={"model": MODEL, "channels": "split", "redact": "phone,id_card", "redacted_audio": "true"})
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    deadline = time.monotonic() + 120
    while (body := requests.get(f"{server.url}/v1/audio/transcriptions/jobs/{job}", headers=headers,
                                timeout=10).json())["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert body["result"]["redacted_audio"] == f"/v1/audio/transcriptions/jobs/{job}/audio"
    audio = requests.get(server.url + body["result"]["redacted_audio"], headers=headers, timeout=10)
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav" and audio.content[:4] == b"RIFF"
    assert requests.get(server.url + body["result"]["redacted_audio"], timeout=10,
                        headers={"Authorization": f"Bearer {server.keys['alice']}"}).status_code == 404


def test_serve_purge_cli_deletes_jobs_past_retention(project, capsys):
    from cli.main import main

    store = JobStore(project / "serve" / "jobs")
    job = store.submit("k", b"audio", {}, 1.0)
    store.claim()
    store.complete(job.id, {"text": "done"}, "1")
    assert main(["serve-purge"]) == 0 and json.loads(capsys.readouterr().out)["purged"] == 0  # 30 days not passed
    store._db.execute("UPDATE jobs SET finished = finished - 31 * 86400")
    assert main(["serve-purge"]) == 0 and json.loads(capsys.readouterr().out)["purged"] == 1
    assert store.get(job.id) is None
    assert main(["serve-purge", "--set", "serve.retain_days=0"]) == 2  # kept forever: nothing to do without --days


def test_a_job_is_tried_three_times_and_an_unforeseen_error_fails_only_its_job(project):
    """A job the server stopped during three times, or whose batch failed three times, is failed; an error
    nothing foresaw fails its job and the queue goes on."""
    from service.requests import TranscriptionOptions
    from service.state import ServiceState
    from zhasr.config import load_params
    from zhasr.context import StageContext
    from zhasr.serve.jobs import MAX_ATTEMPTS

    store = JobStore(project / "serve" / "jobs")
    crashing = store.submit("k", b"audio", {}, 1.0)
    for _ in range(MAX_ATTEMPTS):  # a server takes it and stops before it finishes, MAX_ATTEMPTS times
        store.recover()
        assert store.claim().id == crashing.id
    assert store.recover() == 0
    assert store.get(crashing.id).state == "failed" and "no result in 3 attempts" in store.get(crashing.id).error

    state = ServiceState(StageContext(project, load_params(project / "params.yaml", ["serve.job_retry_s=1"])))
    state.model.current = object()  # a model is served: the jobs thread takes jobs
    broken, fine = state.jobs.submit("k", b"a", {}, 1.0), state.jobs.submit("k", b"b", {}, 1.0)
    ran = []

    def run_job(job):  # the first job meets an error nothing foresaw
        ran.append(job.id)
        if job.id == broken.id:
            raise ValueError("result not writable")
        state.jobs.complete(job.id, {"text": "ok"}, "1")

    run_jobs_until = _jobs_thread(state)
    state._run_job = run_job
    run_jobs_until(lambda: state.jobs.get(fine.id).state == "done")
    assert ran == [broken.id, fine.id]
    assert state.jobs.get(broken.id).error == "internal error: ValueError: result not writable"
    assert state.jobs.get(fine.id).state == "done"

    # a batch that fails (the runtime out of memory) is no fault of the job: it is tried again, three times
    del state._run_job
    options = TranscriptionOptions("verbose_json", False, None, None, None, False).to_dict()
    unlucky = state.jobs.submit("k", write_tone(project / "tone.wav", 1.0).read_bytes(), options, 1.0)

    def batch_fails(*args):
        raise RuntimeError("RuntimeError: CUDA out of memory")

    state.work = batch_fails
    began = time.monotonic()
    run_jobs_until(lambda: state.jobs.get(unlucky.id).state == "failed")
    assert time.monotonic() - began >= 1 + 2  # tried again after serve.job_retry_s, then twice that
    assert state.jobs.get(unlucky.id).attempts == 3
    assert state.jobs.get(unlucky.id).error == "RuntimeError: CUDA out of memory (attempt 3 of 3)"


def _jobs_thread(state):
    """``until(done)``: runs the state's jobs thread until ``done()`` holds (at most 30 s), then stops it."""
    import threading

    def until(done) -> None:
        state._stop.clear()
        thread = threading.Thread(target=state._run_jobs, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not done() and time.monotonic() < deadline:
            time.sleep(0.1)
        state._stop.set()
        state.wake_jobs()
        thread.join(5)

    return until


def test_a_truncated_upload_is_transcribed_as_far_as_it_goes_and_says_so(server, clip):
    cut_short = clip.read_bytes()[: clip.stat().st_size // 3]  # a PCM-16 WAV whose header declares 12 s
    r = post(server, server.keys["alice"], files={"file": ("cut.wav", cut_short)})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["seconds"] == pytest.approx(4.0, abs=0.1)
    assert r.json()["warnings"] == ["cut.wav: the file is cut short: 4.0 s decoded of 12.0 s declared"]
    assert "warnings" not in post(server, server.keys["alice"], files={"file": clip.open("rb")}).json()
