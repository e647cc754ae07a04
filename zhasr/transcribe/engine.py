"""``Transcriber``: whole calls in, a timeline of segments out, in any runtime.

Pieces from every input, channel and call of a ``transcribe_many`` call are decoded together in
batches of ``batch_size`` (longest first, so a batch holds pieces of similar length), which is
how one worker serves many requests at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zhasr.audio import TARGET_RATE, AudioError
from zhasr.config import TranscribeParams
from zhasr.transcribe import guard
from zhasr.transcribe.media import CallAudio, read_call
from zhasr.transcribe.records import Removed, Segment, Timings, Transcription
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
        options = guard.decode_options(params, language, task)
        if kind == "ct2":
            from zhasr.transcribe.ct2_runtime import Ct2Runtime

            engine = Ct2Runtime(path, options, params.threads, device="cuda" if str(device) == "cuda" else "cpu")
        elif kind == "ggml":
            from zhasr.transcribe.ggml_runtime import GgmlRuntime

            engine = GgmlRuntime(path, options, params)
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
                   use_hotwords: bool | None = None,
                   progress: Callable[[float, float], None] | None = None) -> Transcription:
        """Transcribe one input; raises AudioError (naming ``name``) for input that cannot be used."""
        return self.transcribe_many([audio], channels=channels, names=[name] if name else None,
                                    use_hotwords=use_hotwords, progress=progress)[0]

    def transcribe_many(self, audios: Sequence[AudioSource], *, channels: str | None = None,
                        names: Sequence[str] | None = None, use_hotwords: bool | None = None,
                        progress: Callable[[float, float], None] | None = None) -> list[Transcription]:
        """One Transcription per input, all pieces decoded together. ``progress(done_s, total_s)``
        counts seconds of speech decoded."""
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
        samples = {(t.source, t.channel): t.samples for t in tracks}
        speakers = {(t.source, t.channel): t.speaker for t in tracks}
        vad_at = time.perf_counter()
        order = sorted(range(len(pieces)), key=lambda k: pieces[k].start - pieces[k].end)
        results: dict[int, object] = {}
        total = sum(p.end - p.start for p in pieces) / TARGET_RATE
        done = 0.0
        hot = self.params.use_hotwords if use_hotwords is None else use_hotwords
        prompt = " ".join(self.hotwords) if hot and self.hotwords else None
        size = self.params.batch_size
        for b in range(0, len(order), size):
            batch = order[b : b + size]
            clips = [samples[(pieces[k].source, pieces[k].channel)][pieces[k].start : pieces[k].end] for k in batch]
            for k, t in zip(batch, self.runtime.decode(clips, prompt)):
                results[k] = t
            done += sum(len(c) for c in clips) / TARGET_RATE
            if progress:
                progress(done, total)
        finished = time.perf_counter()
        out = []
        for i, call in enumerate(calls):
            mine = [k for k in range(len(pieces)) if pieces[k].source == i]
            share = sum(pieces[k].end - pieces[k].start for k in mine) / max(1, total * TARGET_RATE)
            timings = Timings(decode_audio_s=round((decoded_at - started) / len(calls), 3),
                              vad_s=round((vad_at - decoded_at) / len(calls), 3),
                              inference_s=round((finished - vad_at) * share, 3),
                              total_s=round(finished - started, 3))
            out.append(self._assemble(call, mode, [(pieces[k], results[k]) for k in mine], speakers, warnings[i],
                                      timings))
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

    def _assemble(self, call: CallAudio, mode: str, decoded: list, speakers: dict, warnings: list[str],
                  timings: Timings) -> Transcription:
        segments, removed = [], []
        for piece, t in sorted(decoded, key=lambda pt: (pt[0].start, pt[0].channel)):
            text, flags, reason = guard.judge(t, self.params)
            start, end = round(piece.start_s, 3), round(piece.end_s, 3)
            if reason:
                removed.append(Removed(start, end, piece.channel, reason, text))
                continue
            segments.append(Segment(id=len(segments), start=start, end=end, text=text, channel=piece.channel,
                                    speaker=speakers[(piece.source, piece.channel)], avg_logprob=t.avg_logprob,
                                    no_speech_prob=t.no_speech_prob, compression_ratio=guard.ratio(text),
                                    flags=flags, error=t.error))
        if any(s.error for s in segments):
            warnings.append(f"{sum(1 for s in segments if s.error)} piece(s) failed in the runtime; flagged 'failed'")
        return Transcription(text=" ".join(s.text for s in segments if s.text), segments=tuple(segments),
                             duration_s=round(call.duration_s, 3), language=self.language, model=self.identity,
                             runtime=self.runtime.name, channels=mode, removed=tuple(removed),
                             warnings=tuple(warnings), timings=timings)


def _as_call(audio: AudioSource, name: str, max_audio_s: float) -> CallAudio:
    if isinstance(audio, CallAudio):
        return audio
    if isinstance(audio, np.ndarray):
        samples = np.atleast_2d(np.asarray(audio, dtype=np.float32))
        if samples.shape[1] == 0:
            raise AudioError(f"{name}: no samples")
        return CallAudio(samples, TARGET_RATE, "pcm_f32le")
    return read_call(audio if isinstance(audio, bytes) else Path(audio), name, max_audio_s)
