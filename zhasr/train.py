"""PEFT (LoRA / DoRA) fine-tuning of Whisper on the Hugging Face Trainer.

The whole recipe is here: load the base model, wrap it with an adapter, build
the datasets from manifest rows, run ``Trainer``, save the adapter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import Trainer, TrainerCallback, TrainingArguments, WhisperForConditionalGeneration, WhisperProcessor

from zhasr.speech_data import SpeechCollator, SpeechDataset

METHODS = ("lora", "dora")


@dataclass(frozen=True)
class TrainOptions:
    method: str = "lora"  # lora | dora
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")  # Linear layer names to adapt
    rank: int = 16  # LoRA rank r
    alpha: int = 32  # scale = alpha / rank
    dropout: float = 0.05
    learning_rate: float = 1e-3
    max_steps: int = 10  # optimizer steps
    batch_size: int = 4  # clips per device per micro-batch
    grad_accum: int = 1
    warmup_steps: int = 2
    weight_decay: float = 0.0
    logging_steps: int = 1
    save_steps: int = 5  # checkpoint interval, in steps
    seed: int = 0
    max_label_tokens: int = 128
    language: str = "zh"
    task: str = "transcribe"
    resume: bool = False  # continue from the newest checkpoint in the output folder


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path  # PEFT adapter (adapter_config.json, adapter_model.safetensors)
    steps: int  # optimizer steps done
    final_loss: float  # mean training loss over the run
    loss_history: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) as logged
    seconds: float = 0.0  # wall time of trainer.train()
    trainable_params: int = 0
    total_params: int = 0


def adapter_config(options: TrainOptions) -> LoraConfig:
    if options.method not in METHODS:
        raise ValueError(f"train.method={options.method!r}: expected one of {', '.join(METHODS)}")
    # task_type stays unset: "SEQ_2_SEQ_LM" makes PEFT pass input_ids, which Whisper does not take.
    return LoraConfig(
        r=options.rank, lora_alpha=options.alpha, lora_dropout=options.dropout,
        target_modules=list(options.target_modules), use_dora=options.method == "dora",
    )


class _LossHistory(TrainerCallback):
    def __init__(self) -> None:
        self.history: list[tuple[int, float]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.history.append((state.global_step, float(logs["loss"])))


def train_adapter(
    base_model_dir: Path,
    train_rows: list[dict[str, Any]],
    dataset_dir: Path,
    output_dir: Path,
    options: TrainOptions,
    callbacks: list[TrainerCallback] | None = None,
) -> TrainResult:
    """Train an adapter on ``train_rows`` and save it to ``output_dir / "adapter"``.

    Checkpoints go to ``output_dir / "checkpoints"`` every ``save_steps``.
    """
    if not train_rows:
        raise ValueError("no training rows: the train split is empty")
    output_dir = Path(output_dir)
    torch.manual_seed(options.seed)
    processor = WhisperProcessor.from_pretrained(base_model_dir)
    model = WhisperForConditionalGeneration.from_pretrained(base_model_dir)
    model.config.use_cache = False
    model = get_peft_model(model, adapter_config(options))
    trainable, total = model.get_nb_trainable_parameters()

    dataset = SpeechDataset(train_rows, dataset_dir, processor, options.language, options.task, options.max_label_tokens)
    use_cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(output_dir / "checkpoints"),
        max_steps=options.max_steps,
        per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.grad_accum,
        learning_rate=options.learning_rate,
        warmup_steps=options.warmup_steps,
        weight_decay=options.weight_decay,
        lr_scheduler_type="linear",
        logging_steps=options.logging_steps,
        save_steps=options.save_steps,
        save_total_limit=2,
        seed=options.seed,
        bf16=use_cuda and torch.cuda.is_bf16_supported(),
        use_cpu=not use_cuda,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        label_names=["labels"],
        report_to=[],
        disable_tqdm=False,
    )
    history = _LossHistory()
    trainer = Trainer(
        model=model, args=args, train_dataset=dataset, data_collator=SpeechCollator(),
        callbacks=[history, *(callbacks or [])],
    )
    checkpoints = sorted((output_dir / "checkpoints").glob("checkpoint-*"))
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=bool(options.resume and checkpoints) or None)
    seconds = time.perf_counter() - started

    adapter_dir = output_dir / "adapter"
    model.save_pretrained(adapter_dir)
    processor.save_pretrained(adapter_dir)
    return TrainResult(
        adapter_dir=adapter_dir, steps=trainer.state.global_step, final_loss=float(result.training_loss),
        loss_history=history.history, seconds=seconds, trainable_params=trainable, total_params=total,
    )
