"""Train stage: a LoRA/DoRA adapter on the validated train split, loss curve logged to MLflow."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow
from prefect import task
from prefect.cache_policies import NO_CACHE
from transformers import TrainerCallback

from tasks import tracking
from tasks.context import StageContext
from zhasr.manifest import atomic_write_json, read_json, read_jsonl
from zhasr.models import resolve_base_model
from zhasr.train import TrainOptions, train_adapter


class MlflowStepLogger(TrainerCallback):
    """Logs every Trainer log entry (loss, learning rate, grad norm) as MLflow metrics at its step."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        numbers = {f"train_{k}": float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        if numbers:
            mlflow.log_metrics(numbers, step=state.global_step)


def train_options(ctx: StageContext, resume: bool = False) -> TrainOptions:
    p = asdict(ctx.params.train)
    p["target_modules"] = tuple(p["target_modules"])
    return TrainOptions(**p, language=ctx.params.model.language, task=ctx.params.model.task, resume=resume)


def loss_figure(history: list[tuple[int, float]]):
    figure, axis = plt.subplots(figsize=(6, 3.5))
    steps, losses = zip(*history) if history else ((), ())
    axis.plot(steps, losses, marker="o")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("training loss (cross-entropy, nats/token)")
    axis.set_title("Training loss")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def run(ctx: StageContext, resume: bool = False) -> dict[str, Any]:
    rows = [r for r in read_jsonl(ctx.path("dataset") / "manifest.jsonl") if r["split"] == "train"]
    base_dir = resolve_base_model(ctx.params.model.base, ctx.path("models"))
    with tracking.stage_run(ctx, "train"):
        mlflow.set_tags({"zhasr.base_model": ctx.params.model.base,
                         "zhasr.dataset_md5": read_json(ctx.report("validate"), "validate")["dataset_md5"]})
        result = train_adapter(base_dir, rows, ctx.path("dataset"), ctx.path("runs") / "train",
                               train_options(ctx, resume), callbacks=[MlflowStepLogger()])
        summary = {
            "adapter_dir": str(result.adapter_dir), "base_model_dir": str(base_dir), "steps": result.steps,
            "train_clips": len(rows), "final_loss": result.final_loss, "seconds": round(result.seconds, 2),
            "trainable_params": result.trainable_params, "total_params": result.total_params,
            "loss_history": result.loss_history,
        }
        mlflow.log_metrics({"train_final_loss": result.final_loss, "train_seconds": result.seconds,
                            "train_clips": len(rows), "trainable_params": result.trainable_params})
        tracking.log_figure_png(loss_figure(result.loss_history), "plots/loss_curve.png")
        atomic_write_json(ctx.report("train"), summary)
    return summary


train_task = task(run, name="train", cache_policy=NO_CACHE)
