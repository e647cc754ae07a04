"""The transformers runtime: a Hugging Face Whisper folder (or a loaded model with its adapter), batched."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zhasr.model.decode import DecodeOptions, Transcript, log_mel, timestamp_flags, transcribe
from zhasr.transcribe.allocator import keep_freed_memory
from zhasr.transcribe.records import Word
from zhasr.transcribe.words import FRAMES_PER_S, dtw_path, split_on_characters, timed_words


class TransformersRuntime:
    name = "transformers"

    def __init__(self, model, processor, options: DecodeOptions):
        self.model, self.processor, self.options = model, processor, options

    @classmethod
    def open(cls, model_dir: Path, options: DecodeOptions, device=None) -> TransformersRuntime:
        from zhasr.model.loading import load_model

        if str(device or "cpu") == "cpu":
            keep_freed_memory()  # before torch's threads take malloc arenas of their own
        model, processor = load_model(Path(model_dir), device=device)
        return cls(model, processor, options)

    def decode(self, clips: list[np.ndarray], prompt: str | None = None,
               timestamps: bool | Sequence[bool] = False) -> list[Transcript]:
        """One Transcript per (n,) 16 kHz clip of at most 30 s, in order; a failing batch is marked, not raised.
        ``timestamps`` (for all clips, or one flag a clip): decoded with Whisper's timestamp tokens, the
        segments in ``Transcript.timed``."""
        flags = timestamp_flags(timestamps, len(clips))
        out: dict[int, Transcript] = {}
        size = self.options.settings.batch_size
        for flag in (False, True):
            group = [i for i, f in enumerate(flags) if f == flag]
            for start in range(0, len(group), size):
                rows = group[start : start + size]
                batch = [clips[i] for i in rows]
                try:
                    out.update(zip(rows, transcribe(self.model, self.processor, batch, self.options, prompt=prompt,
                                                    timestamps=flag)))
                except (RuntimeError, ValueError) as exc:
                    out.update((i, Transcript("", [], False, False, error=f"transformers: {exc}")) for i in rows)
        return [out[i] for i in range(len(clips))]

    def _alignment_heads(self) -> list[tuple[int, int]]:
        """The model's alignment heads; where it names none valid, every head of the later half of the decoder."""
        layers, heads = self.model.config.decoder_layers, self.model.config.decoder_attention_heads
        named = [tuple(h) for h in getattr(self.model.generation_config, "alignment_heads", None) or []]
        if named and all(0 <= layer < layers and 0 <= head < heads for layer, head in named):
            return named
        return [(layer, head) for layer in range(layers // 2, layers) for head in range(heads)]

    def align(self, clips: list[np.ndarray], texts: list[str]) -> list[tuple[Word, ...]]:
        """Word timings (seconds from each clip's start) of each clip's final text."""
        import torch

        tokenizer = self.processor.tokenizer
        eos = tokenizer.eos_token_id
        sot = tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", f"<|{self.options.language}|>",
                                               f"<|{self.options.task}|>", "<|notimestamps|>"])
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        heads = self._alignment_heads()
        previous = self.model.config._attn_implementation
        out = []
        self.model.set_attn_implementation("eager")  # sdpa gives no attention weights
        try:
            with torch.inference_mode():
                for clip, words in zip(clips, texts):
                    text = tokenizer.encode(" " + words, add_special_tokens=False) if words else []
                    if not text:
                        out.append(())
                        continue
                    features = log_mel(self.processor, [clip])
                    encoded = self.model.get_encoder()(features.to(device, dtype))
                    ids = torch.tensor([sot + text + [eos]], device=device)
                    result = self.model(encoder_outputs=encoded, decoder_input_ids=ids, output_attentions=True)
                    frames = max(1, min(1500, int(np.ceil(len(clip) / 16000 * FRAMES_PER_S))))
                    attention = torch.stack([result.cross_attentions[layer][0, head] for layer, head in heads])
                    rows = attention[:, len(sot) - 1 : -1, :frames].float().cpu().numpy()  # notimestamps + text
                    probs = result.logits[0].float().softmax(-1)
                    token_probs = [float(probs[len(sot) - 1 + k, tok]) for k, tok in enumerate(text)]
                    path = dtw_path(rows)
                    groups = split_on_characters(text, tokenizer.decode)
                    out.append(timed_words(groups, *path, token_probs, len(clip) / 16000))
        finally:
            self.model.set_attn_implementation(previous)
        return out
