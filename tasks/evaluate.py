"""Evaluate stage: candidate (base + adapter) and the registry's champion decoded on the same test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import registry, tracking
from tasks.context import StageContext
from zhasr.audio import load_16k
from zhasr.decode import DecodeOptions, Stopwatch, real_time_factor, transcribe
from zhasr.manifest import atomic_write_json, atomic_write_jsonl, read_json, read_jsonl
from zhasr.metrics import character_error_rate
from zhasr.models import load_model, resolve_base_model
from zhasr.progress import progress_bar


def ensure_champion(ctx: StageContext, base_dir: Path):
    """The champion version; the base model is registered as the first champion when there is none."""
    name = ctx.params.register.model_name
    champion = registry.version_by_alias(name, registry.CHAMPION)
    if champion is None:
        with mlflow.start_run(run_name="base-model", nested=True):
            mlflow.set_tag("zhasr.kind", "base-model")
            champion = registry.log_and_register(
                name, base_dir, ctx.params.model.language,
                tags={"zhasr.base_model": ctx.params.model.base, "zhasr.role": "base"},
            )
        registry.set_alias(name, registry.CHAMPION, str(champion.version), "base model registered as the first champion")
    return champion


def decode_options(ctx: StageContext) -> DecodeOptions:
    e = ctx.params.evaluate
    return DecodeOptions(language=ctx.params.model.language, task=ctx.params.model.task,
                         batch_size=e.batch_size, max_new_tokens=e.max_new_tokens, num_beams=e.num_beams)


def score_model(label: str, model_dir: Path, adapter_dir: Path | None, sets: dict[str, tuple[list[dict], list]],
                options: DecodeOptions) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Decode every set ``{name: (rows, clips)}`` with one model: ``{name: (corpus metrics, one record per clip)}``."""
    model, processor = load_model(model_dir, adapter_dir)
    scored = {}
    for name, (rows, clips) in sets.items():
        with progress_bar(f"decode {name} with {label}") as progress, Stopwatch() as watch:
            transcripts = transcribe(model, processor, clips, options, progress)
        result = character_error_rate([r["text_norm"] for r in rows], [t.text for t in transcripts])
        metrics = {
            "cer": result.cer, "substitutions": result.substitutions, "deletions": result.deletions,
            "insertions": result.insertions, "reference_chars": result.reference_chars,
            "hit_token_cap": sum(t.hit_cap for t in transcripts), "loops": sum(t.looped for t in transcripts),
            "retried": sum(t.retried for t in transcripts),
            "rtf": real_time_factor(watch.seconds, sum(r["duration_s"] for r in rows)),
        }
        per_clip = [{label: t.text, f"{label}_cer": cer, f"{label}_looped": t.looped}
                    for t, cer in zip(transcripts, result.per_utterance)]
        scored[name] = (metrics, per_clip)
    return scored


def run(ctx: StageContext) -> dict[str, Any]:
    manifest = read_jsonl(ctx.path("dataset") / "manifest.jsonl")
    rows = {name: [r for r in manifest if r["split"] == name] for name in ("test", "regression")}
    if not rows["test"]:
        raise ValueError(f"{ctx.path('dataset') / 'manifest.jsonl'}: the test split is empty")
    if not rows["regression"]:
        del rows["regression"]
    train = read_json(ctx.report("train"), "train")
    base_dir = resolve_base_model(ctx.params.model.base, ctx.path("models"))
    options = decode_options(ctx)
    sets = {name: (r, [load_16k(ctx.path("dataset") / x["audio"]) for x in r]) for name, r in rows.items()}
    with tracking.stage_run(ctx, "evaluate"):
        champion = ensure_champion(ctx, base_dir)
        candidate = score_model("candidate", Path(train["base_model_dir"]), Path(train["adapter_dir"]), sets, options)
        incumbent = score_model("champion", registry.whisper_dir(champion), None, sets, options)
        summary: dict[str, Any] = {}
        for name, set_rows in rows.items():
            scores = {"candidate": candidate[name][0], "champion": {**incumbent[name][0], "version": str(champion.version)}}
            suffix = "" if name == "test" else f"_{name}"
            for who, s in scores.items():
                mlflow.log_metrics({f"cer{suffix}_{who}": s["cer"], f"rtf{suffix}_{who}": s["rtf"],
                                    f"loops{suffix}_{who}": s["loops"], f"token_cap_hits{suffix}_{who}": s["hit_token_cap"]})
            utterances = [{"id": r["id"], "reference": r["text_norm"], "speaker": r["speaker"], **a, **b}
                          for r, a, b in zip(set_rows, candidate[name][1], incumbent[name][1])]
            mlflow.log_table(pd.DataFrame(utterances), artifact_file=f"eval/{name}_utterances.json")
            atomic_write_jsonl(ctx.path("reports") / f"evaluate_{name}_utterances.jsonl", utterances)
            summary[name] = {"clips": len(set_rows), "hours": sum(r["duration_s"] for r in set_rows) / 3600, **scores}
        # the gate reads the domain test split at the top level
        summary.update(candidate=summary["test"]["candidate"], champion=summary["test"]["champion"])
        atomic_write_json(ctx.report("evaluate"), summary)
    return summary


evaluate_task = task(run, name="evaluate", cache_policy=NO_CACHE)
