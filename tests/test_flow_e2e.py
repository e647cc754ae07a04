"""The retraining flow end to end on the tiny model: Prefect state, MLflow run, registry aliases."""

import json
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient

from cli.main import main
from zhasr.evaluation.export_verdict import ExportReport


def test_retrain_flow_runs_every_stage_and_registers(project, prefect_server, capsys):
    from flows.retrain import retrain

    state = retrain(synthesize=True, overrides=["ingest.dev_fraction=0.25"], return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    registered = result.promotion.registration

    client = MlflowClient()
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.max_steps"] == "4"
    assert run.data.params["model.base"] == "tiny-random"
    for metric in ("cer_candidate", "cer_champion", "mer_candidate", "loop_rate_champion", "rtf_candidate",
                   "hallucination_rate_candidate", "cer_gain_ci_low", "gate_passed",
                   "ingest_rows", "validate_accepted", "train_final_loss", "cer_raw_candidate",
                   "decode_cache_misses_champion", "decode_cache_hits_champion", "stage_evaluate_s"):
        assert metric in run.data.metrics, metric
    if not torch.cuda.is_available():  # on a GPU evaluation runs CTranslate2's own encoder
        # The champion (the base model) reads the lower encoder layers' output the candidate computed.
        assert run.data.metrics["decode_cache_encoder_hits_champion"] > 0
        assert run.data.metrics["decode_cache_encoder_misses_champion"] == 0
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in losses] == [1, 2, 3, 4]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "dev_cer")] == [0, 2, 4]
    train_report = json.loads((project / "reports/train.json").read_text())
    assert train_report["best_step"] in (2, 4) and train_report["cached_encoder_layers"] == 1
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/loss_curve.png", "plots/cer_by_slice_test.png"} <= artifacts
    evaluation = {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
    assert {"eval/test_utterances.json", "eval/test_confusion_pairs.json", "eval/test_slices.json"} <= evaluation
    assert any(a.path == "model_card.md" for a in client.list_artifacts(run.info.run_id))
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "eval/test_utterances.json")).read_text())
    for column in ("reference", "candidate", "candidate_cer", "champion", "band", "noise", "speaker", "batch"):
        assert column in table["columns"], column
    verdict = json.loads((project / "reports/gate.json").read_text())
    assert [r["rule"] for r in verdict["rules"]] == ["cer_gain", "relative_gain", "significant", "slices",
                                                     "regression_set", "telephone_set", "loop_rate"]

    name = "zhasr-test"
    champion = client.get_model_version_by_alias(name, "champion")
    assert str(champion.version) == "1" and champion.tags["zhasr.role"] == "base"
    candidate = client.get_model_version(name, registered.version)
    assert registered.version == "2"
    assert candidate.tags["zhasr.gate"] == ("pass" if registered.passed else "fail")
    registered_by = client.get_run(candidate.run_id).data.tags
    for tag in ("zhasr.git_commit", "zhasr.params_hash", "zhasr.base_model", "zhasr.gate.slices"):
        assert registered_by[tag], tag
    assert set(candidate.tags) == {"zhasr.gate", "zhasr.cer", "zhasr.gain", "zhasr.parent", "zhasr.dataset_md5",
                                   "zhasr.learned_batches", "zhasr.exports"}  # at most 8 with the review to come
    assert candidate.description.startswith("# zhasr-test v2")
    exports = ExportReport.from_dict(json.loads((project / "reports/export.json").read_text())).exports
    assert [e.format for e in exports] == ["ggml-q8_0", "ct2-int8", "gptq-4bit"]
    for e in exports:
        test = e.sets["test"]
        assert e.size_mb > 0 and 0 <= test.cer and test.rtf > 0 and e.fit
        assert test.rise.low <= test.rise.rise <= test.rise.high
        assert e.uri == f"runs:/{run.info.run_id}/exports/{e.format}"
        assert json.loads(candidate.tags["zhasr.exports"])[e.format] == {"verdict": "fit", "uri": e.uri}
        assert registered_by[f"zhasr.export.{e.format}"].startswith("fit: CER")
        assert client.list_artifacts(run.info.run_id, f"exports/{e.format}"), e.format
    calibration = json.loads((project / "models/exports/gptq-4bit/gptq_calibration.json").read_text())
    train_clips = json.loads((project / "reports/train.json").read_text())["train_clips"]
    assert calibration["clips"] == min(4, train_clips) and calibration["layers"] == 32
    merge = json.loads((project / "reports/merge.json").read_text())
    assert merge["max_logit_diff"] < 1e-3
    dataset_md5 = candidate.tags["zhasr.dataset_md5"]
    assert len(dataset_md5) == 32 and run.data.tags["zhasr.dataset_md5"] == dataset_md5
    aliases = client.get_registered_model(name).aliases
    if registered.passed:
        assert str(aliases.get("challenger")) == "2"
    else:
        assert "challenger" not in aliases
    assert str(aliases["champion"]) == "1"  # promotion needs a person's approval

    # Under a limit no export can meet, the same export is unfit and not kept with the run.
    capsys.readouterr()
    assert main(["export", "--format", "ggml-q8_0", "--set", "export.max_cer_increase=-10"]) == 0
    (strict,) = ExportReport.from_dict(json.loads(capsys.readouterr().out)).exports
    assert strict.verdict == "unfit" and not strict.fit and strict.uri is None

    # Incremental retraining starts from the champion's registered weights.
    capsys.readouterr()
    assert main(["train", "--set", "train.init_from=champion", "--set", "train.max_steps=1"]) == 0
    incremental = json.loads(capsys.readouterr().out)
    assert incremental["start"] == "champion v1"
    assert (project / "mlflow") in Path(incremental["base_model_dir"]).parents


