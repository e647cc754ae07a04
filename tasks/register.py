"""Register stage: the merged candidate becomes a model version with its lineage, metrics, verdict and
model card; alias "challenger" only if it passed the gate. "champion" needs a person (mlflow_services.promotion)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from mlflow_services import registry, review, tracking
from tasks.pipeline import is_transient_failure
from zhasr.context import StageContext
from zhasr.data.manifest import atomic_write_json
from zhasr.data.validate import ValidatedDataset
from zhasr.evaluation.bootstrap import points_with_interval
from zhasr.evaluation.export_verdict import ExportReport, ExportResult
from zhasr.evaluation.gate import Verdict
from zhasr.evaluation.summary import EvaluationSummary
from zhasr.model.merge import MergeReport
from zhasr.model.train import TrainReport
from zhasr.project import git_commit

GATE_ACTOR = "zhasr gate"


@dataclass(frozen=True)
class Registration:
    """The register stage's report (reports/register.json)."""

    model_name: str
    version: str  # the new model version
    passed: bool  # the gate's verdict
    reason: str  # the gate's reason
    alias: str | None  # "challenger" when it passed the gate, else None
    run_id: str  # the register stage's MLflow run
    model_card: str  # markdown, also the version's description

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Registration:
        return cls(**data)


ATTEMPT_TAG = "zhasr.registration"  # on a register run: what every attempt of its registration shares


def attempt_key(ctx: StageContext) -> str | None:
    """What every attempt of this registration shares: the flow's MLflow run, else the Prefect flow run (a task
    retried keeps both); None outside a flow (each CLI call registers)."""
    return ctx.mlflow_run_id or flow_run.get_id()


def registered_by(name: str, key: str | None):
    """The version of ``name`` an earlier attempt of this registration made, found by its register run's
    ``ATTEMPT_TAG`` (a retry after a failure past registering must not register a second one); None when
    there is none."""
    if key is None:
        return None
    runs = {r.info.run_id for r in mlflow.search_runs(search_all_experiments=True, output_format="list",
                                                      filter_string=f"tags.`{ATTEMPT_TAG}` = '{key}'")}
    return next((v for v in registry.versions(name) if v.run_id in runs), None) if runs else None


def version_tags(evaluation: EvaluationSummary, verdict: Verdict, dataset_md5: str, learned_batches: list[str],
                 exports: list[ExportResult]) -> dict[str, str]:
    """What a reviewer reads in the registry's versions table, and what the code reads back: the gate,
    test CER, the gain over the champion with its interval, that champion, the dataset, the batches
    learned, and each export's verdict and URI (JSON). Everything else is in the model card and on the
    register run (``run_tags``)."""
    gain = verdict.gain
    return {
        "zhasr.gate": "pass" if verdict.passed else "fail",
        "zhasr.cer": f"{evaluation.sets['test'].candidate.cer:.6f}",
        "zhasr.gain": points_with_interval(gain.gain, gain.low, gain.high),
        "zhasr.parent": evaluation.champion_version,
        "zhasr.dataset_md5": dataset_md5,
        "zhasr.learned_batches": json.dumps(learned_batches, ensure_ascii=False),
        registry.EXPORTS_TAG: json.dumps({e.format: {"verdict": e.verdict, "uri": e.uri} for e in exports}),
    }


def run_tags(ctx: StageContext, evaluation: EvaluationSummary, verdict: Verdict, train: TrainReport,
             merge: MergeReport, exports: list[ExportResult]) -> dict[str, str]:
    """The register run's tags: lineage, every gate rule, the other error rates, each export's figures."""
    test = evaluation.sets["test"]
    tags = {
        "zhasr.git_commit": git_commit(ctx.root), "zhasr.params_hash": ctx.params.digest(),
        "zhasr.base_model": ctx.params.model.base, "zhasr.gate_reason": verdict.reason[:4000],
        **{f"zhasr.gate.{r.rule}": "pass" if r.passed else "fail" for r in verdict.rules},
        "zhasr.cer_raw": f"{test.candidate.cer_raw:.6f}", "zhasr.mer": f"{test.candidate.mer:.6f}",
        "zhasr.champion_cer": f"{test.champion.cer:.6f}", "zhasr.train_start": train.start,
        "zhasr.adapter_weight": str(merge.adapter_weight),
    }
    for set_name in ("regression", "telephone"):
        if set_name in evaluation.sets:
            tags[f"zhasr.cer_{set_name}"] = f"{evaluation.sets[set_name].candidate.cer:.6f}"
    for e in exports:
        test = e.sets["test"]
        tags[f"zhasr.export.{e.format}"] = (
            f"{e.verdict}: CER {test.cer:.2%} ({points_with_interval(test.rise.rise, test.rise.low, test.rise.high)}, "
            f"limit {100 * e.limit:+.2f}), {e.size_mb} MB, RTF {test.rtf:.3f}")
    return tags


def current_exports(ctx: StageContext) -> list[ExportResult]:
    """The export stage's results when it ran on this merge, else none."""
    export_report, merge_report = ctx.report("export"), ctx.report("merge")
    if export_report.is_file() and export_report.stat().st_mtime >= merge_report.stat().st_mtime:
        return ctx.read_report("export", ExportReport).exports
    return []


def run(ctx: StageContext) -> Registration:
    evaluation, verdict = ctx.read_report("evaluate", EvaluationSummary), ctx.read_report("gate", Verdict)
    merged, train = ctx.read_report("merge", MergeReport), ctx.read_report("train", TrainReport)
    name, exports = ctx.params.register.model_name, current_exports(ctx)
    tags = version_tags(evaluation, verdict, ctx.read_report("validate", ValidatedDataset).dataset_md5,
                        train.learned_batches, exports)
    key = attempt_key(ctx)
    details = run_tags(ctx, evaluation, verdict, train, merged, exports)
    with tracking.stage_run(ctx, "register") as run:
        mlflow.set_tags(details | ({ATTEMPT_TAG: key} if key else {}))
        version = registered_by(name, key) or registry.log_and_register(
            name, Path(merged.merged_dir), ctx.params.model.language, tags=tags, transcribe=ctx.params.transcribe)
        number = str(version.version)
        card = review.model_card(
            name=name, version=number, params=ctx.params, train=train, merge=merged,
            evaluation=evaluation, verdict=verdict,
            lineage={k.removeprefix("zhasr."): details[k] for k in ("zhasr.git_commit", "zhasr.params_hash",
                                                                    "zhasr.base_model")}
                    | {"dataset_md5": tags["zhasr.dataset_md5"], "mlflow_run": run.info.run_id},
        )
        registry.publish_card(name, number, card)
        if verdict.passed:
            registry.change_alias(name, registry.CHALLENGER, number, action="gate", by=GATE_ACTOR, note=verdict.reason)
        mlflow.set_tags({"zhasr.gate": tags["zhasr.gate"], "zhasr.model_version": number})
        registration = Registration(name, number, verdict.passed, verdict.reason,
                                    registry.CHALLENGER if verdict.passed else None, run.info.run_id, card)
        atomic_write_json(ctx.report("register"), registration.to_dict())
    return registration


register_task = task(run, name="register", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10,
                     retry_condition_fn=is_transient_failure)
