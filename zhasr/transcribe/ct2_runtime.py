"""The CTranslate2 runtime: a ct2 export folder run with faster-whisper's model, batched, offline.

Pieces are decoded the way faster-whisper's ``BatchedInferencePipeline`` decodes its chunks
(one encoder call and one ``generate`` per batch), with the engine's guard: the token cap by
duration, a retry with repeated n-grams banned for pieces that loop, then the collapse.

On a CPU with ``transcribe.parallel_batches`` several batches are decoded side by side, one thread
each (a second copy of the model with a worker a thread): whisper-base's matrices are too small to keep
two threads busy on one batch. A lone batch still runs on all threads. Measured on 2 cores (int8,
bench/transcribe.py's real call): its 16 windows as two batches of 8 in 9.0 s side by side, 12.7 s one
after the other on both threads; a lone 5-10 s clip takes 0.74 s on both threads, 0.92 s on one.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from zhasr.data.text import to_simplified
from zhasr.model.decode import DecodeOptions, Transcript, is_loop, timestamp_flags, timestamp_segments, token_cap
from zhasr.model.training_windows import DECODER_POSITIONS
from zhasr.transcribe.allocator import keep_freed_memory
from zhasr.transcribe.records import Word
from zhasr.transcribe.words import split_on_characters, timed_words


class Ct2Runtime:
    name = "ct2"

    def __init__(self, model_dir: Path, options: DecodeOptions, threads: int = 2, device: str = "cpu",
                 encoder: Callable[[np.ndarray], np.ndarray] | None = None):
        """``encoder``: (batch, n_mels, 3000) features -> (batch, 1500, d_model) float32 states, in place of
        CTranslate2's encoder on a CPU (zhasr.model.shared_encoder.SharedLowerEncoder); None: CTranslate2's.
        ``workers``: batches decoded side by side (``threads`` on a CPU with ``parallel_batches``, else 1)."""
        import ctranslate2
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        if not (Path(model_dir) / "model.bin").is_file():
            raise FileNotFoundError(f"{model_dir}: not a CTranslate2 export (no model.bin)")
        if device == "cpu":
            keep_freed_memory()
        self.model = WhisperModel(str(model_dir), device=device, compute_type="default", cpu_threads=threads,
                                  local_files_only=True)
        self.workers = threads if device == "cpu" and options.settings.parallel_batches and threads > 1 else 1
        self.side_by_side = (ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="default",
                                                        inter_threads=self.workers, intra_threads=1)
                             if self.workers > 1 else None)
        self.tokenizer = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual, task=options.task,
                                   language=options.language)
        self.suppress = get_suppressed_tokens(self.tokenizer, [-1])
        self.options = options
        self.encoder = encoder
        self._encoder_lock = threading.Lock()  # the given encoder runs one batch at a time, on all threads
        self._encoded: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id(clip) -> (clip, (1500, d) states)

    def _features(self, clips: list[np.ndarray]) -> np.ndarray:
        from faster_whisper.audio import pad_or_trim

        return np.stack([pad_or_trim(self.model.feature_extractor(c)[..., :-1]) for c in clips])

    def _encode(self, clips: list[np.ndarray], whisper):
        """(batch, 1500, d_model) encoder output of the clips, a CTranslate2 StorageView on the model's device;
        ``whisper``: the CTranslate2 model that runs it (``self.model.model`` or ``self.side_by_side``).

        On a CPU one window at a time: ~12% faster a window than a batch of 8 (its activations stay in
        cache); the batch is put together for the decoder."""
        import ctranslate2

        features = self._features(clips)
        if whisper.device != "cpu":
            return self.model.encode(features)
        if self.encoder is not None:
            with self._encoder_lock:
                states = self.encoder(features)
            return ctranslate2.StorageView.from_array(np.ascontiguousarray(states, np.float32))
        return ctranslate2.StorageView.from_array(np.concatenate(
            [np.asarray(whisper.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features[i : i + 1]))))
             for i in range(len(clips))]))

    def _rows(self, encoded, rows: list[int]):
        """The encoder output of ``rows`` only: a retry decodes again without running the encoder again."""
        import ctranslate2

        host = np.asarray(encoded.to_device(ctranslate2.Device.cpu) if encoded.device != "cpu" else encoded)
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(host[rows])).to_device(
            ctranslate2.Device.cuda if encoded.device == "cuda" else ctranslate2.Device.cpu)

    def _generate(self, whisper, encoded, clips: list[np.ndarray], prompt: str | None, no_repeat_ngram: int = 0,
                  timestamps: bool = False) -> list[Transcript]:
        tokens = self.model.get_prompt(self.tokenizer, [], without_timestamps=not timestamps, hotwords=prompt)
        cap = token_cap(max(len(c) for c in clips) / 16000, self.options, timestamps)
        # CTranslate2 decodes min(max_length / 2, max_length - len(tokens) + 1) new tokens (Whisper keeps half
        # of its positions for a prompt): the prompt plus the cap cut dense windows at ~114 tokens
        max_length = min(DECODER_POSITIONS, max(2 * cap, len(tokens) - 1 + cap))
        cap = min(cap, max_length // 2, max_length - len(tokens) + 1)  # a long prompt leaves fewer positions
        results = whisper.generate(
            encoded, [list(tokens) for _ in range(encoded.shape[0])], beam_size=self.options.settings.num_beams,
            max_length=max_length, return_scores=True, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=self.suppress, no_repeat_ngram_size=no_repeat_ngram,
        )
        out = []
        for r, clip in zip(results, clips):
            ids, timed = r.sequences_ids[0], ()
            if timestamps:
                text_ids, timed = timestamp_segments(ids, self.tokenizer.timestamp_begin, self.tokenizer.decode,
                                                     len(clip) / 16000)
                timed = tuple((s, e, to_simplified(t.strip())) for s, e, t in timed)
            text = to_simplified(self.tokenizer.decode(text_ids if timestamps else ids).strip())
            out.append(Transcript(text=text, tokens=ids, hit_cap=len(ids) >= cap, looped=False,
                                  avg_logprob=r.scores[0] * len(ids) / (len(ids) + 1),  # faster-whisper's mean
                                  no_speech_prob=r.no_speech_prob, timed=timed))
        return out

    def _keep(self, batch: list[np.ndarray], encoded) -> None:
        """Keep the encoder output of the last ``decode`` call's clips for ``align``: aligning a decoded
        window then costs a decoder pass, not a second encoder pass."""
        import ctranslate2

        host = np.asarray(encoded.to_device(ctranslate2.Device.cpu) if encoded.device != "cpu" else encoded)
        self._encoded.update((id(c), (c, np.array(row))) for c, row in zip(batch, host))

    def decode(self, clips: list[np.ndarray], prompt: str | None = None,
               timestamps: bool | Sequence[bool] = False) -> list[Transcript]:
        """One Transcript per (n,) 16 kHz clip of at most 30 s, in order; a failing batch is marked, not raised.
        ``timestamps`` (for all clips, or one flag a clip): decoded with Whisper's timestamp tokens, the
        segments in ``Transcript.timed``. A batch holds at most ``batch_size`` clips of one flag; batches
        side by side start longest first, so that the workers end together; a lone batch runs on all
        threads."""
        flags = timestamp_flags(timestamps, len(clips))
        self._encoded.clear()
        jobs = [(flag, rows) for flag in (False, True)
                for rows in self._batches([i for i, f in enumerate(flags) if f == flag])]
        if self.side_by_side is None or len(jobs) <= 1:
            decoded = [self._decode_batch(self.model.model, [clips[i] for i in rows], prompt, flag)
                       for flag, rows in jobs]
        else:
            jobs.sort(key=lambda job: -sum(len(clips[i]) for i in job[1]))
            with ThreadPoolExecutor(self.workers, thread_name_prefix="zhasr-ct2") as pool:
                decoded = list(pool.map(lambda job: self._decode_batch(self.side_by_side, [clips[i] for i in job[1]],
                                                                       prompt, job[0]), jobs))
        by_clip = dict(zip((i for _, rows in jobs for i in rows), (t for batch in decoded for t in batch)))
        return [by_clip[i] for i in range(len(clips))]

    def _batches(self, rows: list[int]) -> list[list[int]]:
        """``rows`` (clip indices, callers give them longest first) in batches of at most ``batch_size``: in
        order (clips of similar length together) for one worker; for several, at least one batch a worker,
        the clips dealt to them in turn so that the batches take about as long."""
        size = self.options.settings.batch_size
        if self.side_by_side is None:
            return [rows[start : start + size] for start in range(0, len(rows), size)]
        count = min(len(rows), max(self.workers, math.ceil(len(rows) / size)))
        return [rows[b::count] for b in range(count)]

    def _decode_batch(self, whisper, batch: list[np.ndarray], prompt: str | None, timestamps: bool) -> list[Transcript]:
        try:
            encoded = self._encode(batch, whisper)
            self._keep(batch, encoded)
            first = self._generate(whisper, encoded, batch, prompt, timestamps=timestamps)
            suspect = [i for i, t in enumerate(first) if t.hit_cap or is_loop(t.text, self.options)]
            again = {}
            if suspect and self.options.settings.retry_no_repeat_ngram > 0:
                again = dict(zip(suspect, self._generate(
                    whisper, self._rows(encoded, suspect), [batch[i] for i in suspect], prompt,
                    self.options.settings.retry_no_repeat_ngram, timestamps)))
            return [replace(again.get(i, t), looped=i in suspect, retried=i in again) for i, t in enumerate(first)]
        except (RuntimeError, ValueError) as exc:
            return [Transcript("", [], False, False, error=f"ct2: {exc}")] * len(batch)

    def align(self, clips: list[np.ndarray], texts: list[str]) -> list[tuple[Word, ...]]:
        """Word timings (seconds from each clip's start) of each clip's final text: CTranslate2's alignment
        heads and DTW, one clip at a time (3x faster than a batch of 8 on a CPU), reusing the encoder output
        of clips just decoded."""
        import ctranslate2

        out: list[tuple[Word, ...]] = []
        for clip, words in zip(clips, texts):
            text = self.tokenizer.encode(" " + words) if words else []
            if not text:
                out.append(())
                continue
            kept = self._encoded.get(id(clip))
            if kept is not None and kept[0] is clip:
                encoded = ctranslate2.StorageView.from_array(kept[1][None])
                if self.model.model.device != "cpu":
                    encoded = encoded.to_device(ctranslate2.Device.cuda)
            else:
                encoded = self._encode([clip], self.model.model)
            frames = max(2, min(3000, int(np.ceil(len(clip) / 160))))  # mel frames; the encoder halves them
            result = self.model.model.align(encoded, self.tokenizer.sot_sequence, [text], frames,
                                            median_filter_width=7)[0]
            path = (np.array([a for a, _ in result.alignments]), np.array([b for _, b in result.alignments]))
            groups = split_on_characters(text, self.tokenizer.decode)
            out.append(timed_words(groups, *path, result.text_token_probs, len(clip) / 16000))
        return out
