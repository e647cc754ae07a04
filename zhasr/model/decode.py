"""Batched Whisper transcription of 16 kHz clips, guarded against repetition loops.

The guard, in order: new tokens are capped by the clip's duration; an output
that hit the cap, compresses too well or repeats a unit is decoded again with
repeated 4-grams banned; what still loops is truncated to one copy of the
repeated unit. Output is simplified Chinese.
"""

from __future__ import annotations

import logging
import math
import re
import time
import zlib
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutput

from zhasr.config import ModelParams, TranscribeParams
from zhasr.data.text import to_simplified
from zhasr.model.training_windows import DECODER_POSITIONS

_DECODING_SETTINGS = ("batch_size", "parallel_batches", "max_new_tokens", "tokens_per_second", "num_beams",
                      "compression_ratio_threshold", "retry_no_repeat_ngram")


class _WhisperGenerateNotes(logging.Filter):
    """transformers warns on every batch about how its own Whisper ``generate`` calls the generic loop: a
    generation config beside its own suppress-token arguments, ``output_scores`` (which it does return,
    and the guard reads), the model's ``max_length`` beside the cap by duration (which wins); and, for a
    batch decoded with timestamps, a missing attention mask (every row starts with the same prompt:
    nothing is padding). Nothing a caller can change; a service's log would be mostly these lines."""

    NOTES = ("The following generation flags are not valid", "Passing `generation_config` together",
             "Both `max_new_tokens`", "The attention mask is not set with a batched input")

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.NOTES)


for _name in ("transformers.generation.utils", "transformers.generation.configuration_utils"):
    logging.getLogger(_name).addFilter(_WhisperGenerateNotes())


@dataclass(frozen=True)
class DecodeOptions:
    """How a runtime decodes: the transcribe section's settings (clips per batch, token caps, beams, the
    loop guard) for one language and task."""

    settings: TranscribeParams = field(default_factory=TranscribeParams)
    language: str = ModelParams.language
    task: str = ModelParams.task

    def key(self) -> dict[str, object]:
        """What decides the tokens: language, task and the settings the runtimes read (a decode-cache key)."""
        return {"language": self.language, "task": self.task,
                **{name: getattr(self.settings, name) for name in _DECODING_SETTINGS}}


@dataclass(frozen=True)
class Transcript:
    text: str  # simplified Chinese, repetition loops collapsed
    tokens: list[int]  # generated ids (the prompt cut off), <|endoftext|> and padding included
    hit_cap: bool  # the kept decoding stopped at the token cap, not at <|endoftext|>
    looped: bool  # the first decoding hit the cap or looped (counted as a loop, retried or not)
    retried: bool = False  # decoded a second time with repeated n-grams banned
    avg_logprob: float | None = None  # mean log-probability of the kept tokens, <|endoftext|> included
    no_speech_prob: float | None = None  # P(<|nospeech|>) right after <|startoftranscript|>
    collapsed: bool = False  # a loop survived and was cut to one copy
    error: str | None = None  # the runtime failed on this clip (text is empty)
    # the runtime's own timestamped segments, (start_s, end_s, text) from the clip's start (whisper.cpp)
    timed: tuple[tuple[float, float, str], ...] = ()


# Whisper's typical loop: a unit of 2-20 characters three or more times in a row, or one
# character five or more times ("哈哈哈" and "谢谢谢谢" are speech, not loops).
_LOOP = re.compile(r"(.{2,20}?)\1{2,}|(.)\2{4,}")


def collapse_loops(text: str) -> tuple[str, bool]:
    """``("好的五十九五十九五十九五十九", True)`` -> ``("好的五十九", True)``: keep one copy of each loop."""
    collapsed = _LOOP.sub(lambda m: m.group(1) or m.group(2), text)
    return collapsed, collapsed != text


