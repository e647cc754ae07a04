"""Train stage: a PEFT adapter on the validated train split; loss, learning rate, dev CER and throughput to MLflow.

Under ``torchrun`` / ``accelerate launch`` every process trains; only rank 0
logs to MLflow and writes the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

import mlflow
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlflow_services import registry, review, tracking
from mlflow_services.step_metrics import MlflowStepLogger
from tasks.decoding import Model, decode_options, decode_sets, load_clips, whole_clip_decoding
from zhasr.context import StageContext
from zhasr.data.augment import every_channel, telephone_augmented
from zhasr.data.manifest import ManifestRow, atomic_write_json
from zhasr.data.text import normalize
from zhasr.data.validate import ValidatedDataset
from zhasr.model.loading import resolve_base_model
from zhasr.model.recipe import RoundOrigin, RoundRows, select_rows
from zhasr.model.train import TrainReport, read_plan, train_adapter
from zhasr.progress import progress_bar


def start_model(ctx: StageContext) -> tuple[Path, str, set[str]]:
    """(Hugging Face folder training starts from, what it is, the batches it has learned): the base model,
    or with ``train.init_from: champion`` the champion's merged weights."""
    base_dir = resolve_base_model(ctx.params.model.base, ctx.path("models"))
    if ctx.params.train.init_from == "champion":
        tracking.configure(ctx)
        champion = registry.version_by_alias(ctx.params.register.model_name, registry.CHAMPION)
        if champion is not None:
            return registry.whisper_dir(champion), f"champion v{champion.version}", registry.learned_batches(champion)
    return base_dir, ctx.params.model.base, set()


def round_rows(ctx: StageContext, learned: set[str], resume: bool) -> RoundRows:
    """This round's clips: those of the plan being resumed, else ``zhasr.model.recipe.select_rows``."""
    train_rows = ctx.split_rows("train")
    plan = read_plan(ctx.path("runs") / "train") if resume else None
    if plan is None:
        p = ctx.params.train
        return select_rows(train_rows, learned, p.init_from, p.replay_ratio, p.seed)
    by_id = {r.id: r for r in train_rows}
    pseudo_ids = {r.id for split in ctx.params.train.pseudo_label_splits for r in ctx.split_rows(split)}
    missing = [i for i in plan.rows if i not in by_id and i not in pseudo_ids]
    if missing:
        raise ValueError(f"cannot resume: {len(missing)} clip(s) of the plan being resumed ({missing[0]}, ...) are no "
                         f"longer in the train split of {ctx.dataset_manifest()}")
    if plan.origin is None:
        raise ValueError(f"cannot resume: {ctx.path('runs') / 'train'}'s plan does not say where its clips came from")
    return RoundRows([by_id[i] for i in plan.rows if i in by_id], plan.origin.new_clips, plan.origin.replayed_clips,
                     plan.origin.learned_batches)


def pseudo_labelled(ctx: StageContext, start_dir: Path) -> list[ManifestRow]:
    """The clips of ``train.pseudo_label_splits`` with the start model's own transcripts as their texts
    (decoded whole without a prompt, through the decode cache), each as it is and through every augment
    codec; clips it hears nothing in are left out."""
    rows = [r for split in ctx.params.train.pseudo_label_splits for r in ctx.split_rows(split)]
    if not rows:
        return []
    outputs, _ = decode_sets(ctx, Model.of("start", start_dir), load_clips(ctx, {"pseudo-labels": rows}),
                             whole_clip_decoding(ctx.params.transcribe))
    labelled = [dataclasses.replace(r, text=t.text, text_norm=normalize(t.text))
                for r, t in zip(rows, outputs["pseudo-labels"].transcripts) if normalize(t.text)]
    return every_channel(labelled, ctx.path("dataset"), ctx.path("augmented"), ctx.params.train.augment_codecs)


def run(ctx: StageContext, resume: bool = False) -> TrainReport:
    main_process = int(os.environ.get("RANK", "0")) == 0
    from accelerate import PartialState

    with PartialState().main_process_first():  # rank 0 imports or builds the model folder once
        start_dir, start_name, learned = start_model(ctx)
    chosen = round_rows(ctx, learned, resume)
    p = ctx.params.train
    rows = telephone_augmented(chosen.rows, ctx.path("dataset"), ctx.path("augmented"),
                               p.augment_codecs, p.telephone_augment, p.seed, p.telephone_twins)
    pseudo = pseudo_labelled(ctx, start_dir)
    dev_rows = ctx.split_rows("dev")
    stage = tracking.stage_run(ctx, "train") if main_process else contextlib.nullcontext()
    with stage, (progress_bar("cache lower encoder") if main_process else contextlib.nullcontext()) as progress:
        if main_process:
            mlflow.set_tags({"zhasr.base_model": ctx.params.model.base, "zhasr.train_start": start_name,
                             "zhasr.dataset_md5": ctx.read_report("validate", ValidatedDataset).dataset_md5})
        result = train_adapter(
            start_dir, rows + pseudo, ctx.path("dataset"), ctx.path("runs") / "train", p,
            language=ctx.params.model.language, task=ctx.params.model.task, decode=decode_options(ctx),
            dev_rows=dev_rows, resume=resume, callbacks=[MlflowStepLogger()] if main_process else [],
            progress=progress, origin=RoundOrigin(chosen.new, chosen.replayed, chosen.learned_batches, start_name))
        report = TrainReport(
            adapter_dir=str(result.adapter_dir), base_model_dir=str(start_dir), start=start_name, steps=result.steps,
            planned_steps=result.plan.steps, limited_by=result.plan.limited_by,
            step_seconds_measured=result.plan.step_seconds, train_clips=len(chosen.rows), new_clips=chosen.new,
            replayed_clips=chosen.replayed, learned_batches=list(chosen.learned_batches), dev_clips=len(dev_rows),
            final_loss=result.final_loss, seconds=round(result.seconds, 2), cache_seconds=round(result.cache_seconds, 2),
            cached_encoder_layers=result.cached_encoder_layers, precision=result.precision, windows=result.windows,
            samples_per_second=result.samples_per_second, clips_per_second=result.clips_per_second,
            best_step=result.best_step, best_dev_cer=result.best_dev_cer,
            world_size=int(os.environ.get("WORLD_SIZE", "1")), trainable_params=result.trainable_params,
            total_params=result.total_params, loss_history=list(result.loss_history),
            dev_cer_history=list(result.dev_cer_history), pseudo_labelled_clips=len(pseudo))
        if not main_process:
            return report
        mlflow.log_metrics({"train_final_loss": result.final_loss, "train_seconds": result.seconds,
                            "train_cache_seconds": result.cache_seconds, "train_clips": len(chosen.rows),
                            "train_new_clips": chosen.new, "train_replayed_clips": chosen.replayed,
                            "train_pseudo_labelled_clips": len(pseudo),
                            "train_steps": result.steps, "train_windows": result.windows,
                            "train_clips_per_second": result.clips_per_second,
                            "trainable_params": result.trainable_params})
        tracking.log_figure_png(review.curves_figure(result.loss_history, result.dev_cer_history), "plots/loss_curve.png")
        atomic_write_json(ctx.report("train"), report.to_dict())
    return report


train_task = task(run, name="train", cache_policy=NO_CACHE)
