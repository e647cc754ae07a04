"""A generated two-channel call with its turn list: synthetic clips joined with pauses, agent left and
customer right, as a G.711 mu-law WAV at 8 kHz (how call-center recorders store calls).

Each clip is trimmed to its speech (runs of 10 ms frames within ``floor_db`` of the loudest), so a turn's
start and end are where its speech is. Turns alternate between the channels; the other channel
carries line noise only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import zip_longest
from pathlib import Path

import numpy as np
import soundfile as sf


@dataclass(frozen=True)
class Turn:
    start: float  # seconds in the call
    end: float
    channel: int  # 0 left, 1 right
    speaker: str
    text: str  # the clip's label
    clip: str  # the clip's id


def speech_bounds(x: np.ndarray, rate: int, floor_db: float = 40.0, min_run_s: float = 0.05) -> tuple[int, int]:
    """(first, last + 1) sample of the speech: 10 ms frames within ``floor_db`` dB of the loudest frame, in
    runs of at least ``min_run_s`` (a lone click or breath before the first word is not where a turn starts)."""
    frame = max(1, rate // 100)
    n = len(x) // frame
    energy = (x[: n * frame].reshape(n, frame).astype(np.float64) ** 2).mean(axis=1)
    active = energy >= energy.max() * 10 ** (-floor_db / 10)
    run = min(n, max(1, round(min_run_s * 100)))
    starts = np.flatnonzero(np.lib.stride_tricks.sliding_window_view(active, run).all(axis=1))
    if not len(starts):  # no run that long: every active frame counts
        starts, run = np.flatnonzero(active), 1
    return int(starts[0] * frame), int((starts[-1] + run) * frame)


def assemble_call(clips: Sequence[tuple[np.ndarray, str, str]], rate: int, roles: Sequence[str] = ("agent", "customer"),
                  pause_s: tuple[float, float] = (0.7, 1.5), lead_s: float = 1.0, noise_dbfs: float = -60.0,
                  seed: int = 0, channels: Sequence[int] | None = None) -> tuple[np.ndarray, list[Turn]]:
    """((2, n) float32 at ``rate``, turns) from ``clips`` = [(samples at rate, text, id)], turn k on channel
    ``channels[k]`` (default k % 2)."""
    rng = np.random.default_rng(seed)
    pieces, turns, t = [], [], int(lead_s * rate)
    for k, (x, text, clip_id) in enumerate(clips):
        a, b = speech_bounds(x, rate)
        channel = channels[k] if channels is not None else k % 2
        pieces.append((t, channel, x[a:b]))
        turns.append(Turn(round(t / rate, 3), round((t + b - a) / rate, 3), channel, roles[channel], text, clip_id))
        t += b - a + int(rng.uniform(*pause_s) * rate)
    call = rng.standard_normal((2, t + int(lead_s * rate))) * 10 ** (noise_dbfs / 20)
    for start, channel, x in pieces:
        call[channel, start : start + len(x)] += x
    return np.clip(call, -1, 1).astype(np.float32), turns


def write_call(out_dir: Path, clips: Sequence[tuple[np.ndarray, str, str]], rate: int, name: str = "call",
               **options) -> tuple[Path, list[Turn]]:
    """``out_dir/<name>.wav`` (2 channels, mu-law) and ``<name>.turns.json``; returns (wav path, turns)."""
    samples, turns = assemble_call(clips, rate, **options)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wav = out_dir / f"{name}.wav"
    sf.write(wav, samples.T, rate, format="WAV", subtype="ULAW")
    (out_dir / f"{name}.turns.json").write_text(json.dumps([asdict(x) for x in turns], ensure_ascii=False, indent=1),
                                                encoding="utf-8")
    return wav, turns


def clips_of_batch(batch_dir: Path) -> list[tuple[np.ndarray, str, str]]:
    """[(samples, text, id)] of a synthetic batch's clips, in manifest order, at their own (equal) rate."""
    rows = [json.loads(line) for line in (Path(batch_dir) / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    out, rates = [], set()
    for r in rows:
        x, rate = sf.read(Path(batch_dir) / r["audio"], dtype="float32")
        rates.add(rate)
        out.append((x, r["text"], r["id"]))
    if len(rates) != 1:
        raise ValueError(f"{batch_dir}: clips at several rates {sorted(rates)}; make the batch with one channel type")
    return out


@dataclass(frozen=True)
class SentenceCall:
    """A call built of separately spoken sentences."""

    wav: Path  # two channels, 16-bit, at the sentences' rate
    turns: tuple[Turn, ...]  # their text empty: the caller holds the sentences
    sentences: tuple[int, ...]  # turn k says sentence ``sentences[k]`` (its index in the paths given)


def sentence_calls(paths: Sequence[Path], out_dir: Path, voices: int, per_call: int = 10,
                   seed: int = 0) -> list[SentenceCall]:
    """Every sentence WAV of ``paths`` (sentence i said by voice ``i % voices``, as ``speak_sentences`` says them)
    placed in exactly one call of about ``per_call`` turns, written to ``out_dir``: as in a recorded call, each
    channel holds one voice, the turns alternate between them, and a call holds sentences of one rate only.
    The sentences keep their own channel and codec (16-bit PCM, not mu-law again)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, path in enumerate(paths):
        groups.setdefault((sf.info(path).samplerate, i % voices), []).append(i)
    side = max(1, per_call // 2)
    chunks: dict[int, list[list[int]]] = {}  # rate -> one voice's runs of ``side`` sentences, voices in turn
    for rate in sorted({rate for rate, _ in groups}):
        runs = [[group[j : j + side] for j in range(0, len(group), side)]
                for (r, _), group in sorted(groups.items()) if r == rate]
        chunks[rate] = [run[k] for k in range(max(map(len, runs))) for run in runs if k < len(run)]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    calls = []
    for rate, runs in chunks.items():
        for a, b in zip(runs[::2], runs[1::2] + [[]]):
            order = [(i, channel) for pair in zip_longest(a, b) for channel, i in enumerate(pair) if i is not None]
            clips = [(sf.read(paths[i], dtype="float32")[0], "", Path(paths[i]).stem) for i, _ in order]
            samples, turns = assemble_call(clips, rate, seed=seed + len(calls), channels=[c for _, c in order])
            wav = out_dir / f"call{len(calls):04d}.wav"
            sf.write(wav, samples.T, rate, subtype="PCM_16")
            calls.append(SentenceCall(wav, tuple(turns), tuple(i for i, _ in order)))
    return calls
