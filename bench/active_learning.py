"""Which calls to label first: CER gain per labelled minute of each selection strategy, side by side.

    .venv/bin/python bench/active_learning.py                    # 40 pool calls, 12 test calls, whisper-base
    .venv/bin/python bench/active_learning.py --calls 20 --test-calls 6 --epochs 2   # quicker
    .venv/bin/python bench/active_learning.py --codecs mulaw,amr-nb-lossy,g723       # calls over several lines
    .venv/bin/python bench/active_learning.py --steps 24     # every run the same steps: labels, not compute

A pool of generated two-channel 8 kHz mu-law calls (synthetic voices, agent left, customer right) is
transcribed by the champion (whisper-base, or ``--champion``) in split mode, as ``zhasr label push`` does.
Each strategy of ``zhasr.labelling.selection`` chooses calls within a budget (a share of the pool's minutes); the chosen
calls are "labelled" with their reference turns (the generator's texts stand in for the person), cut per
channel as ``zhasr label pull`` cuts them, and an adapter is trained on them from whisper-base with the
project's training defaults. Every adapter is scored on held-out generated calls (other voices and
sentences, turns decoded one by one) and on the real-speech set when ``../shared/data/real-zh`` exists.

``disagreement`` needs a challenger: the demo's candidate (``models/candidate``, after ``make demo``) or
``--challenger DIR``; without one it is left out. Random is run with several seeds. The goal: the best
strategy reaches random's gain with at most half the minutes (compare its row at half the budget with
random's at the full budget).

``--number-calls K`` adds K calls in which the customer gives numbers (phone, ID-card and bank-card numbers,
codes, e-mail addresses: four sentences of ``zhasr.data.synth.personal`` in its even-numbered frames, an
agent's generated clips between them) to the pool. Every adapter is then also scored on redaction: recall per
kind on sentences of another seed in the odd-numbered frames (never in the pool), decoded whole, as
``bench/redaction.py`` scores it. ``numbers`` is the strategy made for them (``--strategies``).

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

from bench.redaction import score as redaction_score  # noqa: E402
from bench.redaction import synthesize as speak_sentences  # noqa: E402
from zhasr.calltext.pii import KINDS  # noqa: E402
from zhasr.config import IngestParams, SynthParams, TrainParams, load_params  # noqa: E402
from zhasr.data.audio import load_16k  # noqa: E402
from zhasr.data.codecs import telephone  # noqa: E402
from zhasr.data.ingest import decoded_rows, ingest_batches  # noqa: E402
from zhasr.data.manifest import ManifestRow  # noqa: E402
from zhasr.data.synth import synthesize_batch  # noqa: E402
from zhasr.data.synth.call import write_call  # noqa: E402
from zhasr.data.synth.personal import personal_set  # noqa: E402
from zhasr.evaluation.metrics import character_error_rate  # noqa: E402
from zhasr.labelling.selection import Candidate, choose, disagreement, numbers_heard  # noqa: E402
from zhasr.model.decode import DecodeOptions, transcribe  # noqa: E402
from zhasr.model.loading import load_model  # noqa: E402
from zhasr.model.train import train_adapter  # noqa: E402
from zhasr.transcribe import Transcriber  # noqa: E402
from zhasr.transcribe.confidence import call_confidence  # noqa: E402

REAL_ZH = REPO.parent / "shared" / "data" / "real-zh" / "manifest.jsonl"


Clip = tuple[np.ndarray, str, str]  # (samples at 8 kHz, text, id)


def generated_clips(root: Path, n_clips: int, seed: int) -> list[list[Clip]]:
    """The 8 kHz clips of ``n_clips / 4`` generated calls (4 clips each, one voice a call), call by call."""
    options = SynthParams(batch=f"clips-{seed}", n_clips=n_clips, n_speakers=max(1, n_clips // 4), clips_per_call=4,
                          seed=seed, telephone_fraction=1.0)
    batch = synthesize_batch(root / "synth", options, progress=lambda done, total: None)
    rows = [json.loads(line) for line in (batch / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    by_call: dict[str, list[Clip]] = {}
    for r in rows:
        x, _ = sf.read(batch / r["audio"], dtype="float32")
        by_call.setdefault(r["call_id"], []).append((x, r["text"], r["id"]))
    return list(by_call.values())


def write_calls(root: Path, sides: list[tuple[list[Clip], list[Clip]]], name: str, codecs: list[str]
                ) -> list[tuple[Path, list]]:
    """A two-channel call per (left, right) clips, turns alternating; call k through the telephone codec
    ``codecs[k % len(codecs)]`` (mulaw: as written)."""
    calls = []
    for k, (left, right) in enumerate(sides):
        turns = [c for pair in zip(left, right) for c in pair]
        wav, call_turns = write_call(root / "calls", turns, 8000, name=f"{name}-call{k:03d}", seed=2 * k)
        codec = codecs[k % len(codecs)]
        if codec != "mulaw":
            samples, rate = sf.read(wav, always_2d=True, dtype="float32")
            heard = np.stack([telephone(samples[:, c], codec, rate) for c in range(samples.shape[1])], axis=1)
            sf.write(wav, heard, rate, subtype="PCM_16")
        calls.append((wav, call_turns))
    return calls


def make_calls(root: Path, n_calls: int, seed: int, codecs: list[str]) -> list[tuple[Path, list]]:
    """``n_calls`` two-channel calls of 8 turns: synthetic call j's four clips on the left, j+1's on the right."""
    clips = generated_clips(root, 8 * n_calls, seed)
    return write_calls(root, list(zip(clips[0::2], clips[1::2])), f"s{seed}", codecs)


def make_number_calls(root: Path, n_calls: int, seed: int, codecs: list[str]) -> list[tuple[Path, list]]:
    """``n_calls`` calls in which the customer (right) says four sentences with personal numbers (the kinds
    shuffled over the calls), in the even-numbered sentence frames; a generated agent's clips on the left.
    Both sides draw voices of ``seed``, so a call's two sides may share one."""
    per_kind = -(-4 * n_calls // len(KINDS))
    sentences = personal_set(seed, per_kind, 0, frames="even")
    sentences = [sentences[i] for i in np.random.default_rng(seed).permutation(len(sentences))][: 4 * n_calls]
    folder = root / f"numbers-{seed}"
    folder.mkdir(parents=True)
    paths = speak_sentences(sentences, folder, seed, channel="telephone")
    said = [(sf.read(p, dtype="float32")[0], r.text, p.stem) for p, r in zip(paths, sentences)]
    agents = generated_clips(root, 4 * n_calls, seed)
    return write_calls(root, [(agents[k], said[4 * k: 4 * k + 4]) for k in range(n_calls)], f"n{seed}", codecs)


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


def rows_of(root: Path, name: str, calls, split: str = "train") -> list[ManifestRow]:
    labelled_batch(root / f"incoming-{name}", name, calls)
    every_row_in_train = IngestParams(test_fraction=0.0, dev_fraction=0.0)
    rows = ingest_batches(root / f"incoming-{name}", root / "dataset", every_row_in_train)
    return [dataclasses.replace(r, split=split) for r in decoded_rows(rows)]


def rank_correlation(a: list[float], b: list[float]) -> float:
    """Spearman's rho of two equally long lists (ties broken by order)."""
    ranks = [np.argsort(np.argsort(x)).astype(float) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


Model = tuple  # (model, processor) of zhasr.model.loading.load_model


def decoded(model: Model, paths: list[Path]) -> list[str]:
    return [t.text for t in transcribe(*model, [load_16k(p) for p in paths], DecodeOptions())]


def cer(model: Model, rows: list[ManifestRow], dataset: Path) -> float:
    hyps = decoded(model, [dataset / r.audio for r in rows])
    return character_error_rate([r.text_norm for r in rows], hyps).rate


def redaction_recall(model: Model, sentences, paths: list[Path]) -> dict[str, float]:
    """Decoded-text redaction recall per kind (bench/redaction.py's rule) of the model on the sentences."""
    table = redaction_score(sentences, decoded(model, paths), True)
    return {kind: round(table[kind]["recall"], 4) for kind in KINDS}


def recall_text(recall: dict[str, float]) -> str:
    """"61.0: 80 / 55 / 70 / 60 / 40": the mean over kinds, then each kind, in %."""
    return f"{100 * statistics.mean(recall.values()):.1f}: " + " / ".join(f"{100 * v:.0f}" for v in recall.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40, help="calls in the pool")
    parser.add_argument("--test-calls", type=int, default=12)
    parser.add_argument("--budget", type=float, default=0.2, help="share of the pool's minutes labelled")
    parser.add_argument("--random-seeds", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=0,
                        help="every run trains exactly this many steps, whatever it labelled (0: --epochs decide)")
    parser.add_argument("--champion", type=Path, help="the model whose transcripts rank the pool (default whisper-base;"
                        " a deployment's is its adapted production model, e.g. models/candidate after make demo)")
    parser.add_argument("--challenger", type=Path, default=REPO / "models" / "candidate")
    parser.add_argument("--codecs", default="mulaw", help="telephone codecs the calls go through, one a call in turn "
                                                            "(e.g. mulaw,amr-nb-lossy,g723: a mix of lines)")
    parser.add_argument("--number-calls", type=int, default=0,
                        help="calls in which the customer gives numbers, added to the pool (see above)")
    parser.add_argument("--numbers-per-kind", type=int, default=20,
                        help="held-out sentences a kind that redaction recall is measured on (with --number-calls)")
    parser.add_argument("--strategies", default="confidence,disagreement,oracle",
                        help="run at half and the whole budget, beside random (disagreement: when a challenger exists)")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    unknown = set(args.strategies.split(",")) - {"confidence", "disagreement", "numbers", "oracle"}
    if unknown:
        parser.error(f"--strategies: unknown {', '.join(sorted(unknown))} (random always runs)")
    with tempfile.TemporaryDirectory(prefix="zhasr-al-") as folder:  # the calls, the batches, the adapters
        run(args, Path(folder))


def run(args: argparse.Namespace, root: Path) -> None:
    from zhasr.model.ct2_import import ensure_packaged_base_model

    base = ensure_packaged_base_model(REPO / "models" / "whisper-base")
    params = load_params(REPO / "params.yaml")
    started = time.perf_counter()
    codecs = args.codecs.split(",")
    pool, test = make_calls(root, args.calls, 11, codecs), make_calls(root, args.test_calls, 12, codecs)
    number_calls = make_number_calls(root, args.number_calls, 13, codecs) if args.number_calls else []
    pool += number_calls
    number_call_ids = {wav.stem for wav, _ in number_calls}
    test_rows = rows_of(root, "test", test, "test")
    held_out, held_out_paths = [], []
    if number_calls:
        held_out = personal_set(14, args.numbers_per_kind, 0, frames="odd")
        (root / "held-out-numbers").mkdir()
        held_out_paths = speak_sentences(held_out, root / "held-out-numbers", 14)
    real = []
    if REAL_ZH.is_file():
        from zhasr.data.importers import ImportOptions, import_dataset

        import_dataset("jsonl", REAL_ZH, root / "incoming-real", "real-zh", ImportOptions(split="regression"))
        originals_only = IngestParams(telephone_regression=False)
        real = decoded_rows(ingest_batches(root / "incoming-real", root / "dataset", originals_only))
    print(f"data: {len(pool)} pool calls ({len(number_calls)} with numbers), {len(test)} test calls "
          f"({len(test_rows)} turns), {len(real)} real clips; {time.perf_counter() - started:.0f} s", flush=True)

    champion = Transcriber.open(args.champion or base, params.transcribe)
    challenger = None
    if (args.challenger / "config.json").is_file():
        challenger = Transcriber.open(args.challenger, params.transcribe)
    candidates, durations, errors = [], {}, []
    for wav, turns in pool:
        result = champion.transcribe(wav, channels="split")
        other = challenger.transcribe(wav, channels="split") if challenger else None
        durations[wav.stem] = result.duration_s
        candidates.append(Candidate(wav.stem, result.duration_s, 1 - call_confidence(result), "2ch@8000",
                                    disagreement(result.text, other.text) if other else None,
                                    numbers_heard(result.text)))
        said = "".join(t.text for t in sorted(turns, key=lambda t: t.start))
        errors.append(character_error_rate([said], [result.text]).rate)
    oracle = [dataclasses.replace(c, uncertainty=e) for c, e in zip(candidates, errors)]
    if number_calls and len(number_calls) < len(pool):
        heard = {n: [c.numbers_per_minute for c in candidates if (c.call_id in number_call_ids) == n] for n in (1, 0)}
        print(f"numbers heard a minute: {statistics.mean(heard[1]):.2f} in calls with numbers, "
              f"{statistics.mean(heard[0]):.2f} in the others", flush=True)
    pool_min = sum(durations.values()) / 60
    rho = rank_correlation([c.uncertainty for c in candidates], errors)
    print(f"pool transcribed: {pool_min:.1f} min of calls; champion CER per call {100 * min(errors):.1f}-"
          f"{100 * max(errors):.1f}% (median {100 * statistics.median(errors):.1f}); rank correlation of "
          f"1 - confidence with it {rho:+.2f}; {time.perf_counter() - started:.0f} s", flush=True)

    untrained = load_model(base)
    base_test = cer(untrained, test_rows, root / "dataset")
    base_real = cer(untrained, real, root / "dataset") if real else None
    base_recall = redaction_recall(untrained, held_out, held_out_paths) if held_out else None
    runs = [("random", args.budget, s) for s in range(args.random_seeds)]
    for strategy in args.strategies.split(","):
        if strategy != "disagreement" or challenger:
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
        trained_model = load_model(base, adapter)
        test_cer = cer(trained_model, test_rows, root / "dataset")
        real_cer = cer(trained_model, real, root / "dataset") if real else None
        recall = redaction_recall(trained_model, held_out, held_out_paths) if held_out else None
        minutes = sum(c.duration_s for c in chosen) / 60
        speech_min = sum(r.duration_s for r in rows) / 60
        table.append({"strategy": strategy, "seed": seed, "budget_share": share, "calls": len(chosen),
                      "call_min": round(minutes, 2), "speech_min": round(speech_min, 2), "steps": trained.steps,
                      "test_cer": round(test_cer, 4), "gain_points": round(100 * (base_test - test_cer), 2),
                      "gain_per_min": round(100 * (base_test - test_cer) / minutes, 3),
                      "real_cer": None if real_cer is None else round(real_cer, 4),
                      "number_calls": sum(c.call_id in number_call_ids for c in chosen), "redaction_recall": recall})
        print(json.dumps(table[-1]), f"{time.perf_counter() - started:.0f} s", flush=True)

    print(f"\nwhisper-base before labelling: test CER {100 * base_test:.2f}%"
          + (f", real speech {100 * base_real:.2f}%" if base_real is not None else "")
          + (f", redaction recall {recall_text(base_recall)}" if base_recall else ""))
    print(f"pool {len(pool)} calls ({args.codecs}), {pool_min:.1f} min; budget {args.budget:.0%} of it; "
          + (f"{args.steps} steps a run; " if args.steps else f"{args.epochs} epochs; ")
          + f"total {time.perf_counter() - started:.0f} s\n")
    numbers = bool(held_out)
    print("| strategy | seed | budget | calls | call min | speech min | steps | test CER % | gain (points) "
          "| gain / call min | real CER % |" + (" calls with numbers | redaction recall % (mean: " +
                                                  " / ".join(KINDS) + ") |" if numbers else ""))
    print("|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if numbers else ""))
    for t in table:
        real_text = "" if t["real_cer"] is None else f"{100 * t['real_cer']:.2f}"
        print(f"| {t['strategy']} | {t['seed']} | {t['budget_share']:.0%} | {t['calls']} | {t['call_min']} | "
              f"{t['speech_min']} | {t['steps']} | {100 * t['test_cer']:.2f} | {t['gain_points']:+.2f} "
              f"| {t['gain_per_min']:+.3f} | {real_text} |"
              + (f" {t['number_calls']} | {recall_text(t['redaction_recall'])} |" if numbers else ""))
    randoms = [t["gain_points"] for t in table if t["strategy"] == "random"]
    if randoms:  # none when no call fits the budget
        print(f"\nrandom at {args.budget:.0%}: gain {statistics.mean(randoms):+.2f} points "
              f"(seeds {', '.join(f'{g:+.2f}' for g in randoms)})")
    if args.out:
        summary = {"base_test_cer": base_test, "base_real_cer": base_real, "base_redaction_recall": base_recall,
                   "pool_cer_per_call": errors,
                   "confidence_rank_correlation": rho, "rows": table}
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
