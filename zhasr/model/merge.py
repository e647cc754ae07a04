"""Fold a LoRA/DoRA adapter into the base weights: a plain Hugging Face Whisper directory."""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import PeftModel
from transformers import GenerationConfig, WhisperForConditionalGeneration, WhisperProcessor

from zhasr.evaluation.bootstrap import over_limit, paired_bootstrap_gain
from zhasr.model.decode import log_mel

DTYPES = {"float32": torch.float32, "float16": torch.float16}


@dataclass(frozen=True)
class GeneralSpeechLoss:
    """How much worse a merged model reads a general-speech set than its reference (the better of base
    and champion): CER points as fractions, positive = worse, with the paired interval."""

    loss: float
    low: float
    high: float

    @classmethod
    def of(cls, candidate_errors: list[int], reference_errors: list[int], reference_chars: list[int],
           speakers: list[str], samples: int = 1000, confidence: float = 0.95) -> GeneralSpeechLoss:
        """One entry per clip in each list; a speaker's clips are resampled together."""
        return cls(*paired_bootstrap_gain(candidate_errors, reference_errors, reference_chars, samples, confidence,
                                          speakers=speakers).as_loss())

    def over(self, limit: float, beyond_noise: bool) -> bool:
        """See ``zhasr.evaluation.bootstrap.over_limit``: merging lower for noise costs the domain."""
        return over_limit(self.loss, self.low, limit, beyond_noise)


@dataclass(frozen=True)
class GuardedSet:
    """One general-speech set at one adapter weight: CERs as fractions."""

    cer: float  # the merged model's
    reference: float  # the better of base and champion's
    loss: GeneralSpeechLoss


@dataclass(frozen=True)
class WeightTried:
    """One adapter weight the merge guard merged at, and what each guarded set read."""

    adapter_weight: float
    sets: dict[str, GuardedSet]

    def row(self) -> dict[str, float]:
        """One flat row: ``adapter_weight``, then ``cer_``/``reference_``/``loss_``/``loss_low_``/``loss_high_<set>``
        (reports/merge.json and the run's table keep this form)."""
        row = {"adapter_weight": self.adapter_weight}
        for name, s in self.sets.items():
            row |= {f"cer_{name}": s.cer, f"reference_{name}": s.reference, f"loss_{name}": s.loss.loss,
                    f"loss_low_{name}": s.loss.low, f"loss_high_{name}": s.loss.high}
        return row

    @classmethod
    def from_row(cls, row: dict[str, float]) -> WeightTried:
        """A row of ``row()``; one written before the loss had an interval gets the loss as both bounds."""
        names = [key.removeprefix("cer_") for key in row if key.startswith("cer_")]
        loss = {name: row[f"loss_{name}"] for name in names}
        return cls(row["adapter_weight"], {
            name: GuardedSet(row[f"cer_{name}"], row[f"reference_{name}"],
                             GeneralSpeechLoss(loss[name], row.get(f"loss_low_{name}", loss[name]),
                                               row.get(f"loss_high_{name}", loss[name])))
            for name in names})


@dataclass(frozen=True)
class MergeReport:
    """The merge stage's report (reports/merge.json)."""

    merged_dir: str  # the plain Hugging Face model evaluation and export read
    size_mb: float
    dtype: str  # one of DTYPES
    adapter_weight: float  # 0: the start model, 1: as trained
    weights_tried: list[WeightTried]  # in the order tried; empty without guarded sets
    max_logit_diff: float  # largest logit difference from base + adapter on the check clip
    tolerance: float  # merge.tolerance it had to stay within

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "weights_tried": [t.row() for t in self.weights_tried]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MergeReport:
        return cls(**{**data, "weights_tried": [WeightTried.from_row(r) for r in data["weights_tried"]]})


def with_adapter(base_model_dir: Path, adapter_dir: Path, weight: float = 1.0) -> PeftModel:
    """The base model with the adapter applied at ``weight`` times its trained scale: W0 + w (alpha / r) BA,
    a weight-space interpolation between the start model (0) and the fine-tuned one (1), as in WiSE-FT
    (Wortsman et al. 2022). For DoRA only the low-rank direction is scaled."""
    from peft.tuners.lora import LoraLayer

    model = PeftModel.from_pretrained(WhisperForConditionalGeneration.from_pretrained(base_model_dir), adapter_dir)
    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.set_scale("default", weight)
    return model


def next_adapter_weight(weight: float, loss: float, start_loss: float, limit: float, floor: float,
                        grid: float = 0.05) -> float:
    """The weight to try after ``weight`` lost ``loss`` (> ``limit``) on general speech, where the start
    model (weight 0) loses ``start_loss``. The loss grows about linearly with the weight (measured:
    README), so the weight that would meet ``limit`` with 10% to spare, rounded down to ``grid``; at
    least one grid step lower, and not below ``floor``."""
    slope = (loss - start_loss) / weight
    target = (0.9 * limit - start_loss) / slope if slope > 0 else weight - grid
    return round(max(floor, min(math.floor(target / grid + 1e-9) * grid, weight - grid)), 4)


def merge_adapter(base_model_dir: Path, adapter_dir: Path, out_dir: Path, dtype: str = "float32",
                  weight: float = 1.0) -> Path:
    """Write base + ``weight`` x adapter, merged, to ``out_dir`` (weights, processor, generation config).

    Written to a temporary folder and renamed, so ``out_dir`` is complete or absent.
    """
    if dtype not in DTYPES:
        raise ValueError(f"merge dtype={dtype!r}: expected one of {', '.join(DTYPES)}")
    out_dir = Path(out_dir)
    merged = with_adapter(base_model_dir, adapter_dir, weight).merge_and_unload()
    merged.config.use_cache = True
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.to(DTYPES[dtype]).save_pretrained(tmp)
    WhisperProcessor.from_pretrained(base_model_dir).save_pretrained(tmp)
    GenerationConfig.from_pretrained(base_model_dir).save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)
    return out_dir


@torch.inference_mode()
def merge_difference(base_model_dir: Path, adapter_dir: Path, merged_dir: Path, clip: np.ndarray,
                     weight: float, language: str) -> float:
    """Largest absolute difference between the logits of base + ``weight`` x adapter and of the merged
    model, on ``clip`` (16 kHz, (n_samples,)) with the transcription prompt in ``language`` and 16 decoded
    tokens (float32 compute)."""
    from zhasr.model.loading import load_model

    adapter_model = with_adapter(base_model_dir, adapter_dir, weight).eval()
    processor = WhisperProcessor.from_pretrained(base_model_dir)
    merged_model, _ = load_model(merged_dir)
    merged_model = merged_model.float()
    features = log_mel(processor, [clip])
    generated = adapter_model.generate(input_features=features, language=language, task="transcribe",
                                       max_new_tokens=16, do_sample=False, return_dict_in_generate=True,
                                       force_unique_generate_call=True).sequences
    a = adapter_model(input_features=features, decoder_input_ids=generated).logits
    m = merged_model(input_features=features, decoder_input_ids=generated).logits
    return float((a - m).abs().max())
