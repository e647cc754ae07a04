"""Train stage: a PEFT adapter on the validated train split; loss, learning rate, dev CER and throughput to MLflow.

Under ``torchrun`` / ``accelerate launch`` every process trains; only rank 0
logs to MLflow and writes the report.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow
from prefect import task
from prefect.cache_policies import NO_CACHE
from transformers import TrainerCallback

from tasks import registry, tracking
from tasks.context import StageContext
from tasks.evaluate import decode_options
from zhasr.manifest import atomic_write_json, read_json, read_jsonl
from zhasr.models import resolve_base_model
from zhasr.progress import progress_bar
from zhasr.train import TrainOptions, train_adapter


class MlflowStepLogger(TrainerCallback):
    """Trainer log entries as MLflow metrics at their step: ``train_loss``, ``train_learning_rate``,
    ``train_samples_per_second``, ``dev_cer`` ..."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        numbers = {(f"dev_{k[5:]}" if k.startswith("eval_") else f"train_{k}"): float(v)
                   for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        if numbers:
            mlflow.log_metrics(numbers, step=state.global_step)


def train_options(ctx: StageContext, resume: bool = False) -> TrainOptions:
    p = asdict(ctx.params.train)
    del p["init_from"]
    return TrainOptions(**p, language=ctx.params.model.language, task=ctx.params.model.task, resume=resume,
                        decode=decode_options(ctx))


def start_model_dir(ctx: StageContext) -> tuple[Path, str]:
    """(Hugging Face folder training starts from, what it is): the base model, or the champion's merged weights."""
    base_dir = resolve_base_model(ctx.params.model.base, ctx.path("models"))
    if ctx.params.train.init_from == "champion":
        tracking.configure(ctx)
        champion = registry.version_by_alias(ctx.params.register.model_name, registry.CHAMPION)
        if champion is not None:
            return registry.whisper_dir(champion), f"champion v{champion.version}"
    return base_dir, ctx.params.model.base


def curves_figure(loss: list[tuple[int, float]], dev_cer: list[tuple[int, float]]):
    figure, left = plt.subplots(figsize=(7, 3.8))
    if loss:
        left.plot(*zip(*loss), color="tab:blue", label="training loss")
    left.set_xlabel("optimizer step")
    left.set_ylabel("training loss (nats/token)", color="tab:blue")
    left.grid(alpha=0.3)
    if dev_cer:
        right = left.twinx()
        steps, cer = zip(*dev_cer)
        right.plot(steps, [100 * c for c in cer], color="tab:red", marker="o", label="dev CER")
        right.set_ylabel("dev CER (%)", color="tab:red")
    left.set_title("Training loss and dev CER")
    figure.tight_layout()
    return figure


def run(ctx: StageContext, resume: bool = False) -> dict[str, Any]:
    rows = read_jsonl(ctx.path("dataset") / "manifest.jsonl")
    train_rows = [r for r in rows if r["split"] == "train"]
    dev_rows = [r for r in rows if r["split"] == "dev"]
    main_process = int(os.environ.get("RANK", "0")) == 0
    from accelerate import PartialState

    with PartialState().main_process_first():  # rank 0 imports or builds the model folder once
        start_dir, start_name = start_model_dir(ctx)
    options = train_options(ctx, resume)
    stage = tracking.stage_run(ctx, "train") if main_process else contextlib.nullcontext()
    with stage, (progress_bar("cache lower encoder") if main_process else contextlib.nullcontext()) as progress:
        if main_process:
            mlflow.set_tags({"zhasr.base_model": ctx.params.model.base, "zhasr.train_start": start_name,
                             "zhasr.dataset_md5": read_json(ctx.report("validate"), "validate")["dataset_md5"]})
        result = train_adapter(start_dir, train_rows, ctx.path("dataset"), ctx.path("runs") / "train", options,
                               dev_rows=dev_rows, callbacks=[MlflowStepLogger()] if main_process else [],
                               progress=progress)
        summary = {
            "adapter_dir": str(result.adapter_dir), "base_model_dir": str(start_dir), "start": start_name,
            "steps": result.steps, "train_clips": len(train_rows), "dev_clips": len(dev_rows),
            "final_loss": result.final_loss, "seconds": round(result.seconds, 2),
            "cache_seconds": round(result.cache_seconds, 2), "cached_encoder_layers": result.cached_encoder_layers,
            "precision": result.precision,
            "samples_per_second": result.samples_per_second, "best_step": result.best_step,
            "best_dev_cer": result.best_dev_cer, "world_size": int(os.environ.get("WORLD_SIZE", "1")),
            "trainable_params": result.trainable_params, "total_params": result.total_params,
            "loss_history": result.loss_history, "dev_cer_history": result.dev_cer_history,
        }
        if not main_process:
            return summary
        mlflow.log_metrics({"train_final_loss": result.final_loss, "train_seconds": result.seconds,
                            "train_cache_seconds": result.cache_seconds, "train_clips": len(train_rows),
                            "trainable_params": result.trainable_params})
        tracking.log_figure_png(curves_figure(result.loss_history, result.dev_cer_history), "plots/loss_curve.png")
        atomic_write_json(ctx.report("train"), summary)
    return summary


train_task = task(run, name="train", cache_policy=NO_CACHE)
