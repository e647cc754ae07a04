"""PEFT (LoRA / DoRA / QLoRA) fine-tuning of Whisper on the Hugging Face Trainer.

The whole recipe is here, in its phases: load the start model and, on the cached path, run the lower
encoder layers once per clip (``zhasr.model.encoder_cache``); wrap the model with an adapter; plan the steps
from the data and the time budget (``zhasr.model.recipe``); run the ``Trainer`` with dev-set CER evaluation,
early stopping and the best checkpoint kept; save the adapter as trained (the merge stage chooses its
weight). The same code runs on one CPU, one GPU, and under ``torchrun`` / ``accelerate launch`` (DDP,
FSDP, DeepSpeed).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import (
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    WhisperForConditionalGeneration,
    WhisperProcessor,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from zhasr.config import ModelParams, TrainParams
from zhasr.data.manifest import ManifestRow, atomic_write_json
from zhasr.evaluation.metrics import character_error_rate
from zhasr.model import encoder_cache
from zhasr.model.adapters import check_method_available, lora_config, quantization_config
from zhasr.model.decode import DecodeOptions, transcribe
from zhasr.model.recipe import RoundOrigin, SavedPlan, StepPlan, plan_steps
from zhasr.model.spec_augment import TimeMask
from zhasr.model.speech_data import SpeechCollator, SpeechDataset, text_tokens
from zhasr.model.training_windows import TrainingWindow, pack_rows, single_windows

PLAN_FILE = "plan.json"  # in the output folder: the round's steps and clips, kept for a resumed run


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path  # PEFT adapter (adapter_config.json, adapter_model.safetensors)
    steps: int  # optimizer steps done
    final_loss: float  # mean training loss over the run
    loss_history: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) as logged
    dev_cer_history: list[tuple[int, float]] = field(default_factory=list)  # (step, dev CER 0-1)
    best_step: int | None = None  # step whose adapter was kept (None: no dev evaluation, the last step)
    best_dev_cer: float | None = None
    plan: StepPlan | None = None  # the steps planned, and what limited them
    windows: int = 0  # encoder windows the clips were trained in (packed: several clips a window)
    cached_encoder_layers: int = 0  # encoder layers computed once instead of every step
    precision: str = "fp32"  # what the steps computed in: fp32, or bf16 / fp16 autocast
    cache_seconds: float = 0.0  # wall time spent filling the encoder cache
    seconds: float = 0.0  # wall time of trainer.train()
    samples_per_second: float = 0.0  # windows a second (clips a second when unpacked)
    clips_per_second: float = 0.0
    trainable_params: int = 0
    total_params: int = 0


@dataclass(frozen=True)
class TrainReport:
    """What the train stage hands on (reports/train.json): the adapter, where it started, the data and the
    run's figures."""

    adapter_dir: str
    base_model_dir: str  # the start model's folder: the base model, or the champion when continuing from it
    start: str  # its name (``model.base``, or ``<model> vN`` for a champion)
    steps: int
    planned_steps: int
    limited_by: str  # what set the number of steps (epochs, max_steps, time budget)
    step_seconds_measured: float | None
    train_clips: int
    new_clips: int  # clips of batches not learned before
    replayed_clips: int  # clips of learned batches mixed back in against forgetting
    learned_batches: list[str]  # every batch this adapter (and the champion it continues) learned
    dev_clips: int
    final_loss: float
    seconds: float
    cache_seconds: float
    cached_encoder_layers: int
    precision: str
    windows: int
    samples_per_second: float
    clips_per_second: float
    best_step: int | None
    best_dev_cer: float | None
    world_size: int
    trainable_params: int
    total_params: int
    loss_history: list[tuple[int, float]]  # (step, loss)
    dev_cer_history: list[tuple[int, float]]  # (step, dev CER 0-1)
    # clips of train.pseudo_label_splits with the start model's transcripts, counted once per channel
    pseudo_labelled_clips: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainReport:
        return cls(**{**data, "loss_history": [tuple(x) for x in data["loss_history"]],
                      "dev_cer_history": [tuple(x) for x in data["dev_cer_history"]]})


def resolve_precision(precision: str, on_gpu: bool) -> str:
    """``auto``: bf16 where the device computes it natively (a CUDA GPU that supports it, a CPU with
    AVX512-BF16 or AMX), fp16 on other GPUs, else fp32. The master weights and the optimizer stay fp32."""
    if precision == "fp16" and not on_gpu:
        raise ValueError("train.precision=fp16 needs a CUDA GPU; use bf16 or fp32 on a CPU")
    if precision != "auto":
        return precision
    if on_gpu:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    capabilities = torch.cpu.get_capabilities()
    return "bf16" if capabilities.get("avx512_bf16") or capabilities.get("amx_bf16") else "fp32"


