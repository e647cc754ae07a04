"""``Transcriber``: whole calls in, a timeline of segments out, in any runtime.

Each track (one channel of one input) is cut into speech pieces by the VAD; consecutive pieces of a
track share a 30-s window (``zhasr.transcribe.packing``), decoded once, its text given back to the
pieces by word times. A window whose text cannot be placed, or that the guard does not pass clean,
is decoded again piece by piece. Windows from every input of a ``transcribe_many`` call are decoded
together, longest first, a batch of ``batch_size`` for each of the runtime's workers at a time
(``windows_per_call``), which is how one worker serves many requests at once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import numpy as np

import zhasr.transcribe.guard as guard
import zhasr.transcribe.packing as packing
from zhasr.config import ChannelMode, ModelParams, TranscribeParams
from zhasr.data.audio import TARGET_RATE, AudioError
from zhasr.model.decode import DecodeOptions, Transcript
from zhasr.transcribe.media import CallAudio, read_call
from zhasr.transcribe.packing import Window
from zhasr.transcribe.records import Removed, Segment, Timings, Transcription, Word
from zhasr.transcribe.vad import Piece, speech_spans

# A path or the file's bytes, or samples already at 16 kHz: (n,) mono or (channels, n).
AudioSource = Path | str | bytes | np.ndarray | CallAudio


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
    """Inputs read, cut into speech pieces and packed into windows, ready to decode; times are
    ``perf_counter`` marks."""

    calls: list[CallAudio]
    names: list[str]
    mode: str  # mix | split
    warnings: list[list[str]]  # per input, appended to while assembling
    pieces: list[Piece]
    windows: list[Window]  # every piece in exactly one
    tracks: dict[tuple[int, int], _Track]  # (source, channel) -> track
    started: float
    decoded_at: float
    vad_at: float
    unplaced: set[int] = field(default_factory=set)  # windows decoded again piece by piece

    def clip(self, k: int) -> np.ndarray:
        """Samples of piece ``k``, (n,) float32 at 16 kHz."""
        piece = self.pieces[k]
        return self._samples(piece)[piece.start : piece.end]

    def window_clip(self, w: int) -> np.ndarray:
        """Samples of window ``w``, (n,) float32 at 16 kHz: its pieces with the pauses between them."""
        return packing.window_audio(self.windows[w], self.pieces, self._samples)

    def window_speech_s(self, w: int) -> float:
        return sum(self.pieces[k].end - self.pieces[k].start for k in self.windows[w].pieces) / TARGET_RATE

    def _samples(self, piece: Piece) -> np.ndarray:
        return self.tracks[(piece.source, piece.channel)].samples

    @property
    def speech_s(self) -> float:
        return sum(p.end - p.start for p in self.pieces) / TARGET_RATE


class Transcriber:
    """One model in one runtime with the engine's rules. Thread-compatible, not thread-safe."""

    def __init__(self, runtime, params: TranscribeParams, language: str = ModelParams.language, identity: str = ""):
        self.runtime, self.params, self.language, self.identity = runtime, params, language, identity

    @classmethod
    def open(cls, model: Path, params: TranscribeParams, *, language: str = ModelParams.language, task: str = ModelParams.task,
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
                   hotwords: Sequence[str] | None = None, words: bool = False,
                   progress: Callable[[float, float], None] | None = None) -> Transcription:
        """Transcribe one input; raises AudioError (naming ``name``) for input that cannot be used."""
        return self.transcribe_many([audio], channels=channels, names=[name] if name else None, hotwords=hotwords,
                                    words=words, progress=progress)[0]

    def transcribe_many(self, audios: Sequence[AudioSource], *, channels: str | None = None,
                        names: Sequence[str] | None = None, hotwords: Sequence[str] | None = None,
                        words: bool = False, progress: Callable[[float, float], None] | None = None,
                        across_inputs: bool = False) -> list[Transcription]:
        """One Transcription per input, all windows decoded together (longest first, so a batch holds
        windows of similar length). ``hotwords``: the prompt's terms (None: ``transcribe.hotwords``);
        ``across_inputs``: pieces of different inputs may share a window (see ``prepare``).
        ``progress(done_s, total_s)`` counts seconds of speech decoded."""
        plan = self.prepare(audios, channels=channels, names=names, across_inputs=across_inputs)
        prompt = self.prompt(hotwords=hotwords)
        order = sorted(range(len(plan.windows)), key=lambda w: -plan.windows[w].length)
        results: dict[int, Decoded] = {}
        done = 0.0
        for b in range(0, len(order), self.windows_per_call):
            batch = order[b : b + self.windows_per_call]
            for decoded in self.decode_windows([(plan, w) for w in batch], prompt, words):
                results.update(decoded)
            done += sum(plan.window_speech_s(w) for w in batch)
            if progress:
                progress(done, plan.speech_s)
        return self.finish(plan, results, words, prompt)

    @property
    def windows_per_call(self) -> int:
        """Windows handed to ``decode_windows`` at once: a batch for each of the runtime's workers."""
        return self.params.batch_size * getattr(self.runtime, "workers", 1)

    def prepare(self, audios: Sequence[AudioSource], *, channels: str | None = None,
                names: Sequence[str] | None = None, across_inputs: bool = False) -> Plan:
        """Read every input, cut its tracks into speech pieces and pack them into windows; raises
        AudioError naming the input. Pieces of different tracks never share a window, except with
        ``across_inputs`` (the same channel of different inputs, for scoring many short clips)."""
        mode = channels or self.params.channels
        if mode not in get_args(ChannelMode):
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
        per_input = [sum(t.source == i for t in tracks) for i in range(len(calls))]
        with ThreadPoolExecutor(max(1, min(self.params.threads, len(tracks)))) as pool:  # a track's VAD is mostly one thread's work
            per_track = list(pool.map(lambda t: self._pieces(t, per_input[t.source] == 1), tracks))
        pieces = [piece for track_pieces in per_track for piece in track_pieces]
        windows = packing.pack(pieces, self.params.pack_window_s, self.params.pack_gap_s, self.params.pack_pieces,
                               key=(lambda p: p.channel) if across_inputs else (lambda p: (p.source, p.channel)))
        return Plan(calls, names, mode, warnings, pieces, windows, {(t.source, t.channel): t for t in tracks},
                    started, decoded_at, time.perf_counter())

    def prompt(self, text: str | None = None, hotwords: Sequence[str] | None = None) -> str | None:
        """The decoder prompt, only when asked for: ``text`` (a caller's context) followed by ``hotwords``
        (None: ``transcribe.hotwords``, empty by default)."""
        terms = list(self.params.hotwords) if hotwords is None else list(hotwords)
        return " ".join(p for p in (text, " ".join(terms)) if p) or None

    def decode(self, clips: list[np.ndarray], prompt: str | None, words: bool = False) -> list[Decoded]:
        """(Transcript, words) per clip, each decoded alone; words are empty where not asked for or the
        runtime cannot align."""
        transcripts = self.runtime.decode(clips, prompt)
        timed: list[tuple[Word, ...]] = [()] * len(clips)
        if words and hasattr(self.runtime, "align"):  # the final text is aligned, so words spell the segment
            judged = [guard.judge(t, self.params, prompt) for t in transcripts]
            timed = self.runtime.align(clips, ["" if reason else text for text, _, reason in judged])
        return list(zip(transcripts, timed))

    def decode_windows(self, items: Sequence[tuple[Plan, int]], prompt: str | None,
                       words: bool = False) -> list[dict[int, Decoded]]:
        """``{piece index: Decoded}`` for each ``(plan, window index)``. A window of one piece is decoded as
        a clip; a window of several with Whisper's timestamp tokens (the way it was pretrained on 30-s
        windows: without them it tends to stop after the first utterance), its text given to the pieces
        by the timestamped segments, or by word alignment where a segment spans two pieces or words are
        asked for (each word held inside its timestamped segment: ``packing.within_segments``). A window the
        guard does not pass clean (removed, or looped: a retry with repeated n-grams banned over a whole
        window also bans the phrases a call says twice) is decoded again piece by piece; of a placed window,
        only the pieces left without text are (the VAD heard speech there: alone it gets its own chance).
        Such windows are marked in ``plan.unplaced``."""
        windows = [plan.windows[w] for plan, w in items]
        clips = [plan.window_clip(w) for plan, w in items]
        transcripts = self.runtime.decode(clips, prompt, timestamps=[len(window.pieces) > 1 for window in windows])
        judged = [guard.judge(t, self.params, prompt) for t in transcripts]
        out: list[dict[int, Decoded]] = [{} for _ in items]
        aligned = hasattr(self.runtime, "align")
        to_align = []
        for i, (window, t, (text, flags, reason)) in enumerate(zip(windows, transcripts, judged)):
            if len(window.pieces) == 1:
                out[i][window.pieces[0]] = (t, ())
                if words and aligned and text and not reason:
                    to_align.append(i)
            elif reason or flags:
                continue  # every piece decoded alone below
            elif not (words and aligned) and (placed := self._place(items[i], t.timed, t.text, t)) is not None:
                out[i] = placed
            elif aligned:
                to_align.append(i)
        timed = self.runtime.align([clips[i] for i in to_align], [judged[i][0] for i in to_align]) if to_align else []
        for i, units in zip(to_align, timed):
            if len(windows[i].pieces) == 1:
                out[i][windows[i].pieces[0]] = (transcripts[i], units)
            elif units:
                held = packing.within_segments(units, judged[i][0], transcripts[i].timed)
                if (placed := self._place(items[i], held, judged[i][0], transcripts[i], words)) is not None:
                    out[i] = placed
        singles = []
        for i, (plan, w) in enumerate(items):
            missing = [k for k in windows[i].pieces if k not in out[i]]
            if missing:
                plan.unplaced.add(w)
                singles += [(i, plan, k) for k in missing]
        decoded = self.decode([plan.clip(k) for _, plan, k in singles], prompt, words) if singles else []
        for (i, _, k), d in zip(singles, decoded):
            out[i][k] = d
        return out

    @staticmethod
    def _place(item: tuple[Plan, int], units, text: str, window: Transcript,
               words: bool = False) -> dict[int, Decoded] | None:
        """The window's timed ``units`` (word timings, or the runtime's ``(start, end, text)`` segments), which
        spell ``text``, given to its pieces: the pieces that got text (a piece left without any is not in the
        answer), or None when a unit lies over two pieces and nobody can tell whose text it is."""
        plan, w = item
        units = [u if isinstance(u, Word) else Word(start=u[0], end=u[1], word=u[2]) for u in units]
        placed = packing.place(plan.windows[w], plan.pieces, units)
        if placed is None:
            return None
        texts = packing.spelled(text, placed) or [packing.join_words(piece_units) for piece_units in placed]
        return {k: (_piece_transcript(piece_text, window), piece_units if words else ())
                for k, piece_units, piece_text in zip(plan.windows[w].pieces, placed, texts) if piece_text.strip()}

    def segment(self, plan: Plan, k: int, decoded: Decoded, prompt: str | None = None) -> Segment | Removed:
        """Piece ``k`` of ``plan`` after the guard: a Segment (``id`` -1 until the timeline is built) or,
        when the guard removes it, a Removed with the reason."""
        piece, (t, words) = plan.pieces[k], decoded
        text, flags, reason = guard.judge(t, self.params, prompt)
        start, end = round(piece.start_s, 3), round(piece.end_s, 3)
        if reason:
            return Removed(start, end, piece.channel, reason, text)
        return Segment(id=-1, start=start, end=end, text=text, channel=piece.channel,
                       speaker=plan.tracks[(piece.source, piece.channel)].speaker, avg_logprob=t.avg_logprob,
                       no_speech_prob=t.no_speech_prob, compression_ratio=guard.ratio(text), flags=flags,
                       error=t.error, words=tuple(dataclasses.replace(w, start=round(w.start + start, 3),
                                                                      end=round(w.end + start, 3)) for w in words))

    def finish(self, plan: Plan, results: Mapping[int, Decoded], words: bool = False,
               prompt: str | None = None) -> list[Transcription]:
        """One Transcription per input of ``plan`` from the decoded pieces ``{piece index: Decoded}``."""
        finished = time.perf_counter()
        total = max(1, sum(p.end - p.start for p in plan.pieces))
        out = []
        for i, call in enumerate(plan.calls):
            mine = sorted((k for k in range(len(plan.pieces)) if plan.pieces[k].source == i),
                          key=lambda k: (plan.pieces[k].start, plan.pieces[k].channel))
            share = sum(plan.pieces[k].end - plan.pieces[k].start for k in mine) / total
            windows = [w for w, window in enumerate(plan.windows) if any(plan.pieces[k].source == i for k in window.pieces)]
            timings = Timings(decode_audio_s=round((plan.decoded_at - plan.started) / len(plan.calls), 3),
                              vad_s=round((plan.vad_at - plan.decoded_at) / len(plan.calls), 3),
                              inference_s=round((finished - plan.vad_at) * share, 3),
                              total_s=round(finished - plan.started, 3), windows=len(windows),
                              unplaced=sum(w in plan.unplaced for w in windows))
            judged = [self.segment(plan, k, results[k], prompt) for k in mine]
            segments = [x for x in judged if isinstance(x, Segment)]
            if self.params.turn_pause_s > 0:
                segments = merge_turns(segments, self._parties(plan.mode, call, segments), self.params.turn_pause_s,
                                       self.params.max_piece_s)
            segments = [dataclasses.replace(s, id=n) for n, s in enumerate(segments)]
            warnings = plan.warnings[i]
            if any(s.error for s in segments):
                warnings.append(f"{sum(1 for s in segments if s.error)} piece(s) failed in the runtime; "
                                "flagged 'failed'")
            if words and not hasattr(self.runtime, "align"):
                warnings.append(f"word timestamps: the {self.runtime.name} runtime gives none")
            out.append(Transcription(text=" ".join(s.text for s in segments if s.text), segments=tuple(segments),
                                     duration_s=round(call.duration_s, 3), language=self.language,
                                     model=self.identity, runtime=self.runtime.name,
                                     channels="split" if plan.mode == "split" and call.channels == 2 else "mix",
                                     removed=tuple(x for x in judged if isinstance(x, Removed)),
                                     warnings=tuple(warnings), timings=timings))
        return out

    @staticmethod
    def _parties(mode: str, call: CallAudio, segments: Sequence[Segment]) -> list[int | None]:
        """Who says each segment, for ``merge_turns``: its channel in split mode; mixed, the channel 6 dB louder
        over it, where both channels are the louder one somewhere (a call stored with one channel dead, or
        the same audio twice, does not tell its parties apart: None for all)."""
        if mode == "split" and call.channels == 2:  # a mono call asked to split is transcribed as one track
            return [s.channel for s in segments]
        parties = [call.louder_channel(s.start, s.end) for s in segments]
        return parties if len({p for p in parties if p is not None}) > 1 else [None] * len(segments)

    def _pieces(self, track: _Track, only_track: bool) -> list[Piece]:
        """The VAD's speech pieces of ``track``; the whole track as one piece when it is its input's only
        track, holds speech and is at most ``whole_clip_s`` long (a clip is decoded whole, never cut at
        its pauses)."""
        spans = speech_spans(track.samples, self.params, one_speaker=bool(track.speaker))
        if spans and only_track and len(track.samples) <= self.params.whole_clip_s * TARGET_RATE:
            spans = [(0, len(track.samples))]
        return [Piece(track.source, track.channel, start, end) for start, end in spans]

    def _tracks(self, source: int, call: CallAudio, mode: str, name: str, warnings: list[str]) -> list[_Track]:
        if mode == "mix" or call.channels == 1:
            if mode == "split":
                warnings.append(f"{name}: mono audio, nothing to split; transcribed as one channel")
            return [_Track(source, 0, "", call.mono())]
        if call.channels != 2:
            raise AudioError(f"{name}: {call.channels} channels; split takes two-channel calls "
                             f"({' / '.join(self.params.channel_roles)}), use channels=mix")
        return [_Track(source, c, self.params.channel_roles[c], call.samples[c]) for c in range(2)]


