"""Which calls to label first: CER gain per labelled minute of each selection strategy, side by side.

    .venv/bin/python bench/active_learning.py                    # 40 pool calls, 12 test calls, whisper-base
    .venv/bin/python bench/active_learning.py --calls 20 --test-calls 6 --epochs 2   # quicker
    .venv/bin/python bench/active_learning.py --codecs mulaw,amr-nb-lossy,g723       # calls over several lines
    .venv/bin/python bench/active_learning.py --steps 24     # every run the same steps: labels, not compute

A pool of generated two-channel 8 kHz mu-law calls (synthetic voices, agent left, customer right) is
transcribed by the champion (whisper-base) in split mode, as ``zhasr label push`` does. Each strategy of
``zhasr.labelling.selection`` chooses calls within a budget (a share of the pool's minutes); the chosen
calls are "labelled" with their reference turns (the generator's texts stand in for the person), cut per
channel as ``zhasr label pull`` cuts them, and an adapter is trained on them from whisper-base with the
project's training defaults. Every adapter is scored on held-out generated calls (other voices and
sentences, turns decoded one by one) and on the real-speech set when ``../shared/data/real-zh`` exists.

``disagreement`` needs a challenger: the demo's candidate (``models/candidate``, after ``make demo``) or
``--challenger DIR``; without one it is left out. Random is run with several seeds. The goal: the best
strategy reaches random's gain with at most half the minutes (compare its row at half the budget with
random's at the full budget).

``oracle`` is no strategy a deployment has: it ranks calls by the champion's real CER on them (the bench
knows the references). It bounds what any ranking by expected error can gain on this pool; the rank
correlation printed beside it says how well the champion's confidence predicts that error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zhasr.config import IngestParams, SynthParams, TrainParams, load_params  # noqa: E402
from zhasr.data.audio import load_16k  # noqa: E402
from zhasr.data.codecs import telephone  # noqa: E402
from zhasr.data.ingest import ingest_batches  # noqa: E402
from zhasr.data.synth import synthesize_batch  # noqa: E402
from zhasr.data.synth.call import write_call  # noqa: E402
from zhasr.evaluation.metrics import character_error_rate  # noqa: E402
from zhasr.labelling.selection import Candidate, choose, disagreement  # noqa: E402
from zhasr.model.decode import DecodeOptions, transcribe  # noqa: E402
from zhasr.model.loading import load_model  # noqa: E402
from zhasr.model.train import train_adapter  # noqa: E402
from zhasr.transcribe import Transcriber  # noqa: E402
from zhasr.transcribe.confidence import call_confidence  # noqa: E402

REAL_ZH = REPO.parent / "shared" / "data" / "real-zh" / "manifest.jsonl"


def make_calls(root: Path, n_calls: int, seed: int, codecs: list[str]) -> list[tuple[Path, list]]:
    """``n_calls`` two-channel calls of 8 turns: synthetic call j's four clips on the left, j+1's on the right;
    call k through the telephone codec ``codecs[k % len(codecs)]`` (mulaw: as written)."""
    options = SynthParams(batch=f"clips-{seed}", n_clips=8 * n_calls, n_speakers=2 * n_calls, clips_per_call=4,
                          seed=seed, telephone_fraction=1.0)
    batch = synthesize_batch(root / "synth", options, progress=lambda done, total: None)
    rows = [json.loads(line) for line in (batch / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    by_call: dict[str, list] = {}
    for r in rows:
        x, _ = sf.read(batch / r["audio"], dtype="float32")
        by_call.setdefault(r["call_id"], []).append((x, r["text"], r["id"]))
    synth_calls = list(by_call.values())
    calls = []
    for k in range(0, len(synth_calls) - 1, 2):
        left, right = synth_calls[k], synth_calls[k + 1]
        turns = [c for pair in zip(left, right) for c in pair]
        wav, call_turns = write_call(root / "calls", turns, 8000, name=f"s{seed}-call{k // 2:03d}", seed=k)
        codec = codecs[(k // 2) % len(codecs)]
        if codec != "mulaw":
            samples, rate = sf.read(wav, always_2d=True, dtype="float32")
            heard = np.stack([telephone(samples[:, c], codec, rate) for c in range(samples.shape[1])], axis=1)
            sf.write(wav, heard, rate, subtype="PCM_16")
        calls.append((wav, call_turns))
    return calls


def labelled_batch(incoming: Path, name: str, calls: list[tuple[Path, list]]) -> None:
    """The calls' turns cut from their own channel with their reference texts, as a pull writes them."""
    out = incoming / name
    (out / "audio").mkdir(parents=True)
    lines = []
    for wav, turns in calls:
        samples, rate = sf.read(wav, always_2d=True, dtype="float32")
        for k, t in enumerate(turns):
            clip = f"audio/{wav.stem}-{k}.wav"
            sf.write(out / clip, samples[int(t.start * rate): int(t.end * rate), t.channel], rate, subtype="PCM_16")
            lines.append(json.dumps({"id": f"{wav.stem}-{k}", "audio": clip, "text": t.text, "speaker": wav.stem,
                                     "call_id": wav.stem}, ensure_ascii=False))
    (out / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def rows_of(root: Path, name: str, calls, split: str = "train") -> list[dict]:
    labelled_batch(root / f"incoming-{name}", name, calls)
    every_row_in_train = IngestParams(test_fraction=0.0, dev_fraction=0.0)
    rows = ingest_batches(root / f"incoming-{name}", root / "dataset", every_row_in_train)
    return [{**r, "split": split} for r in rows if not r["decode_error"]]


def rank_correlation(a: list[float], b: list[float]) -> float:
    """Spearman's rho of two equally long lists (ties broken by order)."""
    ranks = [np.argsort(np.argsort(x)).astype(float) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def cer(model_dir: Path, adapter: Path | None, rows: list[dict], dataset: Path) -> float:
    model, processor = load_model(model_dir, adapter)
    clips = [load_16k(dataset / r["audio"]) for r in rows]
    hyps = [t.text for t in transcribe(model, processor, clips, DecodeOptions())]
    return character_error_rate([r["text_norm"] for r in rows], hyps).rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40, help="calls in the pool")
    parser.add_argument("--test-calls", type=int, default=12)
    parser.add_argument("--budget", type=float, default=0.2, help="share of the pool's minutes labelled")
    parser.add_argument("--random-seeds", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=0,
                        help="every run trains exactly this many steps, whatever it labelled (0: --epochs decide)")
    parser.add_argument("--challenger", type=Path, default=REPO / "models" / "candidate")
    parser.add_argument("--codecs", default="mulaw", help="telephone codecs the calls go through, one a call in turn "
                                                            "(e.g. mulaw,amr-nb-lossy,g723: a mix of lines)")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    from zhasr.model.ct2_import import ensure_packaged_base_model

    base = ensure_packaged_base_model(REPO / "models" / "whisper-base")
    params = load_params(REPO / "params.yaml")
    root = Path(tempfile.mkdtemp(prefix="zhasr-al-"))
    started = time.perf_counter()
    codecs = args.codecs.split(",")
    pool, test = make_calls(root, args.calls, 11, codecs), make_calls(root, args.test_calls, 12, codecs)
    test_rows = rows_of(root, "test", test, "test")
    real = []
    if REAL_ZH.is_file():
        from zhasr.data.importers import ImportOptions, import_dataset

        import_dataset("jsonl", REAL_ZH, root / "incoming-real", "real-zh", ImportOptions(split="regression"))
        originals_only = IngestParams(telephone_regression=False)
        real = [r for r in ingest_batches(root / "incoming-real", root / "dataset", originals_only)
                if not r["decode_error"]]
    print(f"data: {len(pool)} pool calls, {len(test)} test calls ({len(test_rows)} turns), {len(real)} real clips; "
          f"{time.perf_counter() - started:.0f} s", flush=True)

    champion = Transcriber.open(base, params.transcribe)
    challenger = None
    if (args.challenger / "config.json").is_file():
        challenger = Transcriber.open(args.challenger, params.transcribe)
    candidates, durations, errors = [], {}, []
    for wav, turns in pool:
        result = champion.transcribe(wav, channels="split")
        other = challenger.transcribe(wav, channels="split") if challenger else None
        durations[wav.stem] = result.duration_s
        candidates.append(Candidate(wav.stem, result.duration_s, 1 - call_confidence(result), "2ch@8000",
                                    disagreement(result.text, other.text) if other else None))
        said = "".join(t.text for t in sorted(turns, key=lambda t: t.start))
        errors.append(character_error_rate([said], [result.text]).rate)
    oracle = [dataclasses.replace(c, uncertainty=e) for c, e in zip(candidates, errors)]
    pool_min = sum(durations.values()) / 60
    rho = rank_correlation([c.uncertainty for c in candidates], errors)
    print(f"pool transcribed: {pool_min:.1f} min of calls; champion CER per call {100 * min(errors):.1f}-"
          f"{100 * max(errors):.1f}% (median {100 * statistics.median(errors):.1f}); rank correlation of "
          f"1 - confidence with it {rho:+.2f}; {time.perf_counter() - started:.0f} s", flush=True)

    base_test = cer(base, None, test_rows, root / "dataset")
    base_real = cer(base, None, real, root / "dataset") if real else None
    runs = [("random", args.budget, s) for s in range(args.random_seeds)]
    for strategy in ("confidence", "disagreement", "oracle") if challenger else ("confidence", "oracle"):
        runs += [(strategy, args.budget / 2, 0), (strategy, args.budget, 0)]
    by_id = {wav.stem: (wav, turns) for wav, turns in pool}
    table = []
    for strategy, share, seed in runs:
        if strategy == "oracle":
            chosen = choose(oracle, "confidence", share * pool_min * 60)
        else:
            chosen = choose(candidates, strategy, share * pool_min * 60, seed=seed)
        name = f"{strategy}-{share:.2f}-{seed}"
        if not chosen:
            print(f"{name}: no call fits {share:.0%} of the pool; skipped", flush=True)
            continue
        rows = rows_of(root, name, [by_id[c.call_id] for c in chosen])
        # with --steps, epochs are left unbounded and max_steps stops every run at the same step
        options = TrainParams(epochs=1e6 if args.steps else args.epochs, max_steps=args.steps, time_budget_s=0,
                              evaluations=1, seed=seed)
        trained = train_adapter(base, rows, root / "dataset", root / f"run-{name}", options)
        adapter = trained.adapter_dir
        test_cer = cer(base, adapter, test_rows, root / "dataset")
        real_cer = cer(base, adapter, real, root / "dataset") if real else None
        minutes = sum(c.duration_s for c in chosen) / 60
        speech_min = sum(r["duration_s"] for r in rows) / 60
        table.append({"strategy": strategy, "seed": seed, "budget_share": share, "calls": len(chosen),
                      "call_min": round(minutes, 2), "speech_min": round(speech_min, 2), "steps": trained.steps,
                      "test_cer": round(test_cer, 4), "gain_points": round(100 * (base_test - test_cer), 2),
                      "gain_per_min": round(100 * (base_test - test_cer) / minutes, 3),
                      "real_cer": None if real_cer is None else round(real_cer, 4)})
        print(json.dumps(table[-1]), f"{time.perf_counter() - started:.0f} s", flush=True)

    print(f"\nwhisper-base before labelling: test CER {100 * base_test:.2f}%"
          + (f", real speech {100 * base_real:.2f}%" if base_real is not None else ""))
    print(f"pool {len(pool)} calls ({args.codecs}), {pool_min:.1f} min; budget {args.budget:.0%} of it; "
          + (f"{args.steps} steps a run; " if args.steps else f"{args.epochs} epochs; ")
          + f"total {time.perf_counter() - started:.0f} s\n")
    print("| strategy | seed | budget | calls | call min | speech min | steps | test CER % | gain (points) "
          "| gain / call min | real CER % |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for t in table:
        real_text = "" if t["real_cer"] is None else f"{100 * t['real_cer']:.2f}"
        print(f"| {t['strategy']} | {t['seed']} | {t['budget_share']:.0%} | {t['calls']} | {t['call_min']} | "
              f"{t['speech_min']} | {t['steps']} | {100 * t['test_cer']:.2f} | {t['gain_points']:+.2f} "
              f"| {t['gain_per_min']:+.3f} | {real_text} |")
    randoms = [t["gain_points"] for t in table if t["strategy"] == "random"]
    print(f"\nrandom at {args.budget:.0%}: gain {statistics.mean(randoms):+.2f} points "
          f"(seeds {', '.join(f'{g:+.2f}' for g in randoms)})")
    if args.out:
        summary = {"base_test_cer": base_test, "base_real_cer": base_real, "pool_cer_per_call": errors,
                   "confidence_rank_correlation": rho, "rows": table}
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
