"""Redaction recall and precision per kind, on reference text and on the demo candidate's decoding.

    .venv/bin/python bench/redaction.py                     # 200 sentences a kind, 300 without personal data
    .venv/bin/python bench/redaction.py --per-kind 40 --others 60    # quicker
    .venv/bin/python bench/redaction.py --rescore out.json  # the decodings of an earlier --out, scored again
    .venv/bin/python bench/redaction.py --adapt 60          # also: the candidate trained on calls with numbers
    .venv/bin/python bench/redaction.py --detector models/detector/ct2-int8   # and the project's number detector
    .venv/bin/python bench/redaction.py --detector OLD NEW  # two detectors side by side, the candidate decoded once
    .venv/bin/python bench/redaction.py --codec g723        # the telephone half through G.723.1 instead of mu-law
    .venv/bin/python bench/redaction.py --windows call      # the sentences as turns of calls, decoded as calls

Sentences of ``zhasr.data.synth.personal`` (a number of each kind in a call-center sentence, written in one of
five forms) are spoken by the demo's synthetic voices (half wideband, half 8 kHz telephone through mu-law or
``--codec``, noise as in the demo) and decoded by the demo's candidate (its ct2-int8 export when there is one,
as the service serves it), each sentence whole as the service answers a request of it (``--windows shared``:
several sentences in one window, about 1.3x faster, as every figure the docs give from this bench was, unless
it says otherwise; a sentence's decoding then moves with its neighbours; ``--windows call``: the sentences
made into two-voice calls of about 10 turns, a channel per voice, each call decoded as the service decodes a call,
whose channel's turns share windows, and its segments given back to the turns they overlap, see
``zhasr.data.synth.call.sentence_calls``). ``zhasr.calltext.pii.find_pii`` is
run on each reference text and each decoding. The demo's calls giving personal data (``synth.personal_clips``)
use other numbers, voice speeds, pitches and noise, and only the even-numbered sentence frames of each kind:
the decoded tables are also given for the odd frames alone.

- recall: sentences whose number is covered by a span of its kind (reference), or found as its kind with
  none of its digits left readable (decoded: no 4 consecutive digits of it, in any written form, remain in
  the redacted text; an e-mail: its name letters do not remain);
- leak-free: decoded sentences with none of the number's digits left readable, whatever kind was found;
- precision: spans of a kind that fall on a number of that kind (sentences without personal data give
  only false ones); "on personal data": spans that fall on a number of any kind (an ID number heard
  one digit short and taken for a bank card is still redacted);
- digits right: decoded sentences whose digits contain the whole number (what the model heard);
- with number: leak-free when the opt-in kind ``number`` also masks every other run of 7+ digits, and
  (last line) how many sentences without personal data it masks.

``--adapt N`` asks what labelled calls with numbers would give: the candidate (``models/candidate``) is
trained with the project's training defaults on N sentences of every kind and N without personal data of
another seed (other numbers, voice settings and noise), said only in the even-numbered sentence frames of
each kind, named as ``synth.personal_naming`` says; merged and exported to ct2 int8, it decodes the same set,
which is then scored twice: whole, and on its odd-numbered frames alone (sentences never trained on).
``--heard`` (with ``--adapt``) decodes both with word times, as the service does where redaction is asked, and
also scores the candidate's text with what the trained model heard taken out of it by time
(``finish_text(..., heard=)``): the trained model as a number detector, its own text never shown. ``--detector PATH ...`` does the same with each detector ``zhasr detector``
trained (``models/detector/ct2-int8``; it says the even-numbered frames only, like the demo's calls), one after
the other on the same decodings of the candidate.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zhasr.config import IngestParams, SynthParams, load_params  # noqa: E402
from zhasr.data.codecs import CODECS, telephone  # noqa: E402
from zhasr.data.ingest import decoded_rows, ingest_batches  # noqa: E402
from zhasr.data.synth import speak_sentences  # noqa: E402
from zhasr.data.synth.call import SentenceCall, sentence_calls  # noqa: E402
from zhasr.data.synth.personal import PiiSentence, personal_set  # noqa: E402
from zhasr.evaluation.redaction_recall import Heard, RedactionScore, score  # noqa: E402
from zhasr.evaluation.turns import transcribe_sentence_calls  # noqa: E402
from zhasr.export.ct2 import write_ct2  # noqa: E402
from zhasr.model.merge import merge_adapter  # noqa: E402
from zhasr.model.train import train_adapter  # noqa: E402
from zhasr.progress import progress_bar  # noqa: E402
from zhasr.transcribe import Transcriber  # noqa: E402
from zhasr.transcribe.records import Transcription  # noqa: E402

VOICES = 14  # demo voices saying the sentences, sentence i by voice i % VOICES


def synthesize(rows: list[PiiSentence], out: Path, seed: int, codec: str = "mulaw") -> list[Path]:
    """A WAV a sentence in ``out``, spoken by the demo voices of ``seed``: odd sentences telephone (8 kHz, through
    ``codec``: one of ``zhasr.data.codecs.CODECS``), even ones wideband."""
    paths = speak_sentences(rows, out, SynthParams(n_speakers=VOICES, seed=seed, mulaw=codec == "mulaw"))
    if codec != "mulaw":
        for path in paths[1::2]:
            samples, rate = sf.read(path, dtype="float32")
            sf.write(path, telephone(samples, codec, rate), rate, subtype="PCM_16")
    return paths


def print_table(title: str, table: RedactionScore) -> None:
    print(f"\n{title}\n")
    print("| kind | sentences | recall % | precision % (spans) | on personal data % |"
          + (" leak-free % | digits right % | leak-free with number % |" if table.decoded else ""))
    print("|---|---|---|---|---|" + ("---|---|---|" if table.decoded else ""))
    for kind, t in table.kinds.items():
        line = (f"| {kind} | {t.sentences} | {100 * t.recall:.1f} | {100 * t.precision:.1f} ({t.spans}) | "
                f"{100 * t.on_personal_data:.1f} |")
        if table.decoded:
            line += " " + " ".join(f"{100 * v:.1f} |" for v in (t.leak_free, t.digits_right, t.leak_free_with_number))
        print(line)
    print(f"\nnumber masks {table.masked_by_number} of the {table.clean_sentences} sentences without personal data")


WINDOWS = {"sentence": "each sentence whole", "shared": "several sentences a window",  # --windows, as printed
           "call": "each sentence a turn of a two-voice call, the call decoded split by channel"}


def decode(model: Path, paths: list[Path], windows: str, calls: list[SentenceCall], beams: int | None = None,
           words: bool = False) -> list[Transcription]:
    """Each sentence's decoding, as ``windows`` says: ``sentence``, whole, as the service decodes a request of
    it; ``shared``, several sentences in one window, which the service never does across requests; ``call``,
    ``calls`` (of every sentence) decoded as the service decodes a call (a channel's turns share windows), cut
    back into their turns. ``beams``: another ``transcribe.num_beams``; ``words``: with word times, as where
    redaction is asked."""
    started = time.perf_counter()
    settings = load_params(REPO / "params.yaml").transcribe
    transcriber = Transcriber.open(model, dataclasses.replace(settings, num_beams=beams or settings.num_beams))
    total = sum(sf.info(p).duration for p in paths)
    with progress_bar("decode (s of speech)") as show:
        progress = lambda done, whole: show(round(done), round(whole))  # noqa: E731
        if windows == "call":
            results = transcribe_sentence_calls(transcriber, calls, words=words, progress=progress)
        else:
            results = transcriber.transcribe_many(paths, across_inputs=windows == "shared", words=words,
                                                  progress=progress)
    print(f"{len(paths)} sentences, {total / 60:.1f} min of speech decoded in {time.perf_counter() - started:.0f} s "
          f"with {model}, {WINDOWS[windows]}", flush=True)
    return results


def adapt(model: Path, per_kind: int, seed: int, work: Path) -> Path:
    """``model`` (Hugging Face) trained on ``per_kind`` sentences of every kind and as many without personal
    data in the even-numbered frames, their numbers named as ``synth.personal_naming`` says, as labelled calls;
    merged, and exported to ct2 int8 (returned)."""
    params = load_params(REPO / "params.yaml")
    rows = personal_set(seed, per_kind, per_kind, frames="even", naming=params.synth.personal_naming)
    batch = work / "incoming" / "numbers"
    (batch / "audio").mkdir(parents=True)
    paths = synthesize(rows, batch / "audio", seed)
    (batch / "manifest.jsonl").write_text("".join(
        json.dumps({"id": p.stem, "audio": f"audio/{p.name}", "text": r.text, "speaker": f"{seed}-{i % 14}"},
                   ensure_ascii=False) + "\n" for i, (p, r) in enumerate(zip(paths, rows))), encoding="utf-8")
    every_row_in_train = IngestParams(dev_fraction=0.0, test_fraction=0.0, template_test_fraction=0.0)
    train_rows = decoded_rows(ingest_batches(batch.parent, work / "dataset", every_row_in_train))
    started = time.perf_counter()
    trained = train_adapter(model, train_rows, work / "dataset", work / "run", params.train)
    merged = merge_adapter(model, trained.adapter_dir, work / "merged")
    print(f"trained on {len(train_rows)} sentences ({sum(r.duration_s for r in train_rows) / 60:.1f} min): "
          f"{trained.steps} steps, {time.perf_counter() - started:.0f} s with the merge", flush=True)
    return write_ct2(merged, work / "ct2-int8")


def report(title: str, rows: list[PiiSentence], texts: list[str] | list[Heard]) -> dict:
    """Print and return the decoded text's tables: all of it, and each channel alone."""
    decoded = score(rows, texts, True)
    print_table(f"Decoded text ({title})", decoded)
    by_channel = {}
    for name, parity in (("wideband", 0), ("telephone", 1)):
        picked = [i for i in range(len(rows)) if i % 2 == parity]
        by_channel[name] = score([rows[i] for i in picked], [texts[i] for i in picked], True)
        print_table(f"Decoded text ({title}), {name} clips only", by_channel[name])
    return {"decoded": decoded.to_dict(), "by_channel": {k: v.to_dict() for k, v in by_channel.items()}}


def print_side_by_side(result: dict) -> None:
    """Decoded recall % of each kind (precision % of its spans): the candidate alone and with what each trained
    model heard; whole set | frames never trained on."""
    columns = [("the candidate", result)] + [(f"with {t['title']}", t["heard"])
                                              for t in result["trained"] if "heard" in t]
    print("\nSide by side: decoded recall % (precision %), the whole set | the frames never trained on\n")
    print("| kind | " + " | ".join(f"{title} | held out" for title, _ in columns) + " |")
    print("|---|" + "---|---|" * len(columns))
    for kind in result["decoded"]["kinds"]:
        cells = []
        for _, table in columns:
            whole, held = table["decoded"]["kinds"][kind], table["held_out_frames"]["kinds"][kind]
            cells.append(f"{100 * whole['recall']:.1f} ({100 * whole['precision']:.1f}) | {100 * held['recall']:.1f}")
        print(f"| {kind} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=200)
    parser.add_argument("--others", type=int, default=300, help="sentences with numbers that are not personal data")
    parser.add_argument("--seed", type=int, default=20261205)
    parser.add_argument("--model", type=Path, help="default: models/exports/ct2-int8, else models/candidate")
    parser.add_argument("--adapt", type=int, default=0, metavar="N",
                        help="also train models/candidate on N sentences a kind of another seed (see above)")
    parser.add_argument("--detector", type=Path, nargs="+", default=[], metavar="PATH",
                        help="trained number detectors (zhasr detector's models/detector/ct2-int8): as --adapt --heard")
    parser.add_argument("--heard", action="store_true",
                        help="with --adapt: also the candidate's text with what the trained model heard (see above)")
    parser.add_argument("--codec", default="mulaw", choices=CODECS,
                        help="the telephone channel of the odd sentences (default: the synthesizer's mu-law)")
    parser.add_argument("--beams", type=int, help="beam width to decode with (default: transcribe.num_beams)")
    parser.add_argument("--windows", choices=tuple(WINDOWS), default="sentence",
                        help="sentence: each its own request, decoded whole; shared: several sentences in one "
                             "encoder window (a sentence's decoding then moves with its neighbours); call: each a turn "
                             "of a two-voice call of about 10, decoded as the service decodes a call")
    parser.add_argument("--out", type=Path, help="also write the tables and every decoding as JSON here")
    parser.add_argument("--rescore", type=Path, help="score the decodings of an earlier --out (same set options)")
    args = parser.parse_args()
    args.heard = args.heard or bool(args.detector)
    if args.heard and (not (args.adapt or args.detector) or args.rescore):
        parser.error("--heard needs --adapt; --heard and --detector decode afresh (not with --rescore)")
    if args.rescore and args.adapt:
        parser.error("--adapt trains and decodes afresh (not with --rescore)")
    rows = personal_set(args.seed, args.per_kind, args.others)
    trained: list[tuple[str, list[str], list[Heard] | None]] = []  # (title, its text, the candidate's with it heard)
    if args.rescore:
        earlier = json.loads(args.rescore.read_text(encoding="utf-8"))
        model, texts = Path(earlier["model"]), [r["decoded"] for r in earlier["rows"]]
        if [r["reference"] for r in earlier["rows"]] != [r.text for r in rows]:
            raise SystemExit(f"{args.rescore}: made with other --seed, --per-kind or --others")
        if "trained" not in earlier:
            raise SystemExit(f"{args.rescore}: written by an earlier layout of this bench; decode afresh")
        windows = earlier.get("windows", "shared")  # files written before the setting decoded shared windows
        trained = [(t["title"], [r["decoded_trained"][i] for r in earlier["rows"]], None)
                   for i, t in enumerate(earlier["trained"])]
    else:
        model = args.model or next(p for p in (REPO / "models/exports/ct2-int8", REPO / "models/candidate")
                                   if (p / "config.json").is_file())
        with tempfile.TemporaryDirectory(prefix="zhasr-redaction-") as folder:  # speech, the trained model
            work = Path(folder)
            (work / "set").mkdir()
            paths = synthesize(rows, work / "set", args.seed, args.codec)
            windows = args.windows
            calls = sentence_calls(paths, work / "calls", VOICES, seed=args.seed) if windows == "call" else []
            decodings = decode(model, paths, windows, calls, args.beams, args.heard)
            texts = [t.text for t in decodings]
            detectors = [(f"the detector {d}", d) for d in args.detector] + (
                [(f"the candidate trained on {args.adapt} sentences a kind",
                  adapt(REPO / "models" / "candidate", args.adapt, args.seed + 1, work))] if args.adapt else [])
            for title, detector in detectors:
                its = decode(detector, paths, windows, calls, args.beams, args.heard)
                trained.append((title, [t.text for t in its],
                                [Heard(d, h) for d, h in zip(decodings, its)] if args.heard else None))
    reference = score(rows, [r.text for r in rows], False)
    print_table("Reference text (every written form)", reference)
    held_out = [i for i, r in enumerate(rows) if r.frame % 2]

    def on_held_out(title: str, decoded: list[str] | list[Heard]) -> dict:
        scored = score([rows[i] for i in held_out], [decoded[i] for i in held_out], True)
        print_table(title, scored)
        return scored.to_dict()

    print(f"\nDecoded with {WINDOWS[windows]} (--windows {windows})")
    result = {"model": str(model), "windows": windows, "reference": reference.to_dict(), **report("the candidate", rows, texts),
              "held_out_frames": on_held_out("Decoded text (the candidate), only the frames the demo never says", texts)}
    result["trained"] = []
    for title, its_text, heard in trained:
        entry = {"title": title, "own_text": report(title, rows, its_text)}
        entry["own_text"]["held_out_frames"] = on_held_out(f"Decoded text ({title}), only the frames never trained on",
                                                           its_text)
        if heard is not None:
            entry["heard"] = report(f"the candidate's, with what {title} heard", rows, heard)
            entry["heard"]["held_out_frames"] = on_held_out(f"Decoded text (the candidate's, with what {title} "
                                                            "heard), only the frames never trained on", heard)
        result["trained"].append(entry)
    if any(heard is not None for _, _, heard in trained):
        print_side_by_side(result)
    if args.out:
        result["rows"] = [{"kind": r.kind, "form": r.form, "frame": r.frame, "reference": r.text, "decoded": t,
                           "decoded_trained": [its_text[i] for _, its_text, _ in trained]}
                          for i, (r, t) in enumerate(zip(rows, texts))]
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
