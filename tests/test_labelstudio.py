"""The labelling loop against the real Label Studio (``make test-labelstudio``; installs it in its own
virtual environment): a generated two-channel call pushed with predictions, three regions corrected
through the API as a person would, the export pulled into a batch, ``zhasr retrain`` training on it."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from cli.main import main
from flows.label import label_pull, label_push
from service.process import free_port
from tasks import label
from zhasr.context import StageContext
from zhasr.data.ingest import assign_split
from zhasr.data.manifest import read_jsonl
from zhasr.labelling.interface import region_items
from zhasr.labelling.pull_batch import QUARANTINE

pytestmark = pytest.mark.labelstudio
REPO = Path(__file__).resolve().parents[1]
LABEL_STUDIO = REPO / ".venv-labelstudio" / "bin" / "label-studio"


@dataclass(frozen=True)
class LabelStudioServer:
    url: str
    token: str
    media: Path  # its local-files document root: the project's paths.labelling
    email: str
    password: str


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """Label Studio 1.23 on a free loopback port with a fresh sqlite store, a user and a token; stopped by
    its process group when the module ends."""
    if not LABEL_STUDIO.exists():
        pytest.fail("Label Studio is not installed: run `make test-labelstudio`")
    home = tmp_path_factory.mktemp("labelstudio")
    media = home / "labelling"
    media.mkdir()
    server = LabelStudioServer(f"http://127.0.0.1:{free_port()}", secrets.token_hex(20), media,
                               "person@localhost", secrets.token_urlsafe(12))
    # SSRF protection off: its webhooks go to the service on this machine's loopback address
    env = {**os.environ, "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(media), "SSRF_PROTECTION_ENABLED": "false"}
    log = (home / "label-studio.log").open("w")
    process = subprocess.Popen(
        [str(LABEL_STUDIO), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port",
         server.url.rsplit(":", 1)[1], "--data-dir", str(home / "data"), "--username", server.email,
         "--password", server.password, "--user-token", server.token, "--enable-legacy-api-token"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert process.poll() is None, (home / "label-studio.log").read_text()[-3000:]
            try:
                if requests.get(f"{server.url}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"Label Studio did not start in 300 s:\n{(home / 'label-studio.log').read_text()[-3000:]}")
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_push_correct_pull_and_retrain(project, label_studio, generated_call, tiny_model_dir, prefect_server,
                                       monkeypatch, capsys):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    sets = [f"label.url={label_studio.url}", f"paths.labelling={label_studio.media}", "label.project=night calls",
            "export.formats=[]"]
    ctx = StageContext.load(None, sets)
    # A call whose id the split sends to train, so that the retrain below trains on its corrected regions.
    name = next(n for n in (f"call-{k}" for k in range(100)) if assign_split(n, ctx.params.ingest) == "train")
    wav, turns = generated_call
    call = project / "calls" / f"{name}.wav"
    call.parent.mkdir()
    call.write_bytes(wav.read_bytes())

    pushed = label_push(calls=[str(call.parent)], model=str(tiny_model_dir), overrides=sets)
    assert (pushed.calls_pushed, pushed.project) == (1, "night calls")
    assert isinstance(pushed.tasks[0].numbers, int)  # what the numbers strategy ranks by, in the push's table
    studio, project_id = label.open_studio(ctx)
    task_id = pushed.tasks[0].task_id
    [prediction] = studio.client.predictions.list(task=task_id)
    predicted = [i for i in prediction.result if i["type"] == "labels"]
    assert prediction.model_version.startswith(f"{tiny_model_dir.name}@") and len(predicted) >= 3
    assert {i["value"]["channel"] for i in predicted} == {0, 1}
    audio_url = studio.export(project_id)[0]["data"]["audio"]  # Label Studio serves the kept audio to its users
    assert requests.get(f"{label_studio.url}{audio_url}", headers={"Authorization": f"Token {label_studio.token}"},
                        timeout=10).ok
    assert label.push(ctx, [call], model=str(tiny_model_dir)).already_in_project == [str(call)]

    # A person corrects three of the model's regions to what was said (the turn under each), deletes the
    # others, and leaves one region past the call's end and one without text.
    by_start = sorted(predicted, key=lambda i: i["value"]["start"])[:3]
    corrected = []
    for item in by_start:
        v = item["value"]
        turn = min(turns, key=lambda t: abs(t.start - v["start"]) + 10 * (t.channel != v["channel"]))
        corrected += region_items(item["id"], turn.start, turn.end, turn.channel, turn.speaker, turn.text)
    duration = studio.export(project_id)[0]["data"]["duration_s"]
    corrected += region_items("late", duration - 1.0, duration + 5.0, 0, "agent", "再见")
    corrected += region_items("blank", 2.0, 3.0, 1, "customer", "")
    studio.client.annotations.create(task_id, result=corrected, lead_time=180.0, parent_prediction=prediction.id)

    pulled = label.pull(ctx)
    batch = Path(pulled.batch_dir)
    rows = read_jsonl(batch / "manifest.jsonl")
    truth = {t.text for t in turns}
    assert len(rows) == 3 and all(r["text"] in truth for r in rows) and {r["call_id"] for r in rows} == {name}
    assert pulled.corrected_share == 1.0
    reasons = [q["reason"] for q in read_jsonl(ctx.path("quarantine") / batch.name / QUARANTINE)]
    assert any("late" in r and "ends past the audio's end" in r for r in reasons)
    assert any("blank" in r and "empty text" in r for r in reasons)
    assert json.loads(Path(pulled.export_file).read_text()) == studio.export(project_id)  # kept as it came
    again = label_pull(overrides=sets)
    assert (again.rows, again.batch_dir, again.already_pulled, again.export_file) == (0, None, 1, None)

    assert main(["retrain", "--synth", *(a for s in sets for a in ("--set", s))]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["trained"] is True
    run = MlflowClient().get_run(result["mlflow_run_id"])
    assert f"night calls (id {project_id})" in run.data.tags["zhasr.labelstudio.projects"]
    annotation_ids = {r["annotation_id"] for r in rows}
    assert run.data.tags["zhasr.labelstudio.annotations"] == ",".join(map(str, sorted(annotation_ids)))
    trained = [r for r in ctx.split_rows("train") if r.batch == batch.name]
    assert sorted(r.text for r in trained) == sorted(r["text"] for r in rows)


def test_the_webhook_pulls_the_corrections_and_starts_the_retraining(project, label_studio, generated_call,
                                                                      tiny_model_dir, prefect_server, monkeypatch):
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.settings import PREFECT_API_URL
    from serve_harness import add_key, start_server

    from flows.schedule import deployment

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # the service process creates the flow run
    sets = [f"label.url={label_studio.url}", f"paths.labelling={label_studio.media}", "label.project=webhook calls",
            "label.retrain_after_min=0.05", f"serve.model={tiny_model_dir}"]
    ctx = StageContext.load(None, sets)
    deployment_id = deployment(ctx.params).apply()  # retrain/<schedule.deployment>, as `zhasr schedule` registers it
    wav, turns = generated_call
    call = project / "calls" / "webhook-call.wav"
    call.parent.mkdir()
    call.write_bytes(wav.read_bytes())
    key = add_key(project, "labelstudio")
    server = start_server(project, sets)
    try:
        task_id = label.push(ctx, [call], model=str(tiny_model_dir)).tasks[0].task_id
        studio, project_id = label.open_studio(ctx)
        studio.client.webhooks.create(url=f"{server.url}/v1/labelstudio/webhook", project=project_id,
                                      headers={"Authorization": f"Bearer {key}"}, send_payload=True,
                                      send_for_all_actions=False, actions=["ANNOTATION_CREATED", "ANNOTATION_UPDATED"])
        result = [item for t in turns[:2] for item in region_items(f"t{t.start}", t.start, t.end, t.channel, t.speaker,
                                                                     t.text)]
        assert sum(t.end - t.start for t in turns[:2]) / 60 > 0.05
        studio.client.annotations.create(task_id, result=result, lead_time=60.0)

        deadline, runs = time.monotonic() + 120, []
        while time.monotonic() < deadline and not runs:
            time.sleep(1)
            with get_client(sync_client=True) as client:
                only_ours = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
                runs = client.read_flow_runs(deployment_filter=only_ours)
        assert len(runs) == 1, server.tail()
        batches = list((project / "data" / "incoming").glob("labelstudio-p*"))
        assert len(batches) == 1 and len(read_jsonl(batches[0] / "manifest.jsonl")) == 2
        assert "labelstudio" in runs[0].tags
    finally:
        server.stop()
