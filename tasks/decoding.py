"""Decoding for the stages that score models (merge's interpolation guard, evaluate) and train's dev
CER: the engine's decoding options, the evaluation sets, the reference models (champion and base),
and each model decoded at full precision in ``evaluate.runtime`` through the decode cache."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from mlflow_services import registry
from zhasr.config import TranscribeParams
from zhasr.context import StageContext
from zhasr.data.audio import load_16k
from zhasr.data.manifest import ManifestRow
from zhasr.evaluation.scoring import SystemOutput
from zhasr.export.ct2 import float32_copy
from zhasr.model import shared_encoder
from zhasr.model.decode import DecodeOptions, Stopwatch
from zhasr.model.encoder_cache import cached_layer_count
from zhasr.model.loading import resolve_base_model
from zhasr.progress import progress_bar
from zhasr.transcribe import Transcriber
from zhasr.transcribe.cache import DecodeCache, engine_key, transcribe_cached, weights_digest

log = logging.getLogger(__name__)


def decode_options(ctx: StageContext, settings: TranscribeParams | None = None) -> DecodeOptions:
    """The engine's decoding options: ``settings``, else the transcribe section (what the service uses)."""
    return DecodeOptions(settings or ctx.params.transcribe, ctx.params.model.language, ctx.params.model.task)


def whole_clip_decoding(settings: TranscribeParams) -> TranscribeParams:
    """``settings`` with no prompt and clips up to Whisper's 30-s window decoded whole: the second decoding
    general speech is judged through, so that neither a prompt nor cutting at pauses flatters a model."""
    return replace(settings, hotwords=[], whole_clip_s=max(settings.whole_clip_s, 30.0))


def load_clips(ctx: StageContext, sets: dict[str, list[ManifestRow]]) -> dict[str, list[np.ndarray]]:
    """``{set: [(n,) float32 16 kHz samples]}`` of the rows of each set."""
    return {name: [load_16k(ctx.path("dataset") / r.audio) for r in rows] for name, rows in sets.items()}


@dataclass(frozen=True)
class Model:
    """A model decoded by evaluation: its Hugging Face folder and the sha256 of its weights."""

    label: str  # candidate | champion | base
    folder: Path
    weights: str

    @classmethod
    def of(cls, label: str, folder: Path) -> Model:
        return cls(label, Path(folder), weights_digest(folder))


def base_model_dir(ctx: StageContext) -> Path:
    return resolve_base_model(ctx.params.model.base, ctx.path("models"))


def ensure_champion(ctx: StageContext, base_dir: Path):
    """The champion version; the base model (``base_dir``) is registered as the first champion when
    there is none. Call inside an MLflow run."""
    name = ctx.params.register.model_name
    champion = registry.version_by_alias(name, registry.CHAMPION)
    if champion is None:
        with mlflow.start_run(run_name="base-model", nested=True):
            mlflow.set_tag("zhasr.kind", "base-model")
            champion = registry.log_and_register(
                name, base_dir, ctx.params.model.language,
                tags={"zhasr.base_model": ctx.params.model.base, "zhasr.role": "base"},
                transcribe=ctx.params.transcribe,
            )
        registry.change_alias(name, registry.CHAMPION, str(champion.version), action="register", by="zhasr",
                              note="base model registered as the first champion")
    return champion


def references(ctx: StageContext) -> tuple[Any, dict[str, Model]]:
    """(champion version, ``{"champion": Model, "base": Model}``): what a candidate is scored against.
    "base" is left out while the champion is the base model itself."""
    base_dir = base_model_dir(ctx)
    champion = ensure_champion(ctx, base_dir)
    models = {"champion": Model.of("champion", registry.whisper_dir(champion)), "base": Model.of("base", base_dir)}
    if models["base"].weights == models["champion"].weights:
        del models["base"]
    return champion, models


def ct2_copies(ctx: StageContext) -> Path:
    """Where the float32 CTranslate2 copies that evaluation decodes with are kept, one per weights."""
    return ctx.path("models") / "ct2-float32"


