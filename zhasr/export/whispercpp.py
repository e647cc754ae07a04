"""Transcription with whisper.cpp (the ``pywhispercpp`` wheel), always in a child process.

whisper.cpp reports a bad model file by crashing the next call rather than by
raising, so the model is checked with ``read_ggml_header`` first and then used
in a subprocess: a crash becomes an error naming the file, not a dead pipeline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from zhasr.config import ModelParams
from zhasr.export.ggml import read_ggml_header


class WhisperCppError(RuntimeError):
    """whisper.cpp failed on a model or a clip; the message names the file and the exit status."""


def transcribe_whispercpp(model_file: Path, clips: list[np.ndarray], caps: list[int], language: str = ModelParams.language,
                          threads: int = 2, prompt: str | None = None, no_speech_threshold: float = 0.6,
                          logprob_threshold: float = -1.0, timeout_s: float = 3600) -> list[dict]:
    """One ``{"text", "probability", "segments"}`` per (n,) 16 kHz clip via whisper.cpp, greedy with its
    temperature fallback, at most ``caps[i]`` tokens for clip i. ``probability``: geometric mean of token
    probabilities; ``segments``: whisper.cpp's own ``[start_s, end_s, text]`` (its timestamp tokens)."""
    read_ggml_header(model_file)
    with tempfile.TemporaryDirectory(prefix="zhasr-whispercpp-") as tmp:
        pieces = Path(tmp) / "pieces.npz"
        np.savez(pieces, *clips)
        settings = {"language": language, "threads": threads, "caps": caps, "prompt": prompt or "",
                    "no_speech_thold": no_speech_threshold, "logprob_thold": logprob_threshold}
        command = [sys.executable, "-m", __name__, str(model_file), str(pieces), json.dumps(settings)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise WhisperCppError(f"{model_file}: whisper.cpp exited with status {done.returncode}: "
                              f"{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _main(model_file: str, pieces_file: str, settings_json: str) -> None:
    import math

    from pywhispercpp.model import Model

    settings = json.loads(settings_json)
    # A path that is not a file would make pywhispercpp download a model of that name.
    if not Path(model_file).is_file():
        raise SystemExit(f"{model_file}: not a file")
    model = Model(model_file, n_threads=settings["threads"], redirect_whispercpp_logs_to=None, print_progress=False,
                  print_realtime=False, language=settings["language"], no_context=True,
                  initial_prompt=settings["prompt"], no_speech_thold=settings["no_speech_thold"],
                  logprob_thold=settings["logprob_thold"])
    out = []
    with np.load(pieces_file) as pieces:
        for i, cap in enumerate(settings["caps"]):
            segments = model.transcribe(pieces[f"arr_{i}"], max_tokens=cap, extract_probability=True)
            probs = [s.probability for s in segments if not math.isnan(s.probability)]
            out.append({"text": "".join(s.text for s in segments).strip(),
                        "probability": float(np.mean(probs)) if probs else None,
                        "segments": [[s.t0 / 100, s.t1 / 100, s.text] for s in segments if s.text.strip()]})
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    _main(*sys.argv[1:])