def complete_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Checkpoints with ``trainer_state.json``, oldest first; the Trainer writes that file last.

    A checkpoint without it was cut short (say by ``kill -9`` while saving). It is
    renamed ``incomplete-checkpoint-N`` so the Trainer does not pick it, and kept.
    """
    found = sorted(Path(checkpoint_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    complete = []
    for path in found:
        if (path / "trainer_state.json").is_file():
            complete.append(path)
        else:
            shutil.rmtree(path.with_name(f"incomplete-{path.name}"), ignore_errors=True)
            path.rename(path.with_name(f"incomplete-{path.name}"))
    return complete


def divergence_from_start(model: torch.nn.Module, peft_model: PeftModel, inputs: dict[str, torch.Tensor],
                          logits: torch.Tensor) -> torch.Tensor:
    """KL(start model || adapted model), the mean over the label positions of ``inputs``; ``logits``
    (batch, labels, vocabulary) are the adapted model's. The start model is ``model`` run on the same batch
    with ``peft_model``'s adapters off (``model`` may be the same module, or a wrapper of it)."""
    with torch.no_grad(), peft_model.disable_adapter():
        teacher = model(**inputs).logits
    positions = inputs["labels"] != -100  # (batch, labels)
    return torch.nn.functional.kl_div(torch.log_softmax(logits[positions].float(), -1),
                                      torch.log_softmax(teacher[positions].float(), -1),
                                      log_target=True, reduction="batchmean")


class DevCerTrainer(Trainer):
    """A Trainer whose evaluation decodes the dev clips and scores CER (``eval_cer``, lower is better) as the gate
    does: from the written texts, numbers in one written form on both sides.

    Every process decodes the whole dev set, so all ranks see the same metric and
    take the same early-stopping decision.
    """

    def __init__(self, *args, processor: WhisperProcessor, dev_clips: list, dev_texts: list[str],
                 decode_options: DecodeOptions, dev_inputs: encoder_cache.CachedStates | None, samples_per_step: int,
                 kl_to_start: float = 0.0, time_mask: TimeMask = TimeMask(), **kwargs):
        super().__init__(*args, **kwargs)
        self.processor, self.dev_clips, self.dev_texts = processor, dev_clips, dev_texts
        self.decode_options, self.dev_inputs, self.samples_per_step = decode_options, dev_inputs, samples_per_step
        self.kl_to_start = kl_to_start
        self.time_mask = time_mask
        self._last_log: tuple[float, int] | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The labels' cross-entropy, plus ``kl_to_start`` x KL(start model || adapted model) over the label
        positions: the start model (adapters off) on the same batch is the teacher that keeps what it knew.
        With ``time_mask`` the batch's frames are masked first (``spec_augment``), for student and teacher alike."""
        if self.time_mask.share > 0 and model.training:
            inputs = {**inputs, "input_features": self.time_mask(inputs["input_features"])}
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if self.kl_to_start > 0:
            loss = loss + self.kl_to_start * divergence_from_start(model, self.accelerator.unwrap_model(model),
                                                                   inputs, outputs.logits)
        return (loss, outputs) if return_outputs else loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        model = self.accelerator.unwrap_model(self.model)
        started = time.perf_counter()
        model.eval()
        with self.accelerator.autocast():  # decoded in the precision the steps compute in
            transcripts = transcribe(model, self.processor, self.dev_clips, self.decode_options,
                                     encoder_inputs=self.dev_inputs)
        model.train()
        result = character_error_rate(self.dev_texts, [t.text for t in transcripts], numbers=True)
        metrics = {f"{metric_key_prefix}_cer": result.cer,
                   f"{metric_key_prefix}_loops": float(sum(t.looped for t in transcripts)),
                   f"{metric_key_prefix}_seconds": time.perf_counter() - started}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # training samples per second since the previous log entry
            now = time.perf_counter()
            if self._last_log is not None and self.state.global_step > self._last_log[1]:
                steps = self.state.global_step - self._last_log[1]
                logs["samples_per_second"] = steps * self.samples_per_step / (now - self._last_log[0])
            self._last_log = (now, self.state.global_step)
        super().log(logs, start_time)


