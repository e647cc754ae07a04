"""Validate stage: the Great Expectations suite over ingested rows; failures quarantined with reasons."""

from __future__ import annotations

from collections import Counter, defaultdict

import mlflow
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlflow_services import tracking
from zhasr.context import StageContext
from zhasr.data.manifest import ManifestRow, atomic_write_json, atomic_write_jsonl, file_md5, read_jsonl
from zhasr.data.validate import ValidatedDataset, replaced_by_corrections, validate_rows


class BatchRejected(RuntimeError):
    """Every batch failed the reject-fraction threshold: nothing is left to train on."""


def run(ctx: StageContext) -> ValidatedDataset:
    p = ctx.params.validate
    rows = read_jsonl(ctx.path("dataset") / "ingested.jsonl")
    docs_dir = ctx.path("reports") / "data_docs"
    with tracking.stage_run(ctx, "validate"):
        # A corrected annotation's earlier rows leave before the suite: they are no duplicates of the new ones
        # and no failures of their batch.
        replaced = replaced_by_corrections(rows)
        report = validate_rows([r for i, r in enumerate(rows) if i not in replaced], p, docs_dir=docs_dir)
        # Keyed by the row object, not its id: a duplicated id is rejected once, its first copy kept.
        reasons: dict[int, list[str]] = {id(r): list(why) for r, why in report.rejected}
        reasons.update((id(rows[i]), [why]) for i, why in replaced.items())

        # A batch whose own failure rate passes the threshold is rejected whole (replaced rows are no failure).
        per_batch = Counter(r["batch"] for r in rows)
        judged = Counter(r["batch"] for i, r in enumerate(rows) if i not in replaced)
        failed = Counter(r["batch"] for r, _ in report.rejected)
        rejected_batches = {b for b, n in judged.items() if failed[b] / n > p.max_reject_fraction}
        for row in rows:
            if row["batch"] in rejected_batches:
                share = failed[row["batch"]] / judged[row["batch"]]
                reasons.setdefault(id(row), []).append(
                    f"batch {row['batch']} rejected whole: {share:.0%} of its rows failed (limit {p.max_reject_fraction:.0%})")

        accepted = [r for r in rows if id(r) not in reasons]
        quarantine: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            if id(row) in reasons:
                quarantine[row["batch"]].append({**row, "reasons": reasons[id(row)]})
        for batch in per_batch:
            atomic_write_jsonl(ctx.path("quarantine") / batch / "rejected.jsonl", quarantine.get(batch, []))
        manifest = ctx.dataset_manifest()
        atomic_write_jsonl(manifest, [ManifestRow.from_dict(r) for r in accepted])

        report = ValidatedDataset(
            file_md5(manifest), len(rows), len(accepted), len(rows) - len(accepted), sorted(rejected_batches),
            dict(Counter(r["split"] for r in accepted)),
            dict(Counter(why.split(":")[0] for whys in reasons.values() for why in whys)))
        mlflow.set_tag("zhasr.dataset_md5", report.dataset_md5)
        mlflow.log_metrics({"validate_accepted": report.accepted, "validate_quarantined": report.quarantined})
        if docs_dir.exists():
            mlflow.log_artifacts(str(docs_dir), "data_docs")
        tracking.log_json(report.to_dict(), "validate/summary.json")
        atomic_write_json(ctx.report("validate"), report.to_dict())
    if not accepted:
        raise BatchRejected(f"no row passed validation; see {ctx.path('quarantine')} and {docs_dir}")
    return report


validate_task = task(run, name="validate", cache_policy=NO_CACHE)