def compression_ratio(text: str) -> float:
    """UTF-8 bytes over zlib-compressed bytes; loops compress far better than speech."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def is_loop(text: str, options: DecodeOptions) -> bool:
    return compression_ratio(text) > options.settings.compression_ratio_threshold or bool(_LOOP.search(text))


def token_cap(duration_s: float, options: DecodeOptions, timestamps: bool = False) -> int:
    """New-token budget for a clip of ``duration_s`` seconds, at most ``max_new_tokens``; with ``timestamps``,
    one more a second for the timestamp tokens (a segment of two seconds or more takes two)."""
    wanted = math.ceil(duration_s * options.settings.tokens_per_second) + 8 + (math.ceil(duration_s) if timestamps else 0)
    return max(8, min(options.settings.max_new_tokens, wanted))


def timestamp_flags(timestamps: bool | Sequence[bool], count: int) -> list[bool]:
    """Whether each of ``count`` clips is decoded with Whisper's timestamp tokens: one flag for all, or one
    a clip."""
    flags = [timestamps] * count if isinstance(timestamps, bool) else [bool(f) for f in timestamps]
    if len(flags) != count:
        raise ValueError(f"timestamps: {len(flags)} flags for {count} clips")
    return flags


TIME_PER_TIMESTAMP_S = 0.02  # Whisper's timestamp tokens step by 20 ms


def timestamp_segments(ids: list[int], timestamp_begin: int, decode: Callable[[list[int]], str],
                       duration_s: float) -> tuple[list[int], tuple[tuple[float, float, str], ...]]:
    """(text token ids, ``(start_s, end_s, text)`` segments) of a decoding with Whisper's timestamp tokens
    (``<|0.00|> text <|2.88|><|2.88|> text <|5.68|>``); text before the first or after the last timestamp
    runs from the window's start or to ``duration_s``. ``decode``: token ids -> text."""
    text_ids, segments, pending, start = [], [], [], 0.0
    opened = False
    for token in ids:
        if token < timestamp_begin:
            text_ids.append(token)
            pending.append(token)
            continue
        time_s = min((token - timestamp_begin) * TIME_PER_TIMESTAMP_S, duration_s)
        if pending:
            segments.append((start if opened else 0.0, time_s, decode(pending)))
            pending, opened = [], False
        else:
            start, opened = time_s, True
    if pending:
        segments.append((start if opened else 0.0, duration_s, decode(pending)))
    return text_ids, tuple((round(s, 3), round(max(e, s), 3), t) for s, e, t in segments if t.strip())


