"""Transcription with whisper.cpp (the ``pywhispercpp`` wheel), always in a child process.

whisper.cpp reports a bad model file by crashing the next call rather than by
raising, so the model is checked with ``read_ggml_header`` first and then used
in a subprocess: a crash becomes an error naming the file, not a dead pipeline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from zhasr.export.ggml import read_ggml_header


class WhisperCppError(RuntimeError):
    """whisper.cpp failed on a model or a clip; the message names the file and the exit status."""


def transcribe_whispercpp(model_file: Path, wavs: list[Path], language: str = "zh", threads: int = 2,
                          max_tokens: int = 224, timeout_s: float = 3600) -> tuple[list[str], float]:
    """(one text per wav in simplified Chinese, decoding seconds without the model load) via whisper.cpp,
    greedy, at most ``max_tokens`` per segment."""
    read_ggml_header(model_file)
    command = [sys.executable, "-m", __name__, str(model_file), language, str(threads), str(max_tokens),
               *map(str, wavs)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise WhisperCppError(f"{model_file}: whisper.cpp exited with status {done.returncode}: "
                              f"{done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["texts"], result["seconds"]


def _main(model_file: str, language: str, threads: str, max_tokens: str, *wavs: str) -> None:
    import time

    from pywhispercpp.model import Model

    from zhasr.audio import load_16k
    from zhasr.text import to_simplified

    # A path that is not a file would make pywhispercpp download a model of that name.
    if not Path(model_file).is_file():
        raise SystemExit(f"{model_file}: not a file")
    model = Model(model_file, n_threads=int(threads), redirect_whispercpp_logs_to=None, print_progress=False,
                  print_realtime=False, language=language, no_context=True, max_tokens=int(max_tokens))
    texts, seconds = [], 0.0
    for wav in wavs:
        samples = load_16k(Path(wav))
        start = time.perf_counter()
        segments = model.transcribe(samples)
        seconds += time.perf_counter() - start
        texts.append(to_simplified("".join(s.text for s in segments).strip()))
    print(json.dumps({"texts": texts, "seconds": seconds}, ensure_ascii=False))


if __name__ == "__main__":
    _main(*sys.argv[1:])
