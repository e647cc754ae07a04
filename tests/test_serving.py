"""The champion served by ``mlflow models serve`` transcribes audio sent as bytes and refuses a path."""

from __future__ import annotations

import base64
import importlib.metadata
import json
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


# The distributions the project's own modules import (at the top or inside a function) once a registered version
# has loaded and decoded; what those import in turn is their own requirements' business.
IMPORTED_BY_DECODING = """
import ast, base64, importlib.metadata, json, sys
import mlflow.pyfunc, pandas
model = mlflow.pyfunc.load_model("models:/zhasr-test@champion")
model.predict(pandas.DataFrame({"audio": [base64.b64encode(open(sys.argv[1], "rb").read()).decode()]}))
names = importlib.metadata.packages_distributions()
imported = set()
for module in list(sys.modules.values()):
    if module.__name__.split(".")[0] in ("zhasr", "mlflow_services") and getattr(module, "__file__", None):
        for node in ast.walk(ast.parse(open(module.__file__, encoding="utf-8").read())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
print(json.dumps(sorted({d for top in imported for d in names.get(top, [])})))
"""


def _with_dependencies(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` name and every one they need in turn (extras left out), normalised."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        todo += [Requirement(r) for r in importlib.metadata.requires(name) or []]
    return seen


def test_a_registered_version_requires_every_package_its_decoding_imports(champion, generated_call, tmp_path):
    import mlflow
    import soundfile
    from packaging.utils import canonicalize_name

    audio, rate = soundfile.read(generated_call[0])
    soundfile.write(tmp_path / "start.wav", audio[: 20 * rate], rate)  # 20 s of the call: speech for the VAD
    imported = subprocess.run([sys.executable, "-c", IMPORTED_BY_DECODING, str(tmp_path / "start.wav")],
                              capture_output=True, text=True, timeout=300, check=True).stdout
    requirements = Path(mlflow.pyfunc.get_model_dependencies("models:/zhasr-test@champion")).read_text().split()
    missing = {canonicalize_name(d) for d in json.loads(imported.splitlines()[-1])} - _with_dependencies(requirements)
    assert missing == {"zhasr"}, missing  # zhasr itself travels as the model's code
