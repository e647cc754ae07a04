"""Redaction recall and precision per kind, on reference text and on the demo candidate's decoding.

    .venv/bin/python bench/redaction.py                     # 200 sentences a kind, 300 without personal data
    .venv/bin/python bench/redaction.py --per-kind 40 --others 60    # quicker
    .venv/bin/python bench/redaction.py --rescore out.json  # the decodings of an earlier --out, scored again

Sentences of ``zhasr.data.synth.personal`` (a number of each kind in a call-center sentence, written in
one of five forms) are spoken by the demo's synthetic voices (half wideband, half 8 kHz mu-law telephone,
noise as in the demo) and decoded by the demo's candidate (its ct2-int8 export when there is one, as the
service serves it). ``zhasr.calltext.pii.find_pii`` is run on each reference text and each decoding.

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
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zhasr.calltext.pii import KINDS, NUMBER, redact  # noqa: E402
from zhasr.config import SynthParams, load_params  # noqa: E402
from zhasr.data.synth import plan_speakers  # noqa: E402
from zhasr.data.synth.personal import PiiSentence, personal_set  # noqa: E402
from zhasr.data.synth.voice import Call, apply_channel, render, speak, to_pinyin  # noqa: E402
from zhasr.progress import progress_bar  # noqa: E402
from zhasr.transcribe import Transcriber  # noqa: E402

_DIGIT = {ch: str(i) for i, ch in enumerate("零一二三四五六七八九")} | {"〇": "0", "幺": "1"}


def digit_view(text: str) -> str:
    """The text's digits in order, numerals read as digits; everything else dropped."""
    return "".join(_DIGIT.get(ch, ch) for ch in text if ch.isdigit() or ch in _DIGIT)


def leaks(row: PiiSentence, redacted: str) -> bool:
    if row.kind == "email":
        name = re.sub(r"\d", "", row.value.split("@")[0])
        return name.lower() in redacted.lower().replace(" ", "")
    digits, window = digit_view(redacted), min(4, len(row.value))
    value = row.value.replace("X", "")
    return any(value[i:i + window] in digits for i in range(len(value) - window + 1))


def synthesize(rows: list[PiiSentence], out: Path, seed: int) -> list[Path]:
    params = SynthParams(n_speakers=14, seed=seed)
    speakers = plan_speakers(params)

    def one(i: int) -> Path:
        rng = np.random.default_rng([seed, i])
        speaker = speakers[i % len(speakers)]
        call = Call(f"pii{i}", speaker, "account", "telephone" if i % 2 else "wideband",
                    float(params.snr_db[int(rng.integers(len(params.snr_db)))]),
                    params.noise_colors[int(rng.integers(len(params.noise_colors)))])
        speech, rate = apply_channel(speak(rows[i].pinyin_override or to_pinyin(rows[i].said), speaker),
                                     call.channel, params)
        path = out / f"pii{i:05d}.wav"
        sf.write(path, render(speech, rate, call, rng, params), rate, subtype="PCM_16")
        return path

    with ThreadPoolExecutor(max_workers=2) as pool, progress_bar("synthesize") as report:
        paths = []
        for path in pool.map(one, range(len(rows))):
            paths.append(path)
            report(len(paths), len(rows))
    return paths


def score(rows: list[PiiSentence], texts: list[str], decoded: bool) -> dict[str, dict[str, float]]:
    hit, leak_free, total, spans, right, personal, digits_right, netted = (Counter() for _ in range(8))
    for row, text in zip(rows, texts):
        redacted, found = redact(text)
        with_number, extra = redact(text, (*KINDS, NUMBER))
        netted[row.kind] += not row.kind and any(f.kind == NUMBER for f in extra) or bool(row.kind) and not leaks(
            row, with_number)
        for f in found:
            spans[f.kind] += 1
            on_number = bool(row.kind) and (decoded or (f.start < row.end and row.start < f.end))
            right[f.kind] += on_number and f.kind == row.kind
            personal[f.kind] += on_number
        if not row.kind:
            continue
        total[row.kind] += 1
        if decoded:
            clean = not leaks(row, redacted)
            leak_free[row.kind] += clean
            hit[row.kind] += clean and any(f.kind == row.kind for f in found)
            digits_right[row.kind] += (row.value.replace("X", "") in digit_view(text) if row.kind != "email"
                                       else row.value.lower() in text.lower().replace(" ", ""))
        else:
            hit[row.kind] += any(f.kind == row.kind and f.start <= row.start and f.end >= row.end for f in found)
    table = {}
    for kind in KINDS:
        table[kind] = {"sentences": total[kind], "recall": hit[kind] / max(1, total[kind]),
                       "precision": right[kind] / spans[kind] if spans[kind] else 1.0, "spans": spans[kind],
                       "on_personal_data": personal[kind] / spans[kind] if spans[kind] else 1.0}
        if decoded:
            table[kind] |= {"leak_free": leak_free[kind] / max(1, total[kind]),
                            "digits_right": digits_right[kind] / max(1, total[kind]),
                            "leak_free_with_number": netted[kind] / max(1, total[kind])}
    table["none"] = {"sentences": sum(1 for r in rows if not r.kind), "masked_by_number": netted[""]}
    return table


