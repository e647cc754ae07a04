"""``Transcriber``: whole calls in, a timeline of segments out, in any runtime.

Pieces from every input, channel and call of a ``transcribe_many`` call are decoded together in
batches of ``batch_size`` (longest first, so a batch holds pieces of similar length), which is
how one worker serves many requests at once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zhasr.config import TranscribeParams
from zhasr.data.audio import TARGET_RATE, AudioError
from zhasr.model.decode import DecodeOptions, Transcript
from zhasr.transcribe import guard
from zhasr.transcribe.media import CallAudio, read_call
from zhasr.transcribe.records import Removed, Segment, Timings, Transcription, Word
from zhasr.transcribe.vad import Piece, speech_spans

# A path or the file's bytes, or samples already at 16 kHz: (n,) mono or (channels, n).
AudioSource = Path | str | bytes | np.ndarray | CallAudio
RUNTIMES = ("transformers", "ct2", "ggml")


def runtime_of(path: Path) -> str:
    """Which runtime reads ``path``: a ggml .bin file, a ct2 folder (model.bin) or a Hugging Face folder."""
    path = Path(path)
    if path.is_file():
        return "ggml"
    if (path / "model.bin").is_file():
        return "ct2"
    if (path / "config.json").is_file():
        return "transformers"
    raise FileNotFoundError(f"{path}: neither a ggml file, a CTranslate2 folder (model.bin) nor a Hugging Face "
                            "folder (config.json)")


def pick_model(model: Path, exports: Mapping[str, Path], runtime: str) -> Path:
    """The files to open for ``runtime``: ``auto`` takes a ct2 export first, then ggml, else ``model``.

    ``exports``: ``{format: path}`` of the exports judged fit for this model (e.g. ``{"ct2-int8": ...}``).
    """
    if runtime == "auto":
        for prefix in ("ct2-", "ggml-"):
            for fmt in sorted(exports):
                if fmt.startswith(prefix):
                    return Path(exports[fmt])
        return Path(model)
    if runtime_of(model) == runtime:
        return Path(model)
    for fmt, path in sorted(exports.items()):
        if runtime_of(path) == runtime:
            return Path(path)
    raise FileNotFoundError(f"runtime {runtime!r}: {model} is not one and no fit export is "
                            f"(exports: {', '.join(sorted(exports)) or 'none'})")


@dataclass(frozen=True)
class _Track:
    source: int
    channel: int
    speaker: str
    samples: np.ndarray  # (n,) 16 kHz


Decoded = tuple[Transcript, tuple[Word, ...]]  # one piece's decoding and its word timings (may be empty)


@dataclass(frozen=True)
class Plan:
    """Inputs read and cut into speech pieces, ready to decode; times are ``perf_counter`` marks."""

    calls: list[CallAudio]
    names: list[str]
    mode: str  # mix | split
    warnings: list[list[str]]  # per input, appended to while assembling
    pieces: list[Piece]
    tracks: dict[tuple[int, int], _Track]  # (source, channel) -> track
    started: float
    decoded_at: float
    vad_at: float

    def clip(self, k: int) -> np.ndarray:
        """Samples of piece ``k``, (n,) float32 at 16 kHz."""
        piece = self.pieces[k]
        return self.tracks[(piece.source, piece.channel)].samples[piece.start : piece.end]

    @property
    def speech_s(self) -> float:
        return sum(p.end - p.start for p in self.pieces) / TARGET_RATE


class Transcriber:
    """One model in one runtime with the engine's rules. Thread-compatible, not thread-safe."""

    def __init__(self, runtime, params: TranscribeParams, language: str = "zh", identity: str = ""):
        self.runtime, self.params, self.language, self.identity = runtime, params, language, identity
        self.hotwords = list(params.hotwords or [])

    @classmethod
    def open(cls, model: Path, params: TranscribeParams, *, language: str = "zh", task: str = "transcribe",
             exports: Mapping[str, Path] | None = None, runtime: str | None = None, identity: str | None = None,
             device=None) -> Transcriber:
        """Open ``model`` (a Hugging Face folder, ct2 folder or ggml file) or, by ``runtime``
        (default ``params.runtime``), one of its ``exports``."""
        path = pick_model(Path(model), exports or {}, runtime or params.runtime)
        kind = runtime_of(path)
        options = DecodeOptions(params, language, task)
        if kind == "ct2":
            from zhasr.transcribe.ct2_runtime import Ct2Runtime

            engine = Ct2Runtime(path, options, params.threads, device="cuda" if str(device) == "cuda" else "cpu")
        elif kind == "ggml":
            from zhasr.transcribe.ggml_runtime import GgmlRuntime

            engine = GgmlRuntime(path, options)
        elif (path / "quantize_config.json").is_file():  # a GPTQ export: the transformers runtime on int4 kernels
            from zhasr.export.gptq import load_gptq
            from zhasr.transcribe.hf_runtime import TransformersRuntime

            engine = TransformersRuntime(*load_gptq(path, str(device or "cpu")), options)
        else:
            from zhasr.transcribe.hf_runtime import TransformersRuntime

            engine = TransformersRuntime.open(path, options, device)
        return cls(engine, params, language, identity or str(path))

    @property
    def runtime_name(self) -> str:
        return self.runtime.name

    def transcribe(self, audio: AudioSource, *, channels: str | None = None, name: str | None = None,
                   use_hotwords: bool | None = None, words: bool = False,
                   progress: Callable[[float, float], None] | None = None) -> Transcription:
        """Transcribe one input; raises AudioError (naming ``name``) for input that cannot be used."""
        return self.transcribe_many([audio], channels=channels, names=[name] if name else None,
                                    use_hotwords=use_hotwords, words=words, progress=progress)[0]

    def transcribe_many(self, audios: Sequence[AudioSource], *, channels: str | None = None,
                        names: Sequence[str] | None = None, use_hotwords: bool | None = None, words: bool = False,
                        progress: Callable[[float, float], None] | None = None) -> list[Transcription]:
        """One Transcription per input, all pieces decoded together (longest first, so a batch holds
        pieces of similar length). ``progress(done_s, total_s)`` counts seconds of speech decoded."""
        plan = self.prepare(audios, channels=channels, names=names)
        prompt = self.prompt(use_hotwords)
        order = sorted(range(len(plan.pieces)), key=lambda k: plan.pieces[k].start - plan.pieces[k].end)
        results: dict[int, Decoded] = {}
        done = 0.0
        for b in range(0, len(order), self.params.batch_size):
            batch = order[b : b + self.params.batch_size]
            clips = [plan.clip(k) for k in batch]
            results.update(zip(batch, self.decode(clips, prompt, words)))
            done += sum(len(c) for c in clips) / TARGET_RATE
            if progress:
                progress(done, plan.speech_s)
        return self.finish(plan, results, words)

    def prepare(self, audios: Sequence[AudioSource], *, channels: str | None = None,
                names: Sequence[str] | None = None) -> Plan:
        """Read every input and cut its tracks into speech pieces; raises AudioError naming the input."""
        mode = channels or self.params.channels
        if mode not in ("mix", "split"):
            raise ValueError(f"channels: expected mix or split, got {mode!r}")
        names = list(names) if names else [str(a) if isinstance(a, (str, Path)) else f"audio {i}"
                                           for i, a in enumerate(audios)]
        started = time.perf_counter()
        calls = [_as_call(a, n, self.params.max_audio_s) for a, n in zip(audios, names)]
        decoded_at = time.perf_counter()
        warnings: list[list[str]] = [list(c.warnings) for c in calls]
        tracks = []
        for i, call in enumerate(calls):
            tracks += self._tracks(i, call, mode, names[i], warnings[i])
        pieces = [Piece(t.source, t.channel, s, e) for t in tracks for s, e in speech_spans(t.samples, self.params)]
        return Plan(calls, names, mode, warnings, pieces, {(t.source, t.channel): t for t in tracks},
                    started, decoded_at, time.perf_counter())

    def prompt(self, use_hotwords: bool | None = None, text: str | None = None,
               hotwords: Sequence[str] | None = None) -> str | None:
        """The decoder prompt: ``text`` (a caller's context) followed by the hotwords when they are on
        (``hotwords`` in place of the configured ones)."""
        hot = self.params.use_hotwords if use_hotwords is None else use_hotwords
        terms = list(hotwords) if hotwords is not None else self.hotwords
        parts = [p for p in (text, " ".join(terms) if hot and terms else None) if p]
        return " ".join(parts) or None

    def decode(self, clips: list[np.ndarray], prompt: str | None, words: bool = False) -> list[Decoded]:
        """(Transcript, words) per clip; words are empty where not asked for or the runtime cannot align."""
        transcripts = self.runtime.decode(clips, prompt)
        timed: list[tuple[Word, ...]] = [()] * len(clips)
        if words and hasattr(self.runtime, "align"):  # the final text is aligned, so words spell the segment
            judged = [guard.judge(t, self.params) for t in transcripts]
            timed = self.runtime.align(clips, ["" if reason else text for text, _, reason in judged])
        return list(zip(transcripts, timed))

    def segment(self, plan: Plan, k: int, decoded: Decoded) -> Segment | Removed:
        """Piece ``k`` of ``plan`` after the guard: a Segment (``id`` -1 until the timeline is built) or,
        when the guard removes it, a Removed with the reason."""
        piece, (t, words) = plan.pieces[k], decoded
        text, flags, reason = guard.judge(t, self.params)
        start, end = round(piece.start_s, 3), round(piece.end_s, 3)
        if reason:
            return Removed(start, end, piece.channel, reason, text)
        return Segment(id=-1, start=start, end=end, text=text, channel=piece.channel,
                       speaker=plan.tracks[(piece.source, piece.channel)].speaker, avg_logprob=t.avg_logprob,
                       no_speech_prob=t.no_speech_prob, compression_ratio=guard.ratio(text), flags=flags,
                       error=t.error, words=tuple(dataclasses.replace(w, start=round(w.start + start, 3),
                                                                      end=round(w.end + start, 3)) for w in words))

    def finish(self, plan: Plan, results: Mapping[int, Decoded], words: bool = False) -> list[Transcription]:
        """One Transcription per input of ``plan`` from the decoded pieces ``{piece index: Decoded}``."""
        finished = time.perf_counter()
        total = max(1, sum(p.end - p.start for p in plan.pieces))
        out = []
        for i, call in enumerate(plan.calls):
            mine = sorted((k for k in range(len(plan.pieces)) if plan.pieces[k].source == i),
                          key=lambda k: (plan.pieces[k].start, plan.pieces[k].channel))
            share = sum(plan.pieces[k].end - plan.pieces[k].start for k in mine) / total
            timings = Timings(decode_audio_s=round((plan.decoded_at - plan.started) / len(plan.calls), 3),
                              vad_s=round((plan.vad_at - plan.decoded_at) / len(plan.calls), 3),
                              inference_s=round((finished - plan.vad_at) * share, 3),
                              total_s=round(finished - plan.started, 3))
            judged = [self.segment(plan, k, results[k]) for k in mine]
            segments = [dataclasses.replace(s, id=n) for n, s in enumerate(x for x in judged if isinstance(x, Segment))]
            warnings = plan.warnings[i]
            if any(s.error for s in segments):
                warnings.append(f"{sum(1 for s in segments if s.error)} piece(s) failed in the runtime; "
                                "flagged 'failed'")
            if words and not hasattr(self.runtime, "align"):
                warnings.append(f"word timestamps: the {self.runtime.name} runtime gives none")
            out.append(Transcription(text=" ".join(s.text for s in segments if s.text), segments=tuple(segments),
                                     duration_s=round(call.duration_s, 3), language=self.language,
                                     model=self.identity, runtime=self.runtime.name, channels=plan.mode,
                                     removed=tuple(x for x in judged if isinstance(x, Removed)),
                                     warnings=tuple(warnings), timings=timings))
        return out

    def _tracks(self, source: int, call: CallAudio, mode: str, name: str, warnings: list[str]) -> list[_Track]:
        if mode == "mix" or call.channels == 1:
            if mode == "split":
                warnings.append(f"{name}: mono audio, nothing to split; transcribed as one channel")
            return [_Track(source, 0, "", call.mono())]
        if call.channels != 2:
            raise AudioError(f"{name}: {call.channels} channels; split takes two-channel calls "
                             f"({' / '.join(self.params.channel_roles)}), use channels=mix")
        return [_Track(source, c, self.params.channel_roles[c], call.samples[c]) for c in range(2)]


def _as_call(audio: AudioSource, name: str, max_audio_s: float) -> CallAudio:
    if isinstance(audio, CallAudio):
        return audio
    if isinstance(audio, np.ndarray):
        samples = np.atleast_2d(np.asarray(audio, dtype=np.float32))
        if samples.shape[1] == 0:
            raise AudioError(f"{name}: no samples")
        return CallAudio(samples, TARGET_RATE, "pcm_f32le")
    return read_call(audio if isinstance(audio, bytes) else Path(audio), name, max_audio_s)
