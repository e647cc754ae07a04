"""Every CTranslate2 Whisper tensor mapped back to its Hugging Face name (the reverse of
``ctranslate2.converters.TransformersConverter``), and the model's dimensions read from the tensors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import torch

from zhasr.model.ct2_import.reader import WHISPER_SPEC, Ct2FormatError, Ct2Model

CT2_GELU = 3  # ctranslate2.specs.common_spec.Activation.GELU


@dataclass(frozen=True)
class WhisperDims:
    """Architecture of a Whisper model (the fields of WhisperConfig that shape tensors)."""

    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_attention_heads: int
    decoder_attention_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    num_mel_bins: int = 80
    vocab_size: int = 51865
    max_source_positions: int = 1500  # encoder frames after the stride-2 conv: 30 s of audio
    max_target_positions: int = 448  # decoder tokens
    scale_embedding: bool = False
    tie_word_embeddings: bool = True


def _count_layers(model: Ct2Model, prefix: str) -> int:
    pattern = re.compile(rf"^{prefix}/layer_(\d+)/")
    indices = {int(m.group(1)) for name in model.variables if (m := pattern.match(name))}
    if indices != set(range(len(indices))):
        raise Ct2FormatError(f"{model.source}: {prefix} layers are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def _scalar(model: Ct2Model, name: str, default: int | None = None) -> int:
    tensor = model.get(name)
    if tensor is None:
        if default is None:
            raise Ct2FormatError(f"{model.source}: scalar {name!r} not found")
        return default
    return int(tensor.reshape(-1)[0])


def whisper_dims_from_ct2(model: Ct2Model) -> WhisperDims:
    """Dimensions read from tensor shapes and the stored head counts."""
    if model.spec != WHISPER_SPEC:
        raise Ct2FormatError(f"{model.source}: spec {model.spec!r} is not {WHISPER_SPEC!r}")
    d_model, num_mel_bins, _ = model.require("encoder/conv1/weight").shape
    projection = model.get("decoder/projection/weight")
    embeddings = model.require("decoder/embeddings/weight")
    tied = projection is None or projection is embeddings or torch.equal(projection, embeddings)
    activation = _scalar(model, "decoder/activation", CT2_GELU)
    if activation != CT2_GELU:
        raise Ct2FormatError(f"{model.source}: decoder activation id {activation}, Whisper uses GELU ({CT2_GELU})")
    if model.get("decoder/projection/bias") is not None:
        raise Ct2FormatError(f"{model.source}: output projection has a bias, which Whisper does not")
    return WhisperDims(
        d_model=int(d_model),
        encoder_layers=_count_layers(model, "encoder"),
        decoder_layers=_count_layers(model, "decoder"),
        encoder_attention_heads=_scalar(model, "encoder/num_heads"),
        decoder_attention_heads=_scalar(model, "decoder/num_heads"),
        encoder_ffn_dim=int(model.require("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        decoder_ffn_dim=int(model.require("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        num_mel_bins=int(num_mel_bins),
        vocab_size=int(embeddings.shape[0]),
        max_source_positions=int(model.require("encoder/position_encodings/encodings").shape[0]),
        max_target_positions=int(model.require("decoder/position_encodings/encodings").shape[0]),
        scale_embedding=bool(_scalar(model, "decoder/scale_embeddings", 0)),
        tie_word_embeddings=tied,
    )


class _Mapper:
    """Builds the Hugging Face state dict and records which CTranslate2 variables were used."""

    def __init__(self, model: Ct2Model):
        self.model, self.used, self.state = model, set(), {}

    def take(self, name: str) -> torch.Tensor:
        self.used.add(self.model.resolve(name))
        return self.model.require(name)

    def linear(self, ct2: str, hf: str) -> None:
        self.state[f"{hf}.weight"] = self.take(f"{ct2}/weight")
        self.state[f"{hf}.bias"] = self.take(f"{ct2}/bias")

    def layer_norm(self, ct2: str, hf: str) -> None:
        self.state[f"{hf}.weight"] = self.take(f"{ct2}/gamma")
        self.state[f"{hf}.bias"] = self.take(f"{ct2}/beta")

    def fused(self, ct2: str, hf: str, names: Sequence[str]) -> None:
        """Split a fused projection (rows stacked in ``names`` order) into q/k/v_proj.

        The k bias is dropped: Hugging Face's k_proj has none, and CTranslate2's
        converter stores zeros there. (A constant key bias adds the same logit to
        every key of a query, so softmax ignores it anyway.)
        """
        weight, bias = self.take(f"{ct2}/weight"), self.take(f"{ct2}/bias")
        rows = weight.shape[0] // len(names)
        if rows * len(names) != weight.shape[0] or bias.shape[0] != weight.shape[0]:
            raise Ct2FormatError(f"{self.model.source}: {ct2} shape {list(weight.shape)} cannot split in {len(names)}")
        for i, proj in enumerate(names):
            self.state[f"{hf}.{proj}.weight"] = weight[i * rows : (i + 1) * rows]
            if proj != "k_proj":
                self.state[f"{hf}.{proj}.bias"] = bias[i * rows : (i + 1) * rows]

    def block(self, ct2: str, hf: str, cross_attention: bool) -> None:
        self.fused(f"{ct2}/self_attention/linear_0", f"{hf}.self_attn", ("q_proj", "k_proj", "v_proj"))
        self.linear(f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
        self.layer_norm(f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
        if cross_attention:
            self.linear(f"{ct2}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
            self.fused(f"{ct2}/attention/linear_1", f"{hf}.encoder_attn", ("k_proj", "v_proj"))
            self.linear(f"{ct2}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
            self.layer_norm(f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
        self.linear(f"{ct2}/ffn/linear_0", f"{hf}.fc1")
        self.linear(f"{ct2}/ffn/linear_1", f"{hf}.fc2")
        self.layer_norm(f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm")


def hf_state_dict_from_ct2(model: Ct2Model, dims: WhisperDims | None = None) -> dict[str, torch.Tensor]:
    """Hugging Face ``WhisperForConditionalGeneration`` state dict (stored dtype, views) of a CTranslate2 Whisper.

    Raises Ct2FormatError for a quantized model or any tensor it would leave unused.
    """
    dims = dims or whisper_dims_from_ct2(model)
    quantized = sorted(n for n in model.variables if n.endswith("_scale") or n.endswith("_zero"))
    if quantized:
        raise Ct2FormatError(
            f"{model.source}: quantized model ({quantized[0]}, ...); convert with --quantization float16 or float32"
        )
    m = _Mapper(model)
    m.linear("encoder/conv1", "model.encoder.conv1")
    m.linear("encoder/conv2", "model.encoder.conv2")
    m.state["model.encoder.embed_positions.weight"] = m.take("encoder/position_encodings/encodings")
    for i in range(dims.encoder_layers):
        m.block(f"encoder/layer_{i}", f"model.encoder.layers.{i}", cross_attention=False)
    m.layer_norm("encoder/layer_norm", "model.encoder.layer_norm")
    m.state["model.decoder.embed_tokens.weight"] = m.take("decoder/embeddings/weight")
    m.state["model.decoder.embed_positions.weight"] = m.take("decoder/position_encodings/encodings")
    for i in range(dims.decoder_layers):
        m.block(f"decoder/layer_{i}", f"model.decoder.layers.{i}", cross_attention=True)
    m.layer_norm("decoder/layer_norm", "model.decoder.layer_norm")
    has_projection = model.get("decoder/projection/weight") is not None
    m.state["proj_out.weight"] = (
        m.take("decoder/projection/weight") if has_projection else m.state["model.decoder.embed_tokens.weight"]
    )

    # Rank-0 variables are flags and head counts, already read into dims.
    unused = sorted(n for n, t in model.variables.items() if n not in m.used and t.dim() > 0)
    if unused:
        raise Ct2FormatError(f"{model.source}: {len(unused)} tensors have no Hugging Face place, e.g. {unused[:3]}")
    return m.state
