"""Evaluate stage: the merged candidate and the registry's champion decoded on the same frozen sets.

The domain test split (every batch so far), the real-speech regression set and its telephone twin;
CER (numbers normalized, and raw), MER, hotword recall, loops, hallucinations, real-time factor, CER
by slice (seen and unseen sentences among them); review tables and charts in MLflow. Decodings come
from the decode cache where it holds them: the champion is decoded once per clip.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import registry, review, tracking
from tasks.context import StageContext
from zhasr.audio import load_16k
from zhasr.decode import DecodeOptions, Stopwatch
from zhasr.evaluation import SYSTEMS, SystemOutput, score_set
from zhasr.export.ct2 import float32_copy, prune_copies
from zhasr.ingest import EVALUATION_SETS
from zhasr.manifest import atomic_write_json, atomic_write_jsonl, read_json, read_jsonl
from zhasr.models import resolve_base_model
from zhasr.progress import progress_bar
from zhasr.slices import estimate_snr_db, slice_labels
from zhasr.transcribe import Transcriber, guard
from zhasr.transcribe.cache import DecodeCache, engine_key, transcribe_cached, weights_digest
from zhasr.transcribe.ct2_runtime import Ct2Runtime
from zhasr.transcribe.hf_runtime import TransformersRuntime


def ensure_champion(ctx: StageContext, base_dir: Path):
    """The champion version; the base model is registered as the first champion when there is none."""
    name = ctx.params.register.model_name
    champion = registry.version_by_alias(name, registry.CHAMPION)
    if champion is None:
        with mlflow.start_run(run_name="base-model", nested=True):
            mlflow.set_tag("zhasr.kind", "base-model")
            champion = registry.log_and_register(
                name, base_dir, ctx.params.model.language,
                tags={"zhasr.base_model": ctx.params.model.base, "zhasr.role": "base"}, transcribe=ctx.params.transcribe_settings(),
            )
        registry.change_alias(name, registry.CHAMPION, str(champion.version), action="register", by="zhasr",
                              note="base model registered as the first champion")
    return champion


def decode_options(ctx: StageContext) -> DecodeOptions:
    return guard.decode_options(ctx.params.transcribe, ctx.params.model.language, ctx.params.model.task)


def ct2_copies(ctx: StageContext) -> Path:
    """Where the float32 CTranslate2 copies that evaluation decodes with are kept, one per weights."""
    return ctx.path("models") / "ct2-float32"


def open_transcriber(ctx: StageContext, model_dir: Path, weights: str, label: str) -> Transcriber:
    """The Hugging Face model in ``model_dir`` at full precision in ``evaluate.runtime``, with the engine's
    settings."""
    options = decode_options(ctx)
    if ctx.params.evaluate.runtime == "ct2":
        import torch

        copy = float32_copy(model_dir, ct2_copies(ctx), weights)
        runtime = Ct2Runtime(copy, options, ctx.params.transcribe.threads,
                             device="cuda" if torch.cuda.is_available() else "cpu")
    else:
        runtime = TransformersRuntime.open(model_dir, options)
    return Transcriber(runtime, ctx.params.transcribe_settings(), ctx.params.model.language, identity=label)


def decode_sets(ctx: StageContext, model_dir: Path, weights: str, label: str,
                sets: dict[str, list]) -> tuple[dict[str, SystemOutput], dict[str, int]]:
    """Decode every set ``{name: clips}`` with the model of ``model_dir`` (whose weights' sha256 is
    ``weights``) through the transcription engine, as it would serve (VAD pieces, the guard, the
    hallucination filter), clips the decode cache holds excepted; the model is not even loaded when it
    holds them all. ``({name: SystemOutput}, {"hits": n, "misses": n})``."""
    engine = engine_key(ctx.params.evaluate.runtime, decode_options(ctx), ctx.params.transcribe_settings(),
                        ctx.params.model.language)
    opened = functools.cache(lambda: open_transcriber(ctx, model_dir, weights, label))
    cache = DecodeCache(ctx.path("decode_cache"))
    outputs, counts = {}, {"hits": 0, "misses": 0}
    for name, clips in sets.items():
        with progress_bar(f"decode {name} with {label} (speech seconds)") as progress, Stopwatch() as watch:
            decoded = transcribe_cached(opened, clips, cache, weights, engine, label,
                                        progress=lambda d, t: progress(round(d), round(t)))
        outputs[name] = SystemOutput(decoded.transcriptions, watch.seconds)
        log.warning("decode cache, %s on %s: %d hits, %d misses", label, name, decoded.hits, decoded.misses)
        counts["hits"] += decoded.hits
        counts["misses"] += decoded.misses
    return outputs, counts


log = logging.getLogger(__name__)

METRICS = ("cer", "cer_raw", "mer", "hotword_recall", "loop_rate", "hallucination_rate", "hit_token_cap", "rtf")


def sentence_rates(summary: dict[str, Any]) -> dict[str, float]:
    """``{"cer_<seen|unseen>[_raw]_<system>": rate}`` from the sentence slices of a set's summary."""
    return {f"cer_{s['value']}{raw}_{system}": s[f"{system}_cer{raw}"] for s in summary["slices"]
            if s["kind"] == "sentence" and s["value"] != "unknown" for system in SYSTEMS for raw in ("", "_raw")}


