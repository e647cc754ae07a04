"""The CTranslate2 runtime: a ct2 export folder run with faster-whisper's model, batched, offline.

Pieces are decoded the way faster-whisper's ``BatchedInferencePipeline`` decodes its chunks
(one encoder call and one ``generate`` per batch), with the engine's guard: the token cap by
duration, a retry with repeated n-grams banned for pieces that loop, then the collapse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from zhasr.data.text import to_simplified
from zhasr.model.decode import DecodeOptions, Transcript, is_loop, token_cap
from zhasr.transcribe.records import Word
from zhasr.transcribe.words import split_on_characters, timed_words


class Ct2Runtime:
    name = "ct2"

    def __init__(self, model_dir: Path, options: DecodeOptions, threads: int = 2, device: str = "cpu",
                 encoder: Callable[[np.ndarray], np.ndarray] | None = None):
        """``encoder``: (batch, n_mels, 3000) features -> (batch, 1500, d_model) float32 states, in place of
        CTranslate2's encoder on a CPU (zhasr.model.shared_encoder.SharedLowerEncoder); None: CTranslate2's."""
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        if not (Path(model_dir) / "model.bin").is_file():
            raise FileNotFoundError(f"{model_dir}: not a CTranslate2 export (no model.bin)")
        self.model = WhisperModel(str(model_dir), device=device, compute_type="default", cpu_threads=threads,
                                  local_files_only=True)
        self.tokenizer = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual, task=options.task,
                                   language=options.language)
        self.suppress = get_suppressed_tokens(self.tokenizer, [-1])
        self.options = options
        self.encoder = encoder

    def _features(self, clips: list[np.ndarray]) -> np.ndarray:
        from faster_whisper.audio import pad_or_trim

        return np.stack([pad_or_trim(self.model.feature_extractor(c)[..., :-1]) for c in clips])

    def _encode(self, clips: list[np.ndarray]):
        """(batch, 1500, d_model) encoder output of the clips, a CTranslate2 StorageView on the model's device.

        On a CPU one window at a time: ~12% faster a window than a batch of 8 (its activations stay in
        cache); the batch is put together for the decoder."""
        import ctranslate2

        features = self._features(clips)
        if self.model.model.device != "cpu":
            return self.model.encode(features)
        if self.encoder is not None:
            return ctranslate2.StorageView.from_array(np.ascontiguousarray(self.encoder(features), np.float32))
        return ctranslate2.StorageView.from_array(np.concatenate(
            [np.asarray(self.model.encode(features[i : i + 1])) for i in range(len(clips))]))

    def _rows(self, encoded, rows: list[int]):
        """The encoder output of ``rows`` only: a retry decodes again without running the encoder again."""
        import ctranslate2

        host = np.asarray(encoded.to_device(ctranslate2.Device.cpu) if encoded.device != "cpu" else encoded)
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(host[rows])).to_device(
            ctranslate2.Device.cuda if encoded.device == "cuda" else ctranslate2.Device.cpu)

    def _generate(self, encoded, max_samples: int, prompt: str | None, no_repeat_ngram: int = 0) -> list[Transcript]:
        tokens = self.model.get_prompt(self.tokenizer, [], without_timestamps=True, hotwords=prompt)
        cap = token_cap(max_samples / 16000, self.options)
        results = self.model.model.generate(
            encoded, [list(tokens) for _ in range(encoded.shape[0])], beam_size=self.options.settings.num_beams,
            max_length=len(tokens) + cap, return_scores=True, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=self.suppress, no_repeat_ngram_size=no_repeat_ngram,
        )
        out = []
        for r in results:
            ids = r.sequences_ids[0]
            text = to_simplified(self.tokenizer.decode(ids).strip())
            out.append(Transcript(text=text, tokens=ids, hit_cap=len(ids) >= cap, looped=False,
                                  avg_logprob=r.scores[0] * len(ids) / (len(ids) + 1),  # faster-whisper's mean
                                  no_speech_prob=r.no_speech_prob))
        return out

    def decode(self, clips: list[np.ndarray], prompt: str | None = None) -> list[Transcript]:
        """One Transcript per (n,) 16 kHz clip of at most 30 s, in order; a failing batch is marked, not raised."""
        out: list[Transcript] = []
        size = self.options.settings.batch_size
        for start in range(0, len(clips), size):
            batch = clips[start : start + size]
            try:
                encoded = self._encode(batch)
                first = self._generate(encoded, max(len(c) for c in batch), prompt)
                suspect = [i for i, t in enumerate(first) if t.hit_cap or is_loop(t.text, self.options)]
                again = {}
                if suspect and self.options.settings.retry_no_repeat_ngram > 0:
                    again = dict(zip(suspect, self._generate(
                        self._rows(encoded, suspect), max(len(batch[i]) for i in suspect), prompt,
                        self.options.settings.retry_no_repeat_ngram)))
                for i, t in enumerate(first):
                    kept = again.get(i, t)
                    out.append(Transcript(kept.text, kept.tokens, kept.hit_cap, looped=i in suspect,
                                          retried=i in again, avg_logprob=kept.avg_logprob,
                                          no_speech_prob=kept.no_speech_prob))
            except (RuntimeError, ValueError) as exc:
                out += [Transcript("", [], False, False, error=f"ct2: {exc}")] * len(batch)
        return out

    def align(self, clips: list[np.ndarray], texts: list[str]) -> list[tuple[Word, ...]]:
        """Word timings (seconds from each clip's start) of each clip's final text: CTranslate2's alignment
        heads and DTW."""
        out: list[tuple[Word, ...]] = []
        for clip, words in zip(clips, texts):
            text = self.tokenizer.encode(" " + words) if words else []
            if not text:
                out.append(())
                continue
            encoded = self._encode([clip])
            frames = min(3000, int(np.ceil(len(clip) / 160)))  # mel frames; the encoder halves them
            result = self.model.model.align(encoded, self.tokenizer.sot_sequence, [text], frames,
                                            median_filter_width=7)[0]
            path = (np.array([a for a, _ in result.alignments]), np.array([b for _, b in result.alignments]))
            groups = split_on_characters(text, self.tokenizer.decode)
            out.append(timed_words(groups, *path, result.text_token_probs, len(clip) / 16000))
        return out
