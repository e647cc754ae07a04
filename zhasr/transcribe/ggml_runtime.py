"""The whisper.cpp runtime: a ggml export file, run in a child process (a bad file cannot crash the caller).

whisper.cpp decodes one piece at a time; its own temperature fallback (entropy threshold 2.4,
like Whisper's compression-ratio rule) is the retry, then the engine's collapse. It applies the
no-speech rule itself (``no_speech_thold`` with ``logprob_thold``), so pieces come back empty. It has
no word alignment: a packed window's text is placed by whisper.cpp's own timestamped segments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zhasr.data.text import to_simplified
from zhasr.model.decode import DecodeOptions, Transcript, is_loop, token_cap


class GgmlRuntime:
    name = "ggml"

    def __init__(self, model_file: Path, options: DecodeOptions):
        from zhasr.export.ggml import read_ggml_header

        read_ggml_header(Path(model_file))  # a corrupt or cut file is refused here, not later
        self.model_file, self.options = Path(model_file), options

    def decode(self, clips: list[np.ndarray], prompt: str | None = None,
               timestamps: bool | Sequence[bool] = False) -> list[Transcript]:
        """One Transcript per clip; whisper.cpp always decodes with timestamps (``timestamps`` is not read), its
        segments in ``timed``."""
        from zhasr.export.whispercpp import WhisperCppError, transcribe_whispercpp

        caps = [token_cap(len(c) / 16000, self.options) for c in clips]
        try:
            results = transcribe_whispercpp(self.model_file, clips, caps, self.options.language,
                                            self.options.settings.threads, prompt,
                                            self.options.settings.no_speech_threshold,
                                            self.options.settings.logprob_threshold)
        except (WhisperCppError, OSError, ValueError) as exc:
            return [Transcript("", [], False, False, error=f"whisper.cpp: {exc}")] * len(clips)
        out = []
        for r in results:
            text = to_simplified(r["text"])
            p = r["probability"]
            out.append(Transcript(text, [], hit_cap=False, looped=is_loop(text, self.options),
                                  avg_logprob=math.log(p) if p else None,
                                  timed=tuple((float(s), float(e), to_simplified(t)) for s, e, t in r["segments"])))
        return out
