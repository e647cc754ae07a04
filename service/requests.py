"""The fields of a transcription request, checked: OpenAI's audio API plus ``channels``, ``hotwords``,
``redact``, ``itn`` and ``redacted_audio``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, get_args

from service.errors import ApiError
from zhasr.calltext.pii import parse_kinds
from zhasr.config import ChannelMode, TranscribeParams
from zhasr.transcribe.hotwords import parse_hotwords
from zhasr.transcribe.writers import FORMATS

# Every multipart field a transcription (or job) request may carry; anything else is a 422.
FIELDS = ("file", "model", "language", "prompt", "response_format", "temperature", "timestamp_granularities[]",
          "stream", "channels", "hotwords", "redact", "itn", "redacted_audio")
GRANULARITIES = ("segment", "word")
GRANULARITY_FIELD = "timestamp_granularities[]"
MAX_PROMPT_CHARS = 500
ACCEPTED_MODEL_ALIASES = ("whisper-1",)  # so clients written for OpenAI work unchanged


@dataclass(frozen=True)
class TranscriptionOptions:
    response_format: str
    words: bool  # word timestamps asked for
    prompt: str | None
    channels: str | None  # None: transcribe.channels
    hotwords: list[str] | None  # None: the configured ones
    stream: bool
    redact: tuple[str, ...] = ()  # kinds of personal data replaced (the request's, else transcribe.redact)
    itn: bool = False  # numbers written as digits
    redacted_audio: bool = False  # the audio with the redacted stretches muted comes back too

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_unknown(keys: list[str]) -> None:
    unknown = [k for k in keys if k not in FIELDS]
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0]!r}; this endpoint takes {', '.join(FIELDS)}", unknown[0])


def check_options(*, served_name: str, language_served: str, transcribe: TranscribeParams, model: str,
                  language: str | None, prompt: str | None, response_format: str, temperature: float,
                  timestamp_granularities: list[str], stream: bool, channels: str | None, hotwords: str | None,
                  redact: str | None = None, itn: bool | None = None, redacted_audio: bool = False,
                  job: bool = False) -> TranscriptionOptions:
    """Checked options, or an ApiError naming the field (404 for a model this server does not serve);
    ``transcribe`` gives what a request leaves out; ``job``: for a job (its result is verbose_json)."""
    if model not in (served_name, *ACCEPTED_MODEL_ALIASES):
        raise ApiError(404, f"model {model!r}: this server serves {served_name!r}", "model", "model_not_found")
    if language not in (None, "", language_served):
        raise ApiError(422, f"language {language!r}: this model transcribes {language_served!r}", "language")
    if response_format not in FORMATS:
        raise ApiError(422, f"response_format {response_format!r}: expected one of {', '.join(FORMATS)}",
                       "response_format")
    if not 0.0 <= temperature <= 1.0:
        raise ApiError(422, f"temperature {temperature}: expected 0 to 1 (decoding is greedy with the engine's "
                            "loop fallback)", "temperature")
    bad = [g for g in timestamp_granularities if g not in GRANULARITIES]
    if bad:
        raise ApiError(422, f"timestamp_granularities[] {bad[0]!r}: expected segment or word", GRANULARITY_FIELD)
    if timestamp_granularities and response_format != "verbose_json":
        raise ApiError(422, "timestamp_granularities[]: needs response_format=verbose_json", GRANULARITY_FIELD)
    if stream and response_format not in ("json", "text"):
        raise ApiError(422, f"stream: takes response_format json or text, not {response_format}", "stream")
    if channels not in (None, "", *get_args(ChannelMode)):
        raise ApiError(422, f"channels {channels!r}: expected mix or split", "channels")
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise ApiError(422, f"prompt: {len(prompt)} characters, at most {MAX_PROMPT_CHARS}", "prompt")
    terms = None
    if hotwords is not None and hotwords.strip():
        try:
            terms = parse_hotwords(hotwords)
        except ValueError as exc:
            raise ApiError(422, f"hotwords: {exc}", "hotwords") from exc
    kinds = check_redact(redact, transcribe.redact)
    if stream and kinds:
        raise ApiError(422, "stream: redaction needs the whole call (a number may run over two segments); "
                            "send redact=none or a request without stream", "stream")
    if redacted_audio and not kinds:
        raise ApiError(422, "redacted_audio: nothing is redacted; name the kinds in redact", "redacted_audio")
    if redacted_audio and response_format != "verbose_json" and not job:
        raise ApiError(422, "redacted_audio: comes back in verbose_json (or from a job)", "redacted_audio")
    if response_format == "diarized_json" and (channels or transcribe.channels) != "split":
        raise ApiError(422, "response_format diarized_json: speakers are the channels of a two-channel call; "
                            "send channels=split", "response_format")
    return TranscriptionOptions(response_format, "word" in timestamp_granularities, prompt or None, channels or None,
                                terms, stream, tuple(kinds), transcribe.itn if itn is None else itn, redacted_audio)


def check_redact(value: str | None, configured: list[str]) -> list[str]:
    """``redact``: absent (the configured kinds), "none", "all" or kinds separated by commas."""
    if value is None:
        return list(configured)
    try:
        return parse_kinds(value)
    except ValueError as exc:
        raise ApiError(422, f"redact: {exc}", "redact") from exc