class _History(TrainerCallback):
    def __init__(self) -> None:
        self.loss: list[tuple[int, float]] = []
        self.dev_cer: list[tuple[int, float]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.loss.append((state.global_step, float(logs["loss"])))
        if logs and "eval_cer" in logs:
            self.dev_cer.append((state.global_step, float(logs["eval_cer"])))


@dataclass
class Prepared:
    """The model ready for the Trainer, with what it was built from."""

    model: torch.nn.Module  # PeftModel; on the cached path its encoder is an UpperEncoder
    processor: WhisperProcessor
    dataset: torch.utils.data.Dataset  # items {"input_features", "labels"}, one a training window
    windows: list[TrainingWindow]
    dev_windows: list[TrainingWindow]  # the dev clips, packed as the training clips are: dev CER is read per window
    # cached path: the dev windows' lower-encoder states, decoded through the model's upper encoder
    dev_inputs: encoder_cache.CachedStates | None
    cached_layers: int
    precision: str  # fp32 | bf16 | fp16
    cache_seconds: float


def _autocast(precision: str, device: str):
    return torch.autocast(device, dtype=torch.bfloat16 if precision == "bf16" else torch.float16,
                          enabled=precision != "fp32")


def prepare(base_model_dir: Path, rows: list[ManifestRow], dataset_dir: Path, output_dir: Path,
            params: TrainParams, language: str, task: str, progress=None,
            dev_rows: list[ManifestRow] = ()) -> Prepared:
    """Load the start model, pack the training windows, fill the lower-encoder cache for them and the
    ``dev_rows`` (``progress(done, total)``) when some layers are cached, and wrap the model with the
    adapter of ``params``."""
    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    precision = resolve_precision(params.precision, on_gpu)
    processor = WhisperProcessor.from_pretrained(base_model_dir)
    quantized = params.method == "qlora"
    model = WhisperForConditionalGeneration.from_pretrained(
        base_model_dir, **({"quantization_config": quantization_config(), "device_map": {"": 0}} if quantized else {}))
    model.config.use_cache = False
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=params.gradient_checkpointing)
    n_encoder = model.config.encoder_layers
    cached = encoder_cache.cached_layer_count(params.cached_encoder_layers, n_encoder, on_gpu)

    def windows_of(clips: list[ManifestRow]) -> list[TrainingWindow]:
        return (pack_rows(clips, params.pack_window_s, params.pack_gap_s, text_tokens(processor), params.seed)
                if params.pack_window_s > 0 else single_windows(clips))

    windows, dev_windows = windows_of(rows), windows_of(list(dev_rows))
    started = time.perf_counter()
    if cached:
        from accelerate import PartialState

        cache_dir = output_dir / "encoder_cache" / encoder_cache.cache_key(base_model_dir, cached, precision)
        encoder = model.model.encoder.to(device)
        with PartialState().main_process_first(), _autocast(precision, device):  # rank 0 fills, the others read
            encoder_cache.fill_cache(encoder, processor, windows + dev_windows, dataset_dir, cache_dir,
                                     cached, progress=progress)
        dataset = encoder_cache.CachedSpeechDataset(windows, cache_dir, processor, language, task,
                                                    params.max_label_tokens, params.pack_timestamps)
    else:
        dataset = SpeechDataset(windows, dataset_dir, processor, language, task, params.max_label_tokens,
                                params.pack_timestamps)
    cache_seconds = time.perf_counter() - started
    model = get_peft_model(model, lora_config(params.method, params.targets, params.rank, params.alpha,
                                              params.dropout, n_encoder, first_encoder_layer=cached))
    dev_inputs = None
    if cached:
        whisper = model.get_base_model()
        whisper.model.encoder = encoder_cache.UpperEncoder(whisper.model.encoder, cached)
        dev_inputs = encoder_cache.CachedStates(cache_dir, dev_windows)
    return Prepared(model, processor, dataset, windows, dev_windows, dev_inputs, cached, precision, cache_seconds)