@functools.cache
def _encoder_layers(base_dir: Path) -> int:
    from transformers import WhisperConfig

    return WhisperConfig.from_pretrained(base_dir).encoder_layers


def shared_encoder_layers(ctx: StageContext) -> int:
    """Encoder layers whose output evaluation shares between models: those training leaves as in the
    base model (``train.cached_encoder_layers``), with ``evaluate.share_lower_encoder`` on the ct2 runtime
    on a CPU; else 0."""
    import torch

    if not ctx.params.evaluate.share_lower_encoder or ctx.params.evaluate.runtime != "ct2" or torch.cuda.is_available():
        return 0
    return cached_layer_count(ctx.params.train.cached_encoder_layers, _encoder_layers(base_model_dir(ctx)), False)


def open_transcriber(ctx: StageContext, model: Model, shared_layers: int = 0,
                     settings: TranscribeParams | None = None) -> Transcriber:
    """``model`` at full precision in ``evaluate.runtime``, with the engine's settings (``settings``, else the
    transcribe section); in ct2, its lower ``shared_layers`` encoder layers read from and written to
    ``paths.encoder_states``."""
    settings = settings or ctx.params.transcribe
    options = decode_options(ctx, settings)
    if ctx.params.evaluate.runtime == "ct2":
        import torch

        from zhasr.transcribe.ct2_runtime import Ct2Runtime

        encoder = (shared_encoder.SharedLowerEncoder(model.folder, shared_layers, ctx.path("encoder_states"))
                   if shared_layers else None)
        runtime = Ct2Runtime(float32_copy(model.folder, ct2_copies(ctx), model.weights), options,
                             settings.threads, device="cuda" if torch.cuda.is_available() else "cpu",
                             encoder=encoder)
    else:
        from zhasr.transcribe.hf_runtime import TransformersRuntime

        runtime = TransformersRuntime.open(model.folder, options)
    return Transcriber(runtime, settings, ctx.params.model.language, identity=model.label)


def decode_sets(ctx: StageContext, model: Model, sets: dict[str, list[np.ndarray]],
                settings: TranscribeParams | None = None) -> tuple[dict[str, SystemOutput], dict[str, int]]:
    """Decode every set ``{name: clips}`` with ``model`` through the transcription engine with ``settings``
    (else the transcribe section: as it would serve, with VAD, the guard, the hallucination filter), clips
    the decode cache holds excepted; the model is not even loaded when it holds them all. ``({name: SystemOutput}, counts)``: decode-cache
    ``hits`` and ``misses`` (clips), and where the lower encoder is shared, ``encoder_hits`` and
    ``encoder_misses`` (30-s windows whose lower-layer output was read from the store or computed)."""
    settings = settings or ctx.params.transcribe
    layers = shared_encoder_layers(ctx)
    engine = engine_key(ctx.params.evaluate.runtime, decode_options(ctx, settings), settings,
                        ctx.params.model.language, shared_encoder.describe(layers) if layers else "")
    opened = functools.cache(lambda: open_transcriber(ctx, model, layers, settings))
    cache = DecodeCache(ctx.path("decode_cache"))
    outputs, counts = {}, {"hits": 0, "misses": 0}
    for name, clips in sets.items():
        with progress_bar(f"decode {name} with {model.label} (speech seconds)") as progress, Stopwatch() as watch:
            decoded = transcribe_cached(opened, clips, cache, model.weights, engine, model.label,
                                        progress=lambda d, t: progress(round(d), round(t)))
        outputs[name] = SystemOutput(decoded.transcriptions, watch.seconds)
        log.info("decode cache, %s on %s: %d hits, %d misses", model.label, name, decoded.hits, decoded.misses)
        counts["hits"] += decoded.hits
        counts["misses"] += decoded.misses
    if layers and opened.cache_info().currsize:  # the model was opened: some clip was not cached
        encoder = opened().runtime.encoder
        counts |= {"encoder_hits": encoder.hits, "encoder_misses": encoder.misses}
        log.info("shared lower encoder, %s: %d windows read, %d computed", model.label, encoder.hits, encoder.misses)
    return outputs, counts
