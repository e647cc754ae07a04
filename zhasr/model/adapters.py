"""PEFT adapter settings for Whisper: methods, target presets, the QLoRA availability check.

A preset names which Linear layers get an adapter. Encoder layers below
``first_encoder_layer`` never do: on the cached-encoder path they are frozen
and not even run during training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from peft import LoraConfig

# torch and peft are imported inside the functions: the CLI checks the method before it loads them.
METHODS = ("lora", "dora", "qlora")

_ATTENTION = r"(q_proj|k_proj|v_proj|out_proj)"
_QV = r"(q_proj|v_proj)"
# preset -> (encoder layer suffix, decoder layer suffix); None leaves that side without adapters
TARGET_PRESETS: dict[str, tuple[str | None, str | None]] = {
    "attention-qv": (rf"self_attn\.{_QV}", rf"(self_attn|encoder_attn)\.{_QV}"),
    "encoder-attention": (rf"self_attn\.{_ATTENTION}", None),
    "decoder-attention": (None, rf"(self_attn|encoder_attn)\.{_ATTENTION}"),
    "attention": (rf"self_attn\.{_ATTENTION}", rf"(self_attn|encoder_attn)\.{_ATTENTION}"),
    "all-linear": (rf"(self_attn\.{_ATTENTION}|fc1|fc2)", rf"((self_attn|encoder_attn)\.{_ATTENTION}|fc1|fc2)"),
}


class AdapterUnavailableError(RuntimeError):
    """The requested PEFT method cannot run on this machine."""


def target_regex(preset: str, encoder_layers: int, first_encoder_layer: int = 0) -> str:
    """A regex PEFT matches against full module names such as ``model.encoder.layers.4.self_attn.q_proj``.

    ``first_encoder_layer`` excludes the encoder layers below it.
    """
    if preset not in TARGET_PRESETS:
        raise ValueError(f"train.targets={preset!r}: expected one of {', '.join(TARGET_PRESETS)}")
    encoder, decoder = TARGET_PRESETS[preset]
    parts = []
    trainable = range(first_encoder_layer, encoder_layers)
    if encoder and len(trainable):
        parts.append(rf"model\.encoder\.layers\.({'|'.join(map(str, trainable))})\.{encoder}")
    if decoder:
        parts.append(rf"model\.decoder\.layers\.\d+\.{decoder}")
    if not parts:
        raise ValueError(f"train.targets={preset!r} leaves nothing to train above encoder layer {first_encoder_layer}")
    return "|".join(f"(.*{p})" for p in parts)


def check_method_available(method: str) -> None:
    """Raise before any work is done when ``method`` cannot run here (QLoRA needs CUDA and bitsandbytes)."""
    if method not in METHODS:
        raise ValueError(f"train.method={method!r}: expected one of {', '.join(METHODS)}")
    if method != "qlora":
        return
    import torch

    if not torch.cuda.is_available():
        raise AdapterUnavailableError(
            "train.method=qlora needs a CUDA GPU (4-bit bitsandbytes weights); none is visible. "
            "Use train.method=lora or dora on this machine.")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise AdapterUnavailableError("train.method=qlora needs bitsandbytes: pip install bitsandbytes") from error


def lora_config(method: str, targets: str, rank: int, alpha: int, dropout: float,
                encoder_layers: int, first_encoder_layer: int = 0) -> LoraConfig:
    """LoRA (also under QLoRA's 4-bit base) or DoRA on the preset's layers."""
    from peft import LoraConfig

    check_method_available(method)
    # task_type stays unset: "SEQ_2_SEQ_LM" makes PEFT pass input_ids, which Whisper does not take.
    return LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, use_dora=method == "dora",
        target_modules=target_regex(targets, encoder_layers, first_encoder_layer),
    )


def quantization_config():
    """QLoRA's base weights: 4-bit NF4 with double quantization, bf16 compute (CUDA only)."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)
