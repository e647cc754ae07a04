"""Hotword recall and CER of the engine with and without the hotword prompt, on the test split and real-zh.

    .venv/bin/python bench/hotwords.py [--model models/exports/ct2-int8]

The prompt is ``transcribe.hotwords`` (default ``evaluate.hotwords``) given to the runtime as previous
text (faster-whisper's ``hotwords``, transformers' ``prompt_ids``). Run the demo first.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from zhasr.config import load_params
from zhasr.data.manifest import read_jsonl
from zhasr.evaluation.metrics import character_error_rate, hotword_recall
from zhasr.transcribe import Transcriber


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/exports/ct2-int8")
    parser.add_argument("--dataset", default="data/dataset")
    args = parser.parse_args()
    params = load_params(Path("params.yaml"))
    dataset = Path(args.dataset)
    manifest = read_jsonl(dataset / "manifest.jsonl")
    transcriber = Transcriber.open(Path(args.model), params.transcribe_settings())
    print(f"prompt: {' '.join(transcriber.hotwords)}\n")
    print("| set | hotwords | CER | hotword recall | found / occurrences | seconds |")
    print("|---|---|---|---|---|---|")
    for split in ("test", "regression"):
        rows = [r for r in manifest if r["split"] == split]
        references = [r["text_norm"] for r in rows]
        for use in (False, True):
            start = time.perf_counter()
            results = transcriber.transcribe_many([dataset / r["audio"] for r in rows], use_hotwords=use)
            seconds = time.perf_counter() - start
            texts = [r.text for r in results]
            recall = hotword_recall(references, texts, params.evaluate.hotwords)
            found, total = sum(f for f, _ in recall.values()), sum(n for _, n in recall.values())
            print(f"| {split} | {'on' if use else 'off'} | {character_error_rate(references, texts).cer:.2%} | "
                  f"{found / total if total else float('nan'):.1%} | {found} / {total} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
