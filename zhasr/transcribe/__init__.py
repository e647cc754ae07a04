"""The transcription engine: whole calls of any length and format, mixed or split by channel, in
every runtime (transformers, CTranslate2, whisper.cpp) under the same guard.

    audio --media--> (channels, n) at 16 kHz --vad--> speech pieces <= 30 s (timestamps kept)
          --runtime--> text per piece, batched across pieces, calls and channels
          --guard--> loops collapsed, non-speech and known hallucinations removed, simplified Chinese
          --> Transcription (segments on one timeline, labelled by channel role)
"""

from zhasr.transcribe.engine import Transcriber
from zhasr.transcribe.records import Segment, Transcription, Word

__all__ = ["Segment", "Transcriber", "Transcription", "Word"]