def merge_turns(segments: Sequence[Segment], parties: Sequence[int | None], pause_s: float,
                max_s: float) -> list[Segment]:
    """Segments of a call (timeline order) as turns: consecutive segments of one party (``parties[i]``: the
    channel that carries segment i, None where nobody can tell), nobody else starting in between, at most
    ``pause_s`` apart and together at most ``max_s`` long, become one segment (texts and words joined, the
    lower P(no speech), the flags of both)."""
    out: list[Segment] = []
    last_party = None
    for s, party in zip(segments, parties, strict=True):
        last = out[-1] if out else None
        if (last is None or party is None or party != last_party or s.start - last.end > pause_s
                or s.end - last.start > max_s):
            out.append(s)
            last_party = party
            continue
        text = packing.join_words([Word(0, 0, last.text), Word(0, 0, s.text)])
        logprobs = [(x.avg_logprob, x.end - x.start) for x in (last, s) if x.avg_logprob is not None]
        no_speech = [x.no_speech_prob for x in (last, s) if x.no_speech_prob is not None]
        out[-1] = dataclasses.replace(
            last, end=s.end, text=text, compression_ratio=guard.ratio(text), words=last.words + s.words,
            avg_logprob=round(sum(p * d for p, d in logprobs) / sum(d for _, d in logprobs), 4) if logprobs else None,
            no_speech_prob=min(no_speech) if no_speech else None, flags=tuple(dict.fromkeys(last.flags + s.flags)),
            error=last.error or s.error)
    return out


def _piece_transcript(text: str, window: Transcript) -> Transcript:
    """A piece's share of a placed window: its text, with the window's mean log-probability and
    P(no speech). Not its words' probabilities where word times were asked: the guard would judge a piece
    by whether its words were aligned (5 of 600 sentences of the redaction bench removed as no speech
    with word times, docs/numbers-measured.md)."""
    return Transcript(text, [], hit_cap=False, looped=False, avg_logprob=window.avg_logprob,
                      no_speech_prob=window.no_speech_prob)


def _as_call(audio: AudioSource, name: str, max_audio_s: float) -> CallAudio:
    if isinstance(audio, CallAudio):
        return audio
    if isinstance(audio, np.ndarray):
        samples = np.atleast_2d(np.asarray(audio, dtype=np.float32))
        if samples.shape[1] == 0:
            raise AudioError(f"{name}: no samples")
        return CallAudio(np.clip(np.nan_to_num(samples), -1.0, 1.0), TARGET_RATE, "pcm_f32le")  # as read_call does
    return read_call(audio if isinstance(audio, bytes) else Path(audio), name, max_audio_s)
