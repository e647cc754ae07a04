"""The champion served by ``mlflow models serve`` transcribes audio sent as bytes and refuses a path."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from mlflow_services import tracking
from tasks.decoding import ensure_champion
from zhasr.config import load_params
from zhasr.context import StageContext


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def champion(project, tiny_model_dir):
    ctx = StageContext(project, load_params(project / "params.yaml"))
    with tracking.stage_run(ctx, "setup"):
        return ensure_champion(ctx, tiny_model_dir)


def test_mlflow_models_serve_transcribes_audio_bytes_and_never_a_path(project, champion, generated_call, tmp_path):
    wav, _ = generated_call
    audio = base64.b64encode(wav.read_bytes()).decode()
    port = free_port()
    venv_bin = Path(sys.executable).parent  # mlflow runs uvicorn from PATH
    log = tmp_path / "serve.log"
    server = subprocess.Popen(
        [str(venv_bin / "mlflow"), "models", "serve", "-m", "models:/zhasr-test@champion", "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env={**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"},
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(1)
        response = requests.post(f"http://127.0.0.1:{port}/invocations", timeout=120,
                                 json={"dataframe_records": [{"audio": audio}, {"audio": audio}]})
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert len(predictions) == 2 and all(isinstance(p, str) and p for p in predictions)
        assert predictions[0] == predictions[1]  # greedy decoding is deterministic
        refused = requests.post(f"http://127.0.0.1:{port}/invocations", timeout=60,
                                json={"dataframe_records": [{"audio": str(wav)}]})
        assert refused.status_code == 400 and "not base64-encoded file bytes" in refused.json()["message"]
    finally:
        server.terminate()
        server.wait(timeout=30)
