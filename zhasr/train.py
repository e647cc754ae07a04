"""PEFT (LoRA / DoRA / QLoRA) fine-tuning of Whisper on the Hugging Face Trainer.

The whole recipe is here: load the base model, optionally cache the lower
encoder layers (``zhasr.encoder_cache``), wrap the model with an adapter, run
``Trainer`` with dev-set CER evaluation, early stopping and the best
checkpoint kept, save the adapter. The same code runs on one CPU, one GPU,
and under ``torchrun`` / ``accelerate launch`` (DDP, FSDP, DeepSpeed).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import get_peft_model, prepare_model_for_kbit_training
from transformers import (
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    WhisperForConditionalGeneration,
    WhisperProcessor,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from zhasr import encoder_cache
from zhasr.adapters import check_method_available, lora_config, quantization_config
from zhasr.audio import load_16k
from zhasr.decode import DecodeOptions, transcribe
from zhasr.metrics import character_error_rate
from zhasr.speech_data import SpeechCollator, SpeechDataset


@dataclass(frozen=True)
class TrainOptions:
    method: str = "lora"  # lora | dora | qlora (4-bit base, CUDA only)
    targets: str = "attention"  # preset of zhasr.adapters.TARGET_PRESETS
    rank: int = 16  # LoRA rank r
    alpha: int = 32  # scale = alpha / rank
    dropout: float = 0.05
    learning_rate: float = 1e-3
    lr_scheduler: str = "linear"  # any transformers scheduler name: linear, cosine, constant_with_warmup ...
    max_steps: int = 10  # optimizer steps
    batch_size: int = 4  # clips per device per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% slower
    warmup_steps: int = 2
    weight_decay: float = 0.0
    logging_steps: int = 1
    save_steps: int = 5  # checkpoint interval, in steps
    eval_steps: int = 0  # dev CER every N steps (0 = never; then the last step is kept, not the best)
    early_stopping_patience: int = 0  # stop after N evaluations without a better dev CER (0 = never)
    cached_encoder_layers: int = -1  # lower encoder layers frozen and computed once; -1 = auto (CPU: 2/3, GPU: 0)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (see resolve_precision)
    adapter_weight: float = 1.0  # the saved adapter's update is scaled by this (WiSE-FT); < 1 keeps more of the base
    seed: int = 0
    max_label_tokens: int = 128
    language: str = "zh"
    task: str = "transcribe"
    resume: bool = False  # continue from the newest complete checkpoint in the output folder
    decode: DecodeOptions = field(default_factory=DecodeOptions)  # how dev clips are decoded


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path  # PEFT adapter (adapter_config.json, adapter_model.safetensors)
    steps: int  # optimizer steps done
    final_loss: float  # mean training loss over the run
    loss_history: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) as logged
    dev_cer_history: list[tuple[int, float]] = field(default_factory=list)  # (step, dev CER 0-1)
    best_step: int | None = None  # step whose adapter was kept (None: no dev evaluation, the last step)
    best_dev_cer: float | None = None
    cached_encoder_layers: int = 0  # encoder layers computed once instead of every step
    precision: str = "fp32"  # what the steps computed in: fp32, or bf16 / fp16 autocast
    cache_seconds: float = 0.0  # wall time spent filling the encoder cache
    seconds: float = 0.0  # wall time of trainer.train()
    samples_per_second: float = 0.0
    trainable_params: int = 0
    total_params: int = 0


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


class DevCerTrainer(Trainer):
    """A Trainer whose evaluation decodes the dev clips and scores CER (``eval_cer``, lower is better).

    Every process decodes the whole dev set, so all ranks see the same metric and
    take the same early-stopping decision.
    """

    def __init__(self, *args, processor: WhisperProcessor, dev_clips: list, dev_texts: list[str],
                 decode_options: DecodeOptions, encoder: torch.nn.Module | None, samples_per_step: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.processor, self.dev_clips, self.dev_texts = processor, dev_clips, dev_texts
        self.decode_options, self.full_encoder, self.samples_per_step = decode_options, encoder, samples_per_step
        self._last_log: tuple[float, int] | None = None

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        model = self.accelerator.unwrap_model(self.model)
        whisper = model.get_base_model()
        started = time.perf_counter()
        model.eval()
        swap = encoder_cache.full_encoder(whisper, self.full_encoder) if self.full_encoder is not None else contextlib.nullcontext()
        with swap, self.accelerator.autocast():  # decoded in the precision the steps compute in
            transcripts = transcribe(model, self.processor, self.dev_clips, self.decode_options)
        model.train()
        result = character_error_rate(self.dev_texts, [t.text for t in transcripts])
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


def train_adapter(
    base_model_dir: Path,
    train_rows: list[dict[str, Any]],
    dataset_dir: Path,
    output_dir: Path,
    options: TrainOptions,
    dev_rows: list[dict[str, Any]] | None = None,
    callbacks: list[TrainerCallback] | None = None,
    progress=None,
) -> TrainResult:
    """Train an adapter on ``train_rows`` and save it to ``output_dir / "adapter"``.

    Checkpoints go to ``output_dir / "checkpoints"`` every ``save_steps``; the
    lower-encoder cache to ``output_dir / "encoder_cache"``. With ``dev_rows`` and
    ``eval_steps`` the adapter saved is the one with the lowest dev CER.
    ``progress(done, total)`` reports the encoder cache being filled.
    """
    check_method_available(options.method)  # before any work: QLoRA on a CPU fails here
    if not 0 < options.adapter_weight <= 1:
        raise ValueError(f"train.adapter_weight={options.adapter_weight}: expected 0 < w <= 1")
    if not train_rows:
        raise ValueError("no training rows: the train split is empty")
    output_dir = Path(output_dir)
    dev_rows = dev_rows or []
    evaluate = bool(dev_rows) and options.eval_steps > 0
    if evaluate and options.save_steps % options.eval_steps:
        raise ValueError(f"train.save_steps={options.save_steps} must be a multiple of train.eval_steps="
                         f"{options.eval_steps}: the best checkpoint is chosen among evaluated ones")
    torch.manual_seed(options.seed)
    on_gpu = torch.cuda.is_available()
    precision = resolve_precision(options.precision, on_gpu)

    processor = WhisperProcessor.from_pretrained(base_model_dir)
    quantized = options.method == "qlora"
    model = WhisperForConditionalGeneration.from_pretrained(
        base_model_dir, **({"quantization_config": quantization_config(), "device_map": {"": 0}} if quantized else {}))
    model.config.use_cache = False
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=options.gradient_checkpointing)
    n_encoder = model.config.encoder_layers
    cached = options.cached_encoder_layers
    if cached < 0:
        cached = encoder_cache.auto_cached_layers(n_encoder, on_gpu)
    if not 0 <= cached <= n_encoder:
        raise ValueError(f"train.cached_encoder_layers={cached}: the model has {n_encoder} encoder layers")

    cache_seconds = 0.0
    full_encoder = None
    if cached:
        from accelerate import PartialState

        cache_dir = output_dir / "encoder_cache" / encoder_cache.cache_key(base_model_dir, cached, precision)
        started = time.perf_counter()
        device = "cuda" if on_gpu else "cpu"
        encoder = model.model.encoder.to(device)
        autocast = torch.autocast(device, dtype=torch.bfloat16 if precision == "bf16" else torch.float16,
                                  enabled=precision != "fp32")
        with PartialState().main_process_first(), autocast:  # rank 0 fills the cache, the others read it
            encoder_cache.fill_cache(encoder, processor, train_rows, dataset_dir, cache_dir, cached, progress=progress)
        cache_seconds = time.perf_counter() - started
        dataset = encoder_cache.CachedSpeechDataset(train_rows, cache_dir, processor, options.language,
                                                    options.task, options.max_label_tokens)
    else:
        dataset = SpeechDataset(train_rows, dataset_dir, processor, options.language, options.task,
                                options.max_label_tokens)

    model = get_peft_model(model, lora_config(options.method, options.targets, options.rank, options.alpha,
                                              options.dropout, n_encoder, first_encoder_layer=cached))
    if cached:
        full_encoder = model.get_base_model().model.encoder
        model.get_base_model().model.encoder = encoder_cache.UpperEncoder(full_encoder, cached)
    trainable, total = model.get_nb_trainable_parameters()

    args = TrainingArguments(
        output_dir=str(output_dir / "checkpoints"),
        max_steps=options.max_steps,
        per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.grad_accum,
        activation_checkpointing=options.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        learning_rate=options.learning_rate,
        lr_scheduler_type=options.lr_scheduler,
        warmup_steps=options.warmup_steps,
        weight_decay=options.weight_decay,
        logging_steps=options.logging_steps,
        save_steps=options.save_steps,
        save_total_limit=2,  # plus the best one, which the Trainer never deletes
        eval_strategy="steps" if evaluate else "no",
        eval_steps=options.eval_steps if evaluate else None,
        eval_on_start=evaluate,  # the zero-shot dev CER starts the curve
        load_best_model_at_end=evaluate,
        metric_for_best_model="cer" if evaluate else None,
        greater_is_better=False,
        seed=options.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not on_gpu,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        label_names=["labels"],
        ddp_find_unused_parameters=False,
        report_to=[],
        disable_tqdm=False,
    )
    history = _History()
    stopping = [EarlyStoppingCallback(options.early_stopping_patience)] if evaluate and options.early_stopping_patience else []
    trainer = DevCerTrainer(
        model=model, args=args, train_dataset=dataset, eval_dataset=dev_rows if evaluate else None,
        data_collator=SpeechCollator(), callbacks=[history, *stopping, *(callbacks or [])],
        processor=processor, dev_clips=[load_16k(Path(dataset_dir) / r["audio"]) for r in dev_rows] if evaluate else [],
        dev_texts=[r["text_norm"] for r in dev_rows], decode_options=options.decode, encoder=full_encoder,
        samples_per_step=options.batch_size * options.grad_accum * args.world_size,
    )
    if options.resume:
        checkpoints = complete_checkpoints(output_dir / "checkpoints")
    else:  # a new run: the previous run's checkpoints must not be mixed into this one's rotation
        checkpoints = []
        if trainer.is_world_process_zero():
            shutil.rmtree(output_dir / "checkpoints", ignore_errors=True)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
    seconds = time.perf_counter() - started

    adapter_dir = output_dir / "adapter"
    # Weight-space interpolation between the start model (0) and the fine-tuned one (1): W0 + w * (alpha / r) * BA.
    # On a narrow domain it keeps most of the in-domain gain and loses less general ability (Wortsman et al. 2022).
    config = model.peft_config["default"]
    config.lora_alpha = config.lora_alpha * options.adapter_weight
    if trainer.is_world_process_zero():
        model.save_pretrained(adapter_dir)
        processor.save_pretrained(adapter_dir)
    state = trainer.state
    # The zero-shot evaluation at step 0 is not a candidate: best is among the saved checkpoints.
    best_step = state.best_global_step if evaluate and state.best_model_checkpoint else None
    return TrainResult(
        adapter_dir=adapter_dir, steps=state.global_step, final_loss=float(result.training_loss),
        loss_history=history.loss, dev_cer_history=history.dev_cer, best_step=best_step,
        best_dev_cer=state.best_metric if best_step else None, cached_encoder_layers=cached, precision=precision,
        cache_seconds=cache_seconds, seconds=seconds,
        samples_per_second=float(result.metrics.get("train_samples_per_second", 0.0)),
        trainable_params=trainable, total_params=total,
    )