def measure_step_seconds(prepared: Prepared, params: TrainParams, repeats: int = 1) -> float:
    """Wall time of one optimizer step: forward (and the start model's, under ``kl_to_start``) and backward
    of a full batch, ``repeats`` times after a warm-up (which pays for allocations), the median times
    ``grad_accum``. Gradients and the random state are left as they were."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = prepared.model.to(device)
    items = [prepared.dataset[i % len(prepared.dataset)] for i in range(params.batch_size)]
    batch = {k: v.to(device) for k, v in SpeechCollator()(items).items()}
    state = torch.random.get_rng_state()
    model.train()
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        with _autocast(prepared.precision, device):
            outputs = model(**batch)
            loss = outputs.loss
            if params.kl_to_start > 0:  # the start model's forward pass is part of each step
                loss = loss + params.kl_to_start * divergence_from_start(model, model, batch, outputs.logits)
        loss.backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    torch.random.set_rng_state(state)
    return statistics.median(times[1:]) * params.grad_accum


def loader_workers(setting: int, on_gpu: bool) -> int:
    """``train.loader_workers`` resolved: -1 (auto) is none on a CPU (the steps use every core; cached states
    are read, not computed) and up to 8 on a GPU, one core kept for the main process."""
    if setting >= 0:
        return setting
    return min(8, max(0, (os.cpu_count() or 1) - 1)) if on_gpu else 0


def training_arguments(output_dir: Path, params: TrainParams, plan: StepPlan, precision: str,
                       evaluate: bool, windows: int) -> TrainingArguments:
    """The Trainer's arguments. ``windows``: training windows; a round with fewer than two batches a process
    trains in smaller batches (under DDP, the Trainer gave a process with one batch an epoch no sample at all:
    0 steps, measured with 2 processes on gloo)."""
    on_gpu = torch.cuda.is_available()
    from accelerate import PartialState

    batch_size = min(params.batch_size, max(1, windows // (2 * PartialState().num_processes)))
    return TrainingArguments(
        output_dir=str(output_dir / "checkpoints"),
        max_steps=plan.steps,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=params.grad_accum,
        activation_checkpointing=params.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        learning_rate=params.learning_rate,
        lr_scheduler_type=params.lr_scheduler,
        warmup_steps=plan.warmup_steps,
        weight_decay=params.weight_decay,
        logging_steps=params.logging_steps,
        save_steps=plan.eval_every,
        save_total_limit=2,  # plus the best one, which the Trainer never deletes
        eval_strategy="steps" if evaluate else "no",
        eval_steps=plan.eval_every if evaluate else None,
        eval_on_start=evaluate,  # the zero-shot dev CER starts the curve
        load_best_model_at_end=evaluate,
        metric_for_best_model="cer" if evaluate else None,
        greater_is_better=False,
        seed=params.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not on_gpu,
        # on a GPU, loader processes compute the next batch's features while the GPU runs this one
        dataloader_num_workers=loader_workers(params.loader_workers, on_gpu),
        dataloader_pin_memory=on_gpu,
        dataloader_drop_last=True,  # every step a full batch: one shape, steps of equal weight
        optim="adamw_torch_fused" if on_gpu else "adamw_torch",
        remove_unused_columns=False,
        label_names=["labels"],
        ddp_find_unused_parameters=False,
        report_to=[],
        disable_tqdm=False,
    )


def read_plan(output_dir: Path) -> SavedPlan | None:
    """The plan a run wrote to ``output_dir``, or None."""
    path = Path(output_dir) / PLAN_FILE
    return SavedPlan.from_dict(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None


def decide_plan(prepared: Prepared, output_dir: Path, rows: list[ManifestRow], params: TrainParams,
                resume: bool, origin: RoundOrigin | None) -> StepPlan:
    """The plan of a resumed run as it was written; else planned from the clips (and, under a time
    budget, the step time measured on rank 0) and written to ``output_dir / plan.json`` with ``origin``."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    if resume and (saved := read_plan(output_dir)):
        return saved.steps
    state = PartialState()
    measured = [measure_step_seconds(prepared, params) if params.time_budget_s and state.is_main_process else None]
    if state.num_processes > 1:
        broadcast_object_list(measured)
    plan = plan_steps(len(prepared.windows), params, state.num_processes, measured[0])
    if state.is_main_process:
        saved = SavedPlan(plan, [r.id for r in rows], len(prepared.windows), origin)
        atomic_write_json(output_dir / PLAN_FILE, saved.to_dict())
    return plan


def build_trainer(prepared: Prepared, args: TrainingArguments, params: TrainParams, dataset_dir: Path,
                  dev_rows: list[ManifestRow], decode: DecodeOptions,
                  callbacks: list[TrainerCallback]) -> tuple[DevCerTrainer, _History]:
    """The Trainer over the prepared model and clips, scoring dev CER when there are ``dev_rows``, with
    early stopping and the ``callbacks``; the history callback records loss and dev CER per step."""
    history = _History()
    evaluate = bool(dev_rows)
    stopping = [EarlyStoppingCallback(params.early_stopping_patience)] if evaluate and params.early_stopping_patience else []
    trainer = DevCerTrainer(
        model=prepared.model, args=args, train_dataset=prepared.dataset, eval_dataset=dev_rows if evaluate else None,
        data_collator=SpeechCollator(), callbacks=[history, *stopping, *callbacks],
        processor=prepared.processor, dev_clips=[w.audio(dataset_dir) for w in prepared.dev_windows],
        dev_texts=["".join(r.text for r in w.rows) for w in prepared.dev_windows], decode_options=decode,
        dev_inputs=prepared.dev_inputs, samples_per_step=params.batch_size * params.grad_accum * args.world_size,
        kl_to_start=params.kl_to_start,
        time_mask=TimeMask.of(params.time_mask_share, params.time_mask_ms, cached=bool(prepared.cached_layers)),
    )
    return trainer, history


