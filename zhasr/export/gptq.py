"""GPTQ 4-bit Whisper: every linear layer of the encoder and decoder quantized on audio calibration data.

optimum's ``GPTQQuantizer.quantize_model`` is written for decoder-only text models: its
dataset keeps only ``input_ids``, its input capture keeps only a block's first positional
argument (Whisper's decoder layers receive the causal mask and the encoder states
positionally, so cross-attention would be skipped without an error), and it quantizes
one stack of blocks. The calibration loop here is GPTQ's: blocks in order, each linear
layer solved with gptqmodel's ``GPTQ`` on the inputs of the already quantized layers
before it, the encoder first, then the decoder on the quantized encoder's output.
Packing, the checkpoint layout and loading are optimum's; inference runs gptqmodel's int4
kernels (``TorchAtenLinear`` on CPU).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from zhasr.config import ExportParams, ModelParams, TranscribeParams

GPTQ_CONFIG = "quantize_config.json"  # optimum's name for the quantization settings

# Every nn.Linear whose name starts with this is quantized: both stacks' layers, not proj_out
# (tied to the token embedding) nor the convolutions. Loading replaces the same set.
QUANTIZED_PREFIX = "model"
BLOCK_CLASSES = ["WhisperEncoderLayer", "WhisperDecoderLayer"]  # each kept whole on one device when loading


def _import_keeping_the_environment() -> None:
    """Import gptqmodel and optimum.gptq with the process environment put back as it was: on import they set
    PYTORCH_ALLOC_CONF, CUDA_DEVICE_ORDER, KMP_DUPLICATE_LIB_OK and HF_HOME (a hub cache under /tmp), which
    every process started after (a DVC call, a worker, the next stage) would inherit."""
    kept = os.environ.copy()
    try:
        for module in ("gptqmodel", "optimum.gptq"):
            importlib.import_module(module)
    finally:
        os.environ.clear()
        os.environ.update(kept)


BITS = 4  # the format is gptq-4bit
SYMMETRIC = True  # one scale per group, zero point at the middle of the range


@dataclass(frozen=True)
class CalibrationExample:
    input_features: torch.Tensor  # (1, n_mels, 3000) log-mel of one clip
    decoder_input_ids: torch.Tensor  # (1, n_tokens) start token, prompt and the clip's reference text


class _Captured(Exception):
    """Raised by the capture hook to stop a forward pass at the first block."""


def calibration_examples(processor, clips: list[tuple[np.ndarray, str]], language: str,
                         task: str = ModelParams.task) -> list[CalibrationExample]:
    """One example per (16 kHz clip, reference text): the decoder is calibrated on the text it should produce."""
    from zhasr.model.speech_data import label_ids

    start = processor.tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    examples = []
    for audio, text in clips:
        features = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
        ids = [start] + label_ids(processor, text, language, task, max_tokens=447)
        examples.append(CalibrationExample(features, torch.tensor([ids])))
    return examples


def _block_inputs(first_block: nn.Module, run: Callable[[], Any]) -> tuple[tuple, dict]:
    """The positional and keyword arguments ``first_block`` receives when ``run`` is called."""
    captured: list[tuple[tuple, dict]] = []

    def hook(module, args, kwargs):
        captured.append((args, kwargs))
        raise _Captured

    handle = first_block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        run()
    except _Captured:
        pass
    finally:
        handle.remove()
    return captured[0]


def _quantize_stack(prefix: str, blocks: nn.ModuleList, inputs: list[tuple[tuple, dict]], params: ExportParams,
                    block_done: Callable[[], Any]) -> dict[str, tuple]:
    """Quantize each linear layer of ``blocks`` in place (weights replaced by their dequantized values).

    Returns ``{layer name: (quantizer, scale, zero, g_idx)}`` for packing.
    """
    _import_keeping_the_environment()
    from gptqmodel import QuantizeConfig
    from gptqmodel.quantization import GPTQ

    config = QuantizeConfig(bits=BITS, group_size=params.gptq_group_size, damp_percent=params.gptq_damp_percent,
                            desc_act=params.gptq_desc_act, sym=SYMMETRIC, offload_to_disk=False)
    packed: dict[str, tuple] = {}
    for index, block in enumerate(blocks):
        linears = {name: m for name, m in block.named_modules() if type(m) is nn.Linear}
        for name, linear in linears.items():  # one at a time, on the outputs of the quantized ones before it
            solver = GPTQ(linear, qcfg=config)
            solver.quantizer.configure(bits=BITS, sym=SYMMETRIC, perchannel=True)
            handle = linear.register_forward_hook(lambda _, inp, out: solver.add_batch(inp[0].data, out.data))
            for args, kwargs in inputs:
                block(*args, **kwargs)
            handle.remove()
            scale, zero, g_idx, *_ = solver.hf_quantize(percdamp=params.gptq_damp_percent,
                                                        group_size=params.gptq_group_size,
                                                        actorder=params.gptq_desc_act)
            packed[f"{prefix}.{index}.{name}"] = (solver.quantizer, scale, zero, g_idx)
            solver.free()
        # The quantized block's outputs are the next block's inputs.
        inputs = [((_hidden(block(*args, **kwargs)),) + tuple(args[1:]), kwargs) for args, kwargs in inputs]
        block_done()
    return packed


def _hidden(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


@torch.no_grad()
def quantize_whisper(model, examples: list[CalibrationExample], params: ExportParams) -> dict[str, tuple]:
    """Quantize ``model`` (WhisperForConditionalGeneration, fp32, eval) in place, encoder then decoder,
    with a progress bar over the blocks."""
    whisper = model.model
    device = next(model.parameters()).device
    _check_group_size(model, params.gptq_group_size)
    bar = tqdm(total=len(whisper.encoder.layers) + len(whisper.decoder.layers), desc="GPTQ", unit="block")
    encoder_inputs = [_block_inputs(whisper.encoder.layers[0], lambda e=e: whisper.encoder(e.input_features.to(device)))
                      for e in examples]
    packed = _quantize_stack("model.encoder.layers", whisper.encoder.layers, encoder_inputs, params, bar.update)
    decoder_inputs = [_block_inputs(whisper.decoder.layers[0],
                                    lambda e=e: whisper(input_features=e.input_features.to(device),
                                                        decoder_input_ids=e.decoder_input_ids.to(device),
                                                        use_cache=False))
                      for e in examples]
    packed |= _quantize_stack("model.decoder.layers", whisper.decoder.layers, decoder_inputs, params, bar.update)
    bar.close()
    return packed


def _check_group_size(model, group_size: int) -> None:
    widths = sorted({m.in_features for name, m in model.named_modules()
                     if type(m) is nn.Linear and name.startswith(QUANTIZED_PREFIX)})
    if group_size != -1 and any(w % group_size for w in widths):
        raise ValueError(f"GPTQ group_size {group_size} must divide every quantized layer's input width "
                         f"(here {widths}); choose a divisor or -1")


def write_gptq(model_dir: Path, out_dir: Path, clips: list[tuple[np.ndarray, str]], language: str,
               params: ExportParams, device: str | None = None) -> Path:
    """Quantize the Hugging Face Whisper in ``model_dir`` with ``clips`` ((16 kHz audio, reference text) pairs)
    on ``device`` (default: CUDA when present) and save a checkpoint for ``load_gptq``; ``out_dir`` is
    complete or absent; ``params.gptq_*`` set the quantization. Its ``gptq_calibration.json`` records them, the clip count and the time."""
    _import_keeping_the_environment()
    from optimum.gptq import GPTQQuantizer
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    if not clips:
        raise ValueError("GPTQ needs calibration clips: none were given")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    started = time.perf_counter()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    processor = WhisperProcessor.from_pretrained(model_dir)
    packed = quantize_whisper(model, calibration_examples(processor, clips, language), params)
    model.to("cpu")  # packing runs on CPU; the checkpoint is the same for every device

    # act_group_aware (optimum's default) and act-order exclude each other.
    quantizer = GPTQQuantizer(bits=BITS, group_size=params.gptq_group_size, damp_percent=params.gptq_damp_percent,
                              desc_act=params.gptq_desc_act, act_group_aware=not params.gptq_desc_act, sym=SYMMETRIC,
                              format="gptq_v2", block_name_to_quantize=QUANTIZED_PREFIX)
    quantizer.pack_model(model, packed)
    # What stays unquantized (token embedding, convolutions, norms, biases) and the scales are stored
    # in fp16, as GPTQ checkpoints are; the embedding alone would be 106 MB in fp32 for whisper-base.
    # load_gptq computes in fp32.
    model.to(torch.float16)
    model.config.use_cache = True
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    quantizer.save(model, str(tmp))  # converts gptqmodel's internal v2 layout to the portable v1 ("gptq")
    # Both configs must describe what was saved (v1) and name the prefix that covers both stacks.
    quantization = {**quantizer.to_dict(), "block_name_to_quantize": QUANTIZED_PREFIX}
    (tmp / GPTQ_CONFIG).write_text(json.dumps(quantization, indent=2))
    config = json.loads((tmp / "config.json").read_text())
    (tmp / "config.json").write_text(json.dumps({**config, "quantization_config": quantization}, indent=2))
    processor.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    (tmp / "gptq_calibration.json").write_text(json.dumps(
        {"bits": BITS, "group_size": params.gptq_group_size, "damp_percent": params.gptq_damp_percent,
         "desc_act": params.gptq_desc_act, "sym": SYMMETRIC, "clips": len(clips), "layers": len(packed), "device": device,
         "seconds": round(time.perf_counter() - started, 1)}, indent=2))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)
    return out_dir


def load_gptq(path: Path, device: str = "cpu"):
    """(model in eval mode, processor) of a checkpoint written by ``write_gptq``.

    transformers' ``from_pretrained`` refuses GPTQ for models whose input is not text, so
    the model is built empty from its config and filled by optimum's ``load_quantized_model``,
    which reads ``quantize_config.json``.
    """
    _import_keeping_the_environment()
    from accelerate import init_empty_weights
    from optimum.gptq import load_quantized_model
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

    path = Path(path)
    if not (path / GPTQ_CONFIG).is_file():
        raise FileNotFoundError(f"{path / GPTQ_CONFIG}: not a GPTQ export (written by write_gptq)")
    config = WhisperConfig.from_pretrained(path)
    del config.quantization_config  # read from quantize_config.json instead
    with init_empty_weights():
        model = WhisperForConditionalGeneration(config)
    model.tie_weights()  # proj_out shares the token embedding, which is all the checkpoint holds of it
    model = load_quantized_model(model, str(path), device_map={"": device}, no_split_module_classes=BLOCK_CLASSES)
    model.generation_config = GenerationConfig.from_pretrained(path)
    return model.eval(), WhisperProcessor.from_pretrained(path)


def transcribe_gptq(path: Path, clips: list[np.ndarray], language: str = ModelParams.language, threads: int = 2,
                    max_tokens: int = 224, device: str = "cpu") -> tuple[list[str], float]:
    """(one text per 16 kHz clip in simplified Chinese, decoding seconds), greedy with the loop guard,
    one clip at a time like the other runtimes."""
    from zhasr.model.decode import DecodeOptions, transcribe

    model, processor = load_gptq(path, device)
    options = DecodeOptions(TranscribeParams(batch_size=1, max_new_tokens=max_tokens), language)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        started = time.perf_counter()
        texts = [t.text for t in transcribe(model, processor, clips, options)]
        return texts, time.perf_counter() - started
    finally:
        torch.set_num_threads(threads_before)
