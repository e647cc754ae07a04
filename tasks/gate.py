"""Gate stage: the rules of params.gate over the evaluation; verdict and each rule's outcome logged."""

from __future__ import annotations

import mlflow
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlflow_services import tracking
from zhasr.context import StageContext
from zhasr.data.manifest import atomic_write_json
from zhasr.evaluation.clips import read_clip_scores
from zhasr.evaluation.gate import Verdict, decide
from zhasr.evaluation.summary import EvaluationSummary


def run(ctx: StageContext) -> Verdict:
    evaluation = ctx.read_report("evaluate", EvaluationSummary)
    verdict = decide(evaluation.sets, read_clip_scores(ctx.utterances("test")), ctx.params.gate)
    with tracking.stage_run(ctx, "gate"):
        mlflow.set_tags({"zhasr.gate": "pass" if verdict.passed else "fail",
                         **{f"zhasr.gate.{r.rule}": "pass" if r.passed else "fail" for r in verdict.rules}})
        mlflow.log_metrics({"gate_passed": float(verdict.passed), "cer_gain": verdict.gain.gain,
                            "cer_gain_ci_low": verdict.gain.low, "cer_gain_ci_high": verdict.gain.high})
        tracking.log_json(verdict.to_dict(), "gate/verdict.json")
        atomic_write_json(ctx.report("gate"), verdict.to_dict())
    return verdict


gate_task = task(run, name="gate", cache_policy=NO_CACHE)