def print_table(title: str, table: dict[str, dict[str, float]]) -> None:
    decoded = "leak_free" in table[KINDS[0]]
    print(f"\n{title}\n")
    print("| kind | sentences | recall % | precision % (spans) | on personal data % |"
          + (" leak-free % | digits right % | leak-free with number % |" if decoded else ""))
    print("|---|---|---|---|---|" + ("---|---|---|" if decoded else ""))
    for kind in KINDS:
        t = table[kind]
        line = (f"| {kind} | {t['sentences']} | {100 * t['recall']:.1f} | {100 * t['precision']:.1f} ({t['spans']}) | "
                f"{100 * t['on_personal_data']:.1f} |")
        if decoded:
            line += " " + " ".join(f"{100 * t[k]:.1f} |" for k in ("leak_free", "digits_right", "leak_free_with_number"))
        print(line)
    print(f"\nnumber masks {table['none']['masked_by_number']} of the {table['none']['sentences']} sentences without "
          "personal data")


def decode(rows: list[PiiSentence], args: argparse.Namespace) -> tuple[Path, list[str]]:
    model = args.model or next(p for p in (REPO / "models/exports/ct2-int8", REPO / "models/candidate")
                               if (p / "config.json").is_file())
    started = time.perf_counter()
    paths = synthesize(rows, Path(tempfile.mkdtemp(prefix="zhasr-redaction-")), args.seed)
    synth_s = time.perf_counter() - started
    transcriber = Transcriber.open(model, load_params(REPO / "params.yaml").transcribe)
    total = sum(sf.info(p).duration for p in paths)
    with progress_bar("decode (s of speech)") as report:
        results = transcriber.transcribe_many(paths, across_inputs=True,
                                              progress=lambda done, whole: report(round(done), round(whole)))
    print(f"{len(rows)} sentences, {total / 60:.1f} min of speech; synthesis {synth_s:.0f} s, decoding "
          f"{time.perf_counter() - started - synth_s:.0f} s with {model}")
    return model, [r.text for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=200)
    parser.add_argument("--others", type=int, default=300, help="sentences with numbers that are not personal data")
    parser.add_argument("--seed", type=int, default=20261205)
    parser.add_argument("--model", type=Path, help="default: models/exports/ct2-int8, else models/candidate")
    parser.add_argument("--out", type=Path, help="also write the tables and every decoding as JSON here")
    parser.add_argument("--rescore", type=Path, help="score the decodings of an earlier --out (same set options)")
    args = parser.parse_args()
    rows = personal_set(args.seed, args.per_kind, args.others)
    if args.rescore:
        earlier = json.loads(args.rescore.read_text(encoding="utf-8"))
        model, texts = Path(earlier["model"]), [r["decoded"] for r in earlier["rows"]]
        if [r["reference"] for r in earlier["rows"]] != [r.text for r in rows]:
            raise SystemExit(f"{args.rescore}: made with other --seed, --per-kind or --others")
    else:
        model, texts = decode(rows, args)
    reference, decoded = score(rows, [r.text for r in rows], False), score(rows, texts, True)
    print_table("Reference text (every written form)", reference)
    print_table("Decoded text (the candidate)", decoded)
    by_channel = {}
    for name, parity in (("wideband", 0), ("telephone", 1)):
        picked = [i for i in range(len(rows)) if i % 2 == parity]
        by_channel[name] = score([rows[i] for i in picked], [texts[i] for i in picked], True)
        print_table(f"Decoded text, {name} clips only", by_channel[name])
    if args.out:
        args.out.write_text(json.dumps({
            "model": str(model), "reference": reference, "decoded": decoded, "by_channel": by_channel,
            "rows": [{"kind": r.kind, "form": r.form, "reference": r.text, "decoded": t} for r, t in zip(rows, texts)]},
            ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