def log_set(name: str, summary: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """MLflow: metrics ``<metric>[_<set>]_<system>``, the per-clip table, confusion pairs, the slice chart."""
    suffix = "" if name == "test" else f"_{name}"
    for system in SYSTEMS:
        mlflow.log_metrics({f"{m}{suffix}_{system}": summary[system][m] for m in METRICS
                            if summary[system][m] is not None})
    if name == "test":
        mlflow.log_metrics(sentence_rates(summary))
    mlflow.log_table(pd.DataFrame(records), artifact_file=f"eval/{name}_utterances.json")
    mlflow.log_table(review.confusion_table(summary), artifact_file=f"eval/{name}_confusion_pairs.json")
    mlflow.log_table(pd.DataFrame(summary["slices"]), artifact_file=f"eval/{name}_slices.json")
    tracking.log_figure_png(review.cer_by_slice_figure(summary["slices"], name), f"plots/cer_by_slice_{name}.png")


def run(ctx: StageContext) -> dict[str, Any]:
    dataset = ctx.path("dataset")
    manifest = read_jsonl(dataset / "manifest.jsonl")
    rows = {name: set_rows for name in EVALUATION_SETS if (set_rows := [r for r in manifest if r["split"] == name])}
    if "test" not in rows:
        raise ValueError(f"{dataset / 'manifest.jsonl'}: the test split is empty")
    trained_templates = {r["template"] for r in manifest if r["split"] in ("train", "dev") and r.get("template")}
    candidate_dir = Path(read_json(ctx.report("merge"), "merge")["merged_dir"])
    base_dir = resolve_base_model(ctx.params.model.base, ctx.path("models"))
    with tracking.stage_run(ctx, "evaluate"):
        clips = {name: [load_16k(dataset / r["audio"]) for r in set_rows] for name, set_rows in rows.items()}
        champion = ensure_champion(ctx, base_dir)
        systems = {"candidate": candidate_dir, "champion": registry.whisper_dir(champion)}
        weights = {system: weights_digest(folder) for system, folder in systems.items()}
        outputs, cache = {}, {}
        for system, folder in systems.items():
            outputs[system], cache[system] = decode_sets(ctx, folder, weights[system], system, clips)
        prune_copies(ct2_copies(ctx), {ct2_copies(ctx) / w[:16] for w in weights.values()})
        mlflow.log_metrics({f"decode_cache_{kind}_{system}": n for system, counts in cache.items()
                            for kind, n in counts.items()})
        summary: dict[str, Any] = {"champion_version": str(champion.version), "decode_cache": cache}
        for name, set_rows in rows.items():
            slices = [slice_labels(r, estimate_snr_db(c), trained_templates) for r, c in zip(set_rows, clips[name])]
            set_summary, records = score_set(set_rows, slices, {s: outputs[s][name] for s in SYSTEMS},
                                             ctx.params.evaluate.hotwords)
            log_set(name, set_summary, records)
            atomic_write_jsonl(utterances_path(ctx, name), records)
            summary[name] = set_summary
        atomic_write_json(ctx.report("evaluate"), summary)
    return summary


def headline(summary: dict[str, Any]) -> dict[str, dict[str, str]]:
    """CER of each set (and of the test split's seen and unseen sentences) by system, numbers normalized
    and raw: ``{"test": {"champion": "75.40% (raw 78.10%)", ...}, ...}``."""
    def rates(cer: float, raw: float) -> str:
        return f"{cer:.2%} (raw {raw:.2%})"

    out = {name: {system: rates(summary[name][system]["cer"], summary[name][system]["cer_raw"]) for system in SYSTEMS}
           | {"clips": summary[name]["clips"]} for name in EVALUATION_SETS if name in summary}
    for s in summary["test"]["slices"]:
        if s["kind"] == "sentence" and s["value"] != "unknown":
            out[f"test, {s['value']} sentences"] = {
                system: rates(s[f"{system}_cer"], s[f"{system}_cer_raw"]) for system in SYSTEMS} | {"clips": s["clips"]}
    return out


def utterances_path(ctx: StageContext, name: str) -> Path:
    """``reports/evaluate_<set>_utterances.jsonl``: one record per clip (see zhasr.evaluation.score_set)."""
    return ctx.path("reports") / f"evaluate_{name}_utterances.jsonl"


evaluate_task = task(run, name="evaluate", cache_policy=NO_CACHE)
