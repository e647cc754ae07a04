"""The service under load on 127.0.0.1: 1, 4 and 16 concurrent clients sending 5-10 s clips.

    .venv/bin/python bench/serve.py [--model DIR] [--requests 32] [--max-seconds 120] [--set KEY=VALUE ...]

For each concurrency: requests per second, audio seconds per second and p50/p95 latency, for the
service batching across requests and for the same service taking one request at a time
(``serve.batch_requests=false``), beside the engine called directly in this process on the same
clips one after another (the overhead ratio at concurrency 1), and the ceiling on batching's gain:
the engine decoding all the clips in one batched call against the one-at-a-time server. Clients are
the official ``openai`` client, one thread each; every level is bounded in requests and seconds.
Each server's row also gives the windows a batch it formed (its ``zhasr_batch_size`` histogram).

Clips: the synthetic two-channel 8 kHz mu-law call of ``bench/transcribe.py`` cut into windows of
5, 7.5 and 10 s in turn (written once under data/bench-serve/). The model: ``--model``, default the
demo candidate's ct2-int8 export (the runtime a champion is served in), else the candidate, else the
packaged whisper-base.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.transcribe import make_call  # noqa: E402
from service.process import start_server  # noqa: E402

if TYPE_CHECKING:
    from zhasr.transcribe import Transcriber

LEVELS = (1, 4, 16)
WINDOWS_S = (5.0, 7.5, 10.0)


def make_clips(folder: Path) -> list[Path]:
    import soundfile as sf

    clips_dir = folder / "clips"
    if clips_dir.is_dir() and any(clips_dir.iterdir()):
        return sorted(clips_dir.glob("*.wav"))
    call = make_call(folder)
    data, rate = sf.read(call, dtype="int16", always_2d=True)
    clips_dir.mkdir(parents=True, exist_ok=True)
    start, k = 0, 0
    while start + int(WINDOWS_S[-1] * rate) <= len(data):
        n = int(WINDOWS_S[k % len(WINDOWS_S)] * rate)
        sf.write(clips_dir / f"clip-{k:03d}.wav", data[start : start + n], rate, subtype="ULAW")
        start, k = start + n, k + 1
    return sorted(clips_dir.glob("*.wav"))


def default_model() -> Path:
    """The demo candidate's ct2-int8 export (what a registered champion is served with), else the candidate,
    else the packaged whisper-base."""
    export = Path("models/exports/ct2-int8")
    if (export / "model.bin").is_file():
        return export
    candidate = Path("models/candidate")
    if (candidate / "config.json").is_file():
        return candidate
    from zhasr.model.loading import resolve_base_model

    return resolve_base_model("packaged:whisper-base", Path("models"))


def windows_decoded(url: str) -> tuple[float, float]:
    """(windows, batches) the server's ``zhasr_batch_size`` histogram has counted so far."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{url}/metrics", timeout=10).text
    family = next(f for f in text_string_to_metric_families(text) if f.name == "zhasr_batch_size")
    totals = {s.name: s.value for s in family.samples if s.name.endswith(("_sum", "_count"))}
    return totals["zhasr_batch_size_sum"], totals["zhasr_batch_size_count"]


def summary(latencies: list[float], audio_s: float, wall_s: float) -> dict:
    ordered = sorted(latencies)
    return {"requests": len(latencies), "rps": round(len(latencies) / wall_s, 3),
            "audio_s_per_s": round(audio_s / wall_s, 2), "p50_s": round(statistics.median(ordered), 3),
            "p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3), "wall_s": round(wall_s, 1)}


def load(url: str, key: str, clips: list[tuple[bytes, float]], clients: int, n: int, max_s: float, model: str) -> dict:
    """``n`` requests (at most ``max_s`` seconds of submitting) from ``clients`` threads."""
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=600)
    started = time.perf_counter()

    def one(i: int) -> tuple[float, float] | None:
        if time.perf_counter() - started > max_s:
            return None
        blob, seconds = clips[i % len(clips)]
        t = time.perf_counter()
        client.audio.transcriptions.create(model=model, file=(f"clip-{i}.wav", blob))
        return time.perf_counter() - t, seconds

    with ThreadPoolExecutor(clients) as pool:
        done = [r for r in pool.map(one, range(n)) if r]
    wall = time.perf_counter() - started
    return summary([d for d, _ in done], sum(s for _, s in done), wall)


def open_engine(model: Path, params_path: Path) -> Transcriber:
    """The engine the service runs, in this process."""
    from zhasr.config import load_params
    from zhasr.transcribe import Transcriber

    p = load_params(params_path)
    return Transcriber.open(model, p.transcribe, language=p.model.language, task=p.model.task)


def direct(transcriber: Transcriber, clips: list[Path], n: int, max_s: float) -> dict:
    """The engine in this process, the same clips one after another."""
    transcriber.transcribe(clips[0])  # warm-up
    latencies, audio, started = [], 0.0, time.perf_counter()
    for i in range(n):
        if time.perf_counter() - started > max_s:
            break
        t = time.perf_counter()
        result = transcriber.transcribe(clips[i % len(clips)])
        latencies.append(time.perf_counter() - t)
        audio += result.duration_s
    return summary(latencies, audio, time.perf_counter() - started)


