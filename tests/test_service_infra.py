"""The service beside real infrastructure, Debian's ``redis-server`` and ``prometheus``, started here on
loopback ports (``make test-infra`` installs both with apt)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml
from conftest import REPO
from serve_harness import add_key, cut, free_port, make_root, start_server
from test_service import MODEL, post, service_params

pytestmark = pytest.mark.infra


def _wait(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if value := check():
                return value
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {seconds:.0f} s")


@pytest.fixture()
def redis_url(tmp_path):
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed: run `make test-infra` (it installs it with apt)")
    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        import redis

        _wait(lambda: redis.Redis(port=port).ping(), 20, "redis-server")
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_two_replicas_on_one_redis_share_a_keys_limit(tmp_path, tiny_model_dir, generated_call, redis_url):
    limit = 6
    root = make_root(tmp_path / "replicas", service_params(tiny_model_dir, requests_per_minute=limit,
                                                           limits_storage=redis_url))
    key = add_key(root, "shared")
    clip = cut(generated_call[0], tmp_path / "clip.wav", 0.0, 4.0)
    # two processes on one keys file and one Redis; each its own jobs folder
    replicas = [start_server(root, [f"serve.jobs_dir=serve/jobs-{i}"], name=f"replica{i}") for i in range(2)]
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda i: post(replicas[i % 2], key, files={"file": clip.open("rb")}), range(16)))
    finally:
        for r in replicas:
            r.stop()
    codes = [a.status_code for a in answers]
    accepted = [i % 2 for i, c in enumerate(codes) if c == 200]
    assert len(accepted) == limit and set(codes) == {200, 429}, codes  # the sum across both stays within it
    assert {0, 1} <= set(i % 2 for i, c in enumerate(codes) if c == 429)  # both replicas refuse once it is spent
    assert all(1 <= int(a.headers["Retry-After"]) <= 60 for a in answers if a.status_code == 429)


def test_prometheus_scrapes_the_service(tmp_path, tiny_model_dir, generated_call):
    if not shutil.which("prometheus"):
        pytest.fail("prometheus is not installed: run `make test-infra` (it installs it with apt)")
    root = make_root(tmp_path / "scraped", service_params(tiny_model_dir))
    key = add_key(root, "scraped")
    clip = cut(generated_call[0], tmp_path / "clip.wav", 0.0, 4.0)
    server = start_server(root, [])
    config = yaml.safe_load((REPO / "monitoring" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{server.port}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    command = ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{port}"]
    prometheus = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        assert post(server, key, files={"file": clip.open("rb")}).status_code == 200
        def target_up():
            targets = requests.get(f"{api}/targets", timeout=5).json()["data"]["activeTargets"]
            return targets and targets[0]["health"] == "up"

        _wait(target_up, 60, "the scrape target up")

        def audio_seconds():
            result = requests.get(f"{api}/query", params={"query": 'zhasr_audio_seconds_total{kind="request"}'},
                                  timeout=5).json()["data"]["result"]
            return result and float(result[0]["value"][1]) >= 4.0

        _wait(audio_seconds, 60, "zhasr_audio_seconds_total in Prometheus")
        names = set(requests.get(f"{api}/label/__name__/values", timeout=5).json()["data"])
        dashboard = json.loads((REPO / "monitoring" / "grafana-dashboard.json").read_text())
        used = set(re.findall(r"\b(zhasr_\w+)", json.dumps(dashboard)))
        assert used <= names, used - names  # every series the dashboard draws is in Prometheus
        version = requests.get(f"{api}/query", params={"query": "zhasr_model_info"},
                               timeout=5).json()["data"]["result"]
        assert version and version[0]["metric"]["version"] == MODEL
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=20)
        server.stop()