def run_trainer(trainer: DevCerTrainer, output_dir: Path, resume: bool) -> tuple[Any, float]:
    """Train from scratch (an earlier run's checkpoints removed) or from the newest complete checkpoint;
    returns the Trainer's result and the wall seconds."""
    checkpoints = complete_checkpoints(output_dir / "checkpoints") if resume else []
    if not resume and trainer.is_world_process_zero():  # a new run must not mix in the last run's rotation
        shutil.rmtree(output_dir / "checkpoints", ignore_errors=True)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
    return result, time.perf_counter() - started


def save_adapter(trainer: DevCerTrainer, prepared: Prepared, output_dir: Path) -> Path:
    """``output_dir / "adapter"``: the adapter as trained (its weight is the merge stage's choice), with the
    processor; written by the first process only."""
    adapter_dir = output_dir / "adapter"
    if trainer.is_world_process_zero():
        prepared.model.save_pretrained(adapter_dir)
        prepared.processor.save_pretrained(adapter_dir)
    return adapter_dir


def train_adapter(
    base_model_dir: Path,
    rows: list[ManifestRow],
    dataset_dir: Path,
    output_dir: Path,
    params: TrainParams,
    *,
    language: str = ModelParams.language,
    task: str = ModelParams.task,
    decode: DecodeOptions | None = None,
    dev_rows: list[ManifestRow] | None = None,
    resume: bool = False,
    callbacks: list[TrainerCallback] | None = None,
    progress=None,
    origin: RoundOrigin | None = None,
) -> TrainResult:
    """Train an adapter on ``rows`` and save it, as trained, to ``output_dir / "adapter"``.

    Checkpoints go to ``output_dir / "checkpoints"`` at every evaluation; the lower-encoder cache to
    ``output_dir / "encoder_cache"``; the plan (steps, rows, ``origin``) to ``output_dir / plan.json``.
    With ``dev_rows`` the adapter saved is the one with the lowest dev CER (decoded with ``decode``).
    ``resume``: continue the plan and the newest complete checkpoint of a run that was cut short.
    ``progress(done, total)`` reports the encoder cache being filled.
    """
    check_method_available(params.method)  # before any work: QLoRA on a CPU fails here
    if not rows:
        raise ValueError("no training rows: the train split is empty")
    output_dir = Path(output_dir)
    dev_rows = dev_rows or []
    if not resume:  # a plan left by an earlier run is not this run's
        (output_dir / PLAN_FILE).unlink(missing_ok=True)
    torch.manual_seed(params.seed)
    prepared = prepare(base_model_dir, rows, dataset_dir, output_dir, params, language, task, progress, dev_rows)
    trainable, total = prepared.model.get_nb_trainable_parameters()
    plan = decide_plan(prepared, output_dir, rows, params, resume, origin)
    evaluate = bool(dev_rows)
    args = training_arguments(output_dir, params, plan, prepared.precision, evaluate, len(prepared.windows))
    trainer, history = build_trainer(prepared, args, params, Path(dataset_dir), dev_rows,
                                     decode or DecodeOptions(language=language, task=task), callbacks or [])
    result, seconds = run_trainer(trainer, output_dir, resume)
    adapter_dir = save_adapter(trainer, prepared, output_dir)
    state = trainer.state
    samples_per_second = float(result.metrics.get("train_samples_per_second", 0.0))
    # The zero-shot evaluation at step 0 is not a candidate: best is among the saved checkpoints.
    best_step = state.best_global_step if evaluate and state.best_model_checkpoint else None
    return TrainResult(
        adapter_dir=adapter_dir, steps=state.global_step, final_loss=float(result.training_loss),
        loss_history=history.loss, dev_cer_history=history.dev_cer, best_step=best_step,
        best_dev_cer=state.best_metric if best_step else None, plan=plan, cached_encoder_layers=prepared.cached_layers,
        precision=prepared.precision, cache_seconds=prepared.cache_seconds, seconds=seconds,
        samples_per_second=samples_per_second, windows=len(prepared.windows),
        clips_per_second=samples_per_second * len(rows) / len(prepared.windows),
        trainable_params=trainable, total_params=total,
    )