def no_speech_token_id(tokenizer) -> int:
    """``<|nospeech|>`` where the vocabulary has it, else ``<|nocaptions|>`` (multilingual whisper-base)."""
    for token in ("<|nospeech|>", "<|nocaptions|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and token_id != tokenizer.unk_token_id:
            return token_id
    raise ValueError("the tokenizer has neither <|nospeech|> nor <|nocaptions|>")


PROMPT_TOKENS = DECODER_POSITIONS // 2 - 1  # Whisper keeps half its positions for earlier text: 223 tokens


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """``<|startofprev|>`` and the first 223 tokens of ``prompt`` after a space (faster-whisper's cut of its
    hotwords, which the ct2 runtime decodes with), read as text: ``<|endoftext|>`` typed in a hotword is
    those characters, not the token."""
    text = tokenizer.encode(" " + prompt.strip(), add_special_tokens=False, split_special_tokens=True)
    return [tokenizer.convert_tokens_to_ids("<|startofprev|>"), *text[:PROMPT_TOKENS]]


def log_mel(processor, clips: list[np.ndarray]) -> torch.Tensor:
    """(batch, n_mels, 3000) float32 log-mel features of 16 kHz clips, padded to 30 s. Computed in float32
    also under a bf16 autocast (the extractor's STFT runs on the CPU and cannot hand back bf16)."""
    with torch.autocast("cpu", enabled=False):
        return processor.feature_extractor(clips, sampling_rate=16000, return_tensors="pt").input_features


def encode(model, features: torch.Tensor) -> BaseModelOutput:
    """(batch, n_mels, 3000) features -> the encoder's (batch, 1500, d_model) output. On a CPU one window at
    a time: ~20% faster a window than a batch of 8, whose activations do not stay in cache."""
    encoder = model.get_encoder()
    if features.device.type != "cpu":
        return encoder(features)
    return BaseModelOutput(last_hidden_state=torch.cat([encoder(f).last_hidden_state for f in features.split(1)]))


@torch.inference_mode()
def _generate(model, processor, batch: list[np.ndarray], options: DecodeOptions, prompt: str | None = None,
              timestamps: bool = False, inputs: list[torch.Tensor] | None = None, **extra) -> list[Transcript]:
    """One first-pass Transcript per clip of ``batch`` (``looped`` not yet judged); ``inputs``: what the
    encoder reads for each clip in place of its log-mel features."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    features = log_mel(processor, batch) if inputs is None else torch.stack(inputs)
    encoded = encode(model, features.to(device, dtype))
    # P(no speech) is read where Whisper reads it: the logits right after <|startoftranscript|>.
    sot = torch.full((len(batch), 1), model.generation_config.decoder_start_token_id, device=device)
    first = model(encoder_outputs=encoded, decoder_input_ids=sot).logits[:, -1].float().softmax(-1)
    no_speech = first[:, no_speech_token_id(processor.tokenizer)].tolist()
    prompt_prefix = prompt_ids(processor.tokenizer, prompt) if prompt else []
    start_prefix = 3 if timestamps else 4  # <|startoftranscript|><|lang|><|task|>[<|notimestamps|>]
    # the cap within the decoder's positions: a long hotword list leaves fewer for the transcription
    cap = min(token_cap(max(len(c) for c in batch) / 16000, options, timestamps),
              model.config.max_target_positions - len(prompt_prefix) - start_prefix)
    settings = dict(encoder_outputs=encoded, max_new_tokens=cap, num_beams=options.settings.num_beams, do_sample=False,
                    return_dict_in_generate=True, output_scores=True, use_cache=True, **extra)
    if timestamps:
        generated, start = _generate_timestamped(model, len(batch), options, prompt_prefix, settings)
    else:
        if prompt_prefix:
            settings["prompt_ids"] = torch.tensor(prompt_prefix, device=device)
        # One call: timestamp tokens the model writes unasked would send Whisper's generate seeking through
        # the window again as long-form audio, which it cannot do from encoder outputs.
        generated = model.generate(language=options.language, task=options.task, force_unique_generate_call=True,
                                   **settings)
        start = generated.sequences.shape[1] - len(generated.scores)  # Whisper's generate keeps a score a new token
    rows = generated.sequences[:, start:].tolist()  # the prefix (and any hotword prompt) cut off
    tokenizer = processor.tokenizer
    eos = tokenizer.eos_token_id
    out = []
    for row, mean, p_none, clip in zip(rows, _mean_logprobs(model, generated, rows, eos), no_speech, batch):
        stop = row.index(eos) if eos in row else len(row)
        ids, timed = row[:stop], ()
        if timestamps:
            ids, timed = timestamp_segments(ids, tokenizer.convert_tokens_to_ids("<|0.00|>"),
                                            lambda t: to_simplified(tokenizer.decode(t, skip_special_tokens=True).strip()),
                                            len(clip) / 16000)
        text = to_simplified(tokenizer.decode(ids, skip_special_tokens=True).strip())
        out.append(Transcript(text=text, tokens=row, hit_cap=eos not in row, looped=False,
                              avg_logprob=mean, no_speech_prob=p_none, timed=timed))
    return out


def _mean_logprobs(model, generated, rows: list[list[int]], eos: int) -> list[float]:
    """Each row's mean log-probability per token up to its end of text. Beam search returns about that as
    its length-normalised score (``length_penalty`` 1; its ``beam_indices`` do not line up with Whisper's
    forced prefix), read before the timestamp rules renormalise."""
    if getattr(generated, "sequences_scores", None) is not None:
        return [float(x) for x in generated.sequences_scores]
    logprobs = model.compute_transition_scores(generated.sequences, generated.scores, normalize_logits=True)
    stops = [row.index(eos) + 1 if eos in row else len(row) for row in rows]
    return [float(scores[:stop].float().mean()) for scores, stop in zip(logprobs, stops)]


def _generate_timestamped(model, rows: int, options: DecodeOptions, prompt_prefix: list[int], settings: dict
                          ) -> tuple:
    """(``generate``'s output, the prefix's length): generated from ``prompt_prefix`` (``prompt_ids``' or none)
    and ``<|startoftranscript|><|lang|><|task|>`` (no ``<|notimestamps|>``) under Whisper's timestamp rules,
    the plain GenerationMixin loop: Whisper's own ``generate`` with ``return_timestamps`` runs its long-form
    machinery, which needs input features, not encoder outputs. Under beam search this loop keeps a score
    for every step, more than a row's tokens."""
    from transformers import GenerationMixin, LogitsProcessorList
    from transformers.generation.logits_process import WhisperTimeStampLogitsProcessor

    config = model.generation_config
    prefix = prompt_prefix + [config.decoder_start_token_id, config.lang_to_id[f"<|{options.language}|>"],
                              config.task_to_id[options.task]]
    device = settings["encoder_outputs"].last_hidden_state.device
    rules = LogitsProcessorList([WhisperTimeStampLogitsProcessor(config, begin_index=len(prefix))])
    return GenerationMixin.generate(model, decoder_input_ids=torch.tensor([prefix] * rows, device=device),
                                    logits_processor=rules, **settings), len(prefix)


def transcribe(model, processor, clips: list[np.ndarray], options: DecodeOptions,
               progress: Callable[[int, int], None] | None = None, prompt: str | None = None,
               timestamps: bool = False, encoder_inputs: list[torch.Tensor] | None = None) -> list[Transcript]:
    """One Transcript per clip; ``clips`` are (n_samples,) float32 at 16 kHz, each <= 30 s.

    ``encoder_inputs``: what the model's encoder reads for each clip instead of its log-mel features (the
    cached lower-encoder states, when training's encoder starts above them).

    ``prompt``: text given to the decoder as previous context (hotwords), not part of the output;
    ``timestamps``: decoded with Whisper's timestamp tokens, the segments in ``Transcript.timed``.
    """
    out: list[Transcript] = []
    for start in range(0, len(clips), options.settings.batch_size):
        batch = clips[start : start + options.settings.batch_size]
        inputs = encoder_inputs[start : start + options.settings.batch_size] if encoder_inputs else None
        first = _generate(model, processor, batch, options, prompt, timestamps, inputs)
        suspect = [i for i, t in enumerate(first) if t.hit_cap or is_loop(t.text, options)]
        second = {}
        if suspect and options.settings.retry_no_repeat_ngram > 0:
            again = _generate(model, processor, [batch[i] for i in suspect], options, prompt, timestamps,
                              [inputs[i] for i in suspect] if inputs else None,
                              no_repeat_ngram_size=options.settings.retry_no_repeat_ngram)
            second = dict(zip(suspect, again))
        for i, kept in enumerate(first):
            kept = second.get(i, kept)
            text, collapsed = collapse_loops(kept.text)
            out.append(replace(kept, text=text, looped=i in suspect, retried=i in second, collapsed=collapsed))
        if progress:
            progress(len(out), len(clips))
    return out


def real_time_factor(decode_seconds: float, audio_seconds: float) -> float:
    """Decode time divided by audio duration (below 1 is faster than real time)."""
    return decode_seconds / audio_seconds if audio_seconds > 0 else float("nan")


class Stopwatch:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
