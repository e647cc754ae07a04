"""The retraining flow end to end on the tiny model: Prefect state, MLflow run, registry aliases."""

import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from tasks.cli import main
from tasks.register import verdict


def test_retrain_flow_runs_every_stage_and_registers(project, prefect_server, capsys):
    from flows.retrain import retrain

    state = retrain(synthesize=True, overrides=["ingest.dev_fraction=0.25"], return_state=True)
    assert state.is_completed(), state.message
    result = state.result()

    client = MlflowClient()
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.max_steps"] == "4"
    assert run.data.params["model.base"] == "tiny-random"
    for metric in ("cer_candidate", "cer_champion", "ingest_rows", "validate_accepted", "train_final_loss"):
        assert metric in run.data.metrics, metric
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in losses] == [1, 2, 3, 4]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "dev_cer")] == [0, 2, 4]
    train_report = json.loads((project / "reports/train.json").read_text())
    assert train_report["best_step"] in (2, 4) and train_report["cached_encoder_layers"] == 1
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/loss_curve.png" in artifacts
    assert any(a.path == "eval/test_utterances.json" for a in client.list_artifacts(run.info.run_id, "eval"))

    name = "zhasr-test"
    champion = client.get_model_version_by_alias(name, "champion")
    assert str(champion.version) == "1" and champion.tags["zhasr.role"] == "base"
    candidate = client.get_model_version(name, result["version"])
    assert result["version"] == "2"
    assert candidate.tags["zhasr.gate"] == ("pass" if result["passed"] else "fail")
    dataset_md5 = candidate.tags["zhasr.dataset_md5"]
    assert len(dataset_md5) == 32 and run.data.tags["zhasr.dataset_md5"] == dataset_md5
    aliases = client.get_registered_model(name).aliases
    if result["passed"]:
        assert str(aliases.get("challenger")) == "2"
    else:
        assert "challenger" not in aliases
    assert str(aliases["champion"]) == "1"  # promotion needs a person's approval

    # Incremental retraining starts from the champion's registered weights.
    capsys.readouterr()
    assert main(["train", "--set", "train.init_from=champion", "--set", "train.max_steps=1"]) == 0
    incremental = json.loads(capsys.readouterr().out)
    assert incremental["start"] == "champion v1"
    assert (project / "mlflow") in Path(incremental["base_model_dir"]).parents


def test_verdict_requires_a_gain_above_the_margin():
    assert verdict(0.20, 0.30, 0.05)[0]
    assert not verdict(0.28, 0.30, 0.05)[0]
    assert not verdict(0.35, 0.30, 0.0)[0]
    assert "beats champion" in verdict(0.1, 0.3, 0.0)[1]