def best_batched(transcriber: Transcriber, clips: list[Path], n: int) -> dict:
    """The most batching can give here: the engine in this process decodes ``n`` clips in one call, each
    clip in its own windows, batched (every request queued at once, nothing to wait for: the batching
    server's best case), then again with clips sharing windows (what evaluation does; the service never
    lets requests share a window). Each counts the whole call: reading, VAD, decoding."""
    picked = [clips[i % len(clips)] for i in range(n)]
    transcriber.transcribe_many(picked[:2])  # warm-up
    out = {"clips": n}
    for name, across in (("batched", False), ("shared_windows", True)):
        started = time.perf_counter()
        audio = sum(r.duration_s for r in transcriber.transcribe_many(picked, across_inputs=across))
        out[f"{name}_audio_s_per_s"] = round(audio / (time.perf_counter() - started), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a Hugging Face or CTranslate2 model folder")
    parser.add_argument("--requests", type=int, default=32, help="requests per level (at least the concurrency)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per level: stop submitting after this")
    parser.add_argument("--set", action="append", default=[], help="params override, e.g. serve.batch_wait_ms=50")
    parser.add_argument("--out", type=Path, default=Path("data/bench-serve/results.json"))
    args = parser.parse_args()

    from zhasr.config import load_params
    from zhasr.serve.keys import KeyStore

    model = (args.model or default_model()).resolve()
    clips = make_clips(Path("data/bench-serve"))
    import soundfile as sf

    payload = [(c.read_bytes(), sf.info(c).duration) for c in clips]
    print(f"{len(clips)} clips of {min(s for _, s in payload):.1f}-{max(s for _, s in payload):.1f} s, "
          f"model {model}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="zhasr-bench-serve-"))
    params = load_params(Path("params.yaml"), args.set).to_dict()
    params["serve"].update({"model": str(model), "requests_per_minute": 10**6, "audio_s_per_minute": 1e9,
                            "max_queued": 64})
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    key = KeyStore(root / params["serve"]["keys_file"]).add("bench")
    served_name = model.name

    results: dict[str, dict] = {"direct": {}, "batched": {}, "one-at-a-time": {}}
    engine = open_engine(model, root / "params.yaml")
    results["direct"]["1"] = direct(engine, clips, args.requests, args.max_seconds)
    print("engine direct, one at a time:", results["direct"]["1"], flush=True)
    best = best_batched(engine, clips, max(args.requests, LEVELS[-1]))
    print("engine direct, all clips in one call:", best, flush=True)
    for mode in ("batched", "one-at-a-time"):
        server = start_server(root, [f"serve.batch_requests={str(mode == 'batched').lower()}"], name=mode)
        try:
            load(server.url, key, payload, 1, 2, args.max_seconds, served_name)  # warm-up
            for clients in LEVELS:
                before = windows_decoded(server.url)
                results[mode][str(clients)] = load(server.url, key, payload, clients, max(args.requests, clients),
                                                   args.max_seconds, served_name)
                windows, batches = (a - b for a, b in zip(windows_decoded(server.url), before))
                results[mode][str(clients)]["windows_a_batch"] = round(windows / max(batches, 1), 1)
                print(f"{mode:14s} c={clients:2d}:", results[mode][str(clients)], flush=True)
        finally:
            server.stop()

    print("\n| clients | server | requests/s | audio s/s | p50 s | p95 s | windows a batch |")
    print("|---|---|---|---|---|---|---|")
    for clients in LEVELS:
        for mode in ("batched", "one-at-a-time"):
            r = results[mode][str(clients)]
            print(f"| {clients} | {mode} | {r['rps']} | {r['audio_s_per_s']} | {r['p50_s']} | {r['p95_s']} | "
                  f"{r['windows_a_batch']} |")
    d = results["direct"]["1"]
    print(f"| 1 | engine direct | {d['rps']} | {d['audio_s_per_s']} | {d['p50_s']} | {d['p95_s']} | |")
    print(f"| {best['clips']} clips at once | engine, one batched call | | {best['batched_audio_s_per_s']} | | | |")
    print(f"| {best['clips']} clips at once | engine, clips sharing windows | | {best['shared_windows_audio_s_per_s']} | | | |")
    overhead = 1 - results["batched"]["1"]["audio_s_per_s"] / d["audio_s_per_s"]
    gain = results["batched"]["16"]["audio_s_per_s"] / results["one-at-a-time"]["16"]["audio_s_per_s"]
    print(f"\noverhead at 1 client: {overhead:+.1%} of the engine's throughput (goal: within 10%)")
    print(f"batching gain at 16 clients: {gain:.2f}x the one-at-a-time server (goal: at least 1.5x)")
    ceiling = best["batched_audio_s_per_s"] / results["one-at-a-time"]["16"]["audio_s_per_s"]
    print(f"ceiling: all {best['clips']} clips decoded in one batched call read {ceiling:.2f}x the one-at-a-time server at "
          "16 clients (which reads and cuts the next requests while it decodes)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": str(model), "clips": len(clips), "results": results,
                                    "overhead_at_1": overhead, "gain_at_16": gain, "best_batched": best,
                                    "ceiling_at_16": ceiling}, indent=2))


if __name__ == "__main__":
    main()
