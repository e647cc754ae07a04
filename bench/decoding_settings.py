"""Decoding settings judged on held-out speech: how clips are cut and packed, and whether a prompt helps.

    .venv/bin/python bench/decoding_settings.py [--modes whole cut packed across] [--beams 1 5] [--no-prompt]
                                                [--tuning] [--out data/bench-decoding.json]

Run the demo first. Sets: real-zh's judging half (the gate's regression set: real Mandarin nothing is
tuned on) wideband, through G.711 mu-law (the ingest's telephone twin), and through the channels of
zhasr.data.codecs (G.711 A-law, AMR-NB 12.2 kbit/s, lossy AMR-NB 7.95 kbit/s with packet loss and
clipping, G.723.1 6.3 kbit/s, which training never hears); with ``--tuning`` also the tuning half the merge
guard reads, the same ways; the test split, and its sentences no training clip says (unseen). Systems:
the base model, the champion when it is another model, and the demo's candidate, each as the float32
CTranslate2 copy evaluation decodes with.

Modes, each with the prompt off and on (``evaluate.hotwords`` as the decoder prompt):
- whole: each clip decoded as it is, one window (the engine's default for a clip, ``transcribe.whole_clip_s``);
- cut: VAD pieces (cut at 500 ms pauses), each in a window of its own (the engine before packing);
- packed: VAD pieces of a clip in one window, decoded with timestamps (``whole_clip_s: 0``, ``pack_pieces``);
- across: pieces of several clips in one window (``across_inputs``: may evaluation pack its clips?), prompt off.

``--beams``: each mode at each beam width (``transcribe.num_beams``; 1 is greedy), a row each.

Prints one table of CER (numbers normalized, as evaluation scores) and audio seconds per second of
decoding (data loading excluded, the channels made before), then hotword recall on the test split.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODES = ("whole", "cut", "packed", "across")
CHANNELS = ("alaw", "amr-nb", "amr-nb-lossy", "g723")


def load_sets(ctx, tuning: bool = False) -> tuple[dict[str, list], dict[str, list[str]], dict[str, list[str]],
                                                  list[bool]]:
    """(``{set: clips}``, ``{set: references}``, ``{set: speakers}``, unseen flag per test clip); with
    ``tuning`` also real-zh's tuning half (the merge guard's) and its channels, ``tuning-<channel>``."""
    from zhasr.data import codecs
    from zhasr.data.audio import load_16k
    from zhasr.evaluation.slices import sentence_label

    rows = {name: ctx.split_rows(name) for name in ("test", "regression", "telephone")}
    if tuning:
        rows |= {"tuning": ctx.split_rows("tuning"), "tuning-telephone": ctx.split_rows("tuning-telephone")}
    clips = {name: [load_16k(ctx.path("dataset") / r.audio) for r in rs] for name, rs in rows.items()}
    refs = {name: [r.text for r in rs] for name, rs in rows.items()}
    speakers = {name: [r.speaker for r in rs] for name, rs in rows.items()}
    for half, codec in itertools.product(("regression", "tuning") if tuning else ("regression",), CHANNELS):
        name = codec if half == "regression" else f"tuning-{codec}"
        clips[name] = [codecs.telephone(c, codec) for c in clips[half]]
        refs[name], speakers[name] = refs[half], speakers[half]
    trained = {r.template for split in ("train", "dev") for r in ctx.split_rows(split)} - {None}
    unseen = [sentence_label(r, trained) == "unseen" for r in rows["test"]]
    return clips, refs, speakers, unseen


def systems(ctx) -> dict[str, Path]:
    """``{label: ct2 float32 folder}``: base, champion (when not the base) and candidate."""
    from mlflow_services import registry, tracking
    from tasks.decoding import Model, base_model_dir, ct2_copies
    from zhasr.export.ct2 import float32_copy

    tracking.configure(ctx)
    folders = {"base": base_model_dir(ctx)}
    champion = registry.version_by_alias(ctx.params.register.model_name, registry.CHAMPION)
    if champion is not None:
        folders["champion"] = registry.whisper_dir(champion)
    candidate = ctx.path("models") / "candidate"
    if (candidate / "config.json").is_file():
        folders["candidate"] = candidate
    out, seen = {}, set()
    for label, folder in folders.items():
        model = Model.of(label, folder)
        if model.weights not in seen:
            seen.add(model.weights)
            out[label] = float32_copy(model.folder, ct2_copies(ctx), model.weights)
    return out


def decode(transcriber, clips: list, mode: str, prompt: str | None) -> tuple[list[str], float]:
    """(text per clip, seconds) of one mode."""
    start = time.perf_counter()
    hotwords = prompt.split() if prompt else []
    results = transcriber.transcribe_many(clips, hotwords=hotwords, across_inputs=mode == "across")
    return [r.text for r in results], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES)
    parser.add_argument("--beams", nargs="*", type=int, help="beam widths (default: transcribe.num_beams)")
    parser.add_argument("--no-prompt", action="store_true", help="leave out the prompted rows")
    parser.add_argument("--tuning", action="store_true", help="also real-zh's tuning half and its channels")
    parser.add_argument("--out", type=Path, default=Path("data/bench-decoding.json"))
    args = parser.parse_args()

    from zhasr.context import StageContext
    from zhasr.evaluation.metrics import character_error_rate, hotword_recall
    from zhasr.model.decode import DecodeOptions
    from zhasr.transcribe import Transcriber
    from zhasr.transcribe.ct2_runtime import Ct2Runtime

    ctx = StageContext.load()
    p = ctx.params
    clips, refs, speakers, unseen = load_sets(ctx, args.tuning)
    audio_s = {name: sum(len(c) for c in cs) / 16000 for name, cs in clips.items()}
    print({name: f"{len(cs)} clips, {audio_s[name] / 60:.1f} min" for name, cs in clips.items()}, flush=True)
    prompt = " ".join(p.evaluate.hotwords)
    results: dict[str, dict] = {}
    for (label, folder), beams in itertools.product(systems(ctx).items(), args.beams or [p.transcribe.num_beams]):
        searched = dataclasses.replace(p.transcribe, num_beams=beams)
        runtime = Ct2Runtime(folder, DecodeOptions(searched, p.model.language, p.model.task), p.transcribe.threads)
        for mode in args.modes:
            settings = dataclasses.replace(searched, pack_pieces=mode != "cut",
                                           whole_clip_s=p.transcribe.whole_clip_s if mode == "whole" else 0.0)
            transcriber = Transcriber(runtime, settings, p.model.language, identity=label)
            row = mode if args.beams is None else f"{mode}, beam {beams}"
            for prompted in ((False,) if mode == "across" or args.no_prompt else (False, True)):
                for name in clips:
                    texts, seconds = decode(transcriber, clips[name], mode, prompt if prompted else None)
                    key = f"{label}|{row}|{'on' if prompted else 'off'}|{name}"
                    results[key] = {"cer": character_error_rate(refs[name], texts, numbers=True).rate,
                                    "speed": audio_s[name] / seconds, "texts": texts}
                    if name == "test":
                        pick = [i for i, u in enumerate(unseen) if u]
                        results[key.replace("|test", "|test-unseen")] = {
                            "cer": character_error_rate([refs[name][i] for i in pick], [texts[i] for i in pick],
                                                        numbers=True).rate, "speed": None}
                        recall = hotword_recall(refs[name], texts, p.evaluate.hotwords)
                        found, total = sum(f for f, _ in recall.values()), sum(n for _, n in recall.values())
                        results[key]["hotword_recall"] = found / total if total else None
                    print(key, f"CER {results[key]['cer']:.2%}", f"{results[key]['speed']:.1f} audio s/s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    print_tables(results)
    if args.beams and len(args.beams) > 1:
        print_beam_changes(results, refs, speakers, args.beams)


def print_beam_changes(results: dict[str, dict], refs: dict[str, list[str]], speakers: dict[str, list[str]],
                       beams: list[int]) -> None:
    """Each system's CER change from the first beam width to each other, per set, in points, with a 95 %
    paired interval (a speaker's clips resampled together, as the gate reads real speech)."""
    from zhasr.evaluation.bootstrap import paired_bootstrap_gain
    from zhasr.evaluation.metrics import character_error_rate

    def edits(name: str, texts: list[str]) -> tuple[list[int], list[int]]:
        rate = character_error_rate(refs[name], texts, numbers=True)
        return ([u.substitutions + u.deletions + u.insertions for u in rate.utterances],
                [u.reference_len for u in rate.utterances])

    print(f"\nCER change from beam {beams[0]}, points [95 % interval, speakers resampled]\n")
    print("| system | mode | beam | " + " | ".join(refs) + " |")
    print("|---|---|---|" + "---|" * len(refs))
    for label, row, prompted, decoded in [k.split("|") for k in results]:
        mode, beam = row.rsplit(", beam ", 1)
        if decoded != "test" or beam == str(beams[0]):  # one table row a system, mode and wider beam
            continue
        cells = []
        for name in refs:
            wider, lens = edits(name, results[f"{label}|{row}|{prompted}|{name}"]["texts"])
            narrow, _ = edits(name, results[f"{label}|{mode}, beam {beams[0]}|{prompted}|{name}"]["texts"])
            gain = paired_bootstrap_gain(wider, narrow, lens, speakers=speakers[name]).as_loss()
            cells.append(f"{100 * gain[0]:+.2f} [{100 * gain[1]:+.2f}, {100 * gain[2]:+.2f}]")
        print(f"| {label} | {mode}{'' if prompted == 'off' else ', prompt'} | {beam} | " + " | ".join(cells) + " |")


def print_tables(results: dict[str, dict]) -> None:
    labels = sorted({k.split("|")[0] for k in results}, key=["base", "champion", "candidate"].index)
    sets = list(dict.fromkeys(k.split("|")[3] for k in results))
    rows = list(dict.fromkeys("|".join(k.split("|")[1:3]) for k in results))
    print("\nCER (numbers normalized); audio seconds per second of decoding in brackets\n")
    print("| mode | prompt | " + " | ".join(f"{s} {label}" for s in sets for label in labels) + " |")
    print("|---|---|" + "---|" * (len(sets) * len(labels)))
    for row in rows:
        cells = []
        for s in sets:
            for label in labels:
                r = results.get(f"{label}|{row}|{s}")
                cells.append("-" if r is None else f"{r['cer']:.1%}" + (f" ({r['speed']:.0f})" if r["speed"] else ""))
        print(f"| {row.replace('|', ' | ')} | " + " | ".join(cells) + " |")
    print("\nhotword recall on the test split (evaluate.hotwords)\n")
    print("| mode | prompt | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for row in rows:
        cells = [results.get(f"{label}|{row}|test", {}).get("hotword_recall") for label in labels]
        print(f"| {row.replace('|', ' | ')} | " + " | ".join("-" if c is None else f"{c:.1%}" for c in cells) + " |")


if __name__ == "__main__":
    main()
