"""Synthetic Mandarin call-center speech: templates, espeak-ng voices, telephone channel, noise.

Debian's espeak-ng cannot read Han characters with ``-v cmn``, so each label is
converted to tone-numbered pinyin (``nin2 hao3 , qing3 wen4 .``) and spoken by
``-v cmn-latn-pinyin+VARIANT``. The topic calls' labels contain Chinese characters only: every
number is written the way it is spoken (order number 三五七二零八一六, amount
三百二十八元, date 三月十五号), so label and audio agree character for character.

The corpus is a set of calls. One call is one speaker (a fixed voice variant,
speed and pitch) on one channel at one noise level, saying up to
``clips_per_call`` utterances on one topic. ``personal_clips`` more utterances
come in calls where the customer gives personal data (``personal.py``: phone,
ID-card and bank-card numbers, codes, e-mail addresses, and order numbers,
amounts and dates), said digit by digit and labelled in the written forms a
labeller uses in turn (digits, groups, numerals); they fill only the
even-numbered sentence frames of each kind, so ``bench/redaction.py`` can judge
on frames nothing was trained on. Per clip::

    label --pypinyin--> pinyin --espeak-ng--> 22.05 kHz --sox--> 16 kHz wideband
                                                            or 300-3400 Hz band at 8 kHz
          --numpy--> silence padding, level, white/pink noise at snr_db
          (telephone: 8-bit mu-law companding) --> PCM-16 WAV

Output, written atomically (a hidden temporary folder, renamed when complete)::

    <out_dir>/<batch>/manifest.jsonl   {"id", "audio", "text", "template", "speaker", "call_id", "channel",
                                        "snr_db"}, and "personal" (the kind) on a clip giving personal data
    <out_dir>/<batch>/audio/<id>.wav
    <out_dir>/<batch>/synth.json       settings and the speakers' voice settings

The same settings give byte-identical files on the same machine (espeak-ng, sox
and numpy versions fixed): every random draw comes from a generator seeded by
``(seed, kind, index)``, never from thread order.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np
import soundfile as sf

from zhasr.config import PersonalNaming, SynthParams
from zhasr.data.manifest import atomic_write_json, atomic_write_jsonl
from zhasr.data.synth.personal import FORMS, PiiSentence, other_sentence, personal_sentence
from zhasr.data.synth.voice import (
    ESPEAK_VOICE,
    VOICE_VARIANTS,
    Call,
    Speaker,
    apply_channel,
    check_tools,
    render,
    speak,
    to_pinyin,
)
from zhasr.data.synth.words import TOPICS, make_sentence
from zhasr.progress import progress_bar


def _rng(seed: int, kind: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, kind, index]))


def plan_speakers(params: SynthParams) -> list[Speaker]:
    """``n_speakers`` voices: variants cycled, speed and pitch drawn per speaker."""
    speakers = []
    for i in range(params.n_speakers):
        rng = _rng(params.seed, 1, i)
        speakers.append(Speaker(
            id=f"syn{params.seed}-spk{i:02d}", variant=VOICE_VARIANTS[i % len(VOICE_VARIANTS)],
            speed_wpm=int(rng.integers(params.speed_wpm[0], params.speed_wpm[1] + 1)),
            pitch=int(rng.integers(params.pitch[0], params.pitch[1] + 1)),
        ))
    return speakers


PERSONAL_TOPIC = "personal"  # the topic of calls made of personal.py's sentences
# The kinds a personal call's clips go through in turn ("": numbers that are not personal data); e-mail twice:
# trained on 25 sentences of each kind, its recall trailed the others' by 25-35 points (docs/numbers-measured.md).
PERSONAL_ROTATION = ("phone", "id_card", "bank_card", "code", "email", "email", "")


def _n_calls(params: SynthParams) -> tuple[int, int]:
    """(calls on the topics, calls giving personal data)."""
    n_topic = min(params.n_clips, max(params.n_speakers, math.ceil(params.n_clips / params.clips_per_call)))
    return n_topic, math.ceil(params.personal_clips / params.clips_per_call)


def plan_calls(params: SynthParams) -> list[Call]:
    """At least one call per speaker (if there are enough clips) on the topics, then the calls giving personal
    data; ``telephone_fraction`` of each telephone. Adding personal calls leaves the others as they were."""
    speakers = plan_speakers(params)
    n_topic, n_personal = _n_calls(params)

    def plan(first: int, count: int, kind: int, topic: Callable[[np.random.Generator], str]) -> list[Call]:
        order = _rng(params.seed, kind, 0).permutation(count)
        n_phone = round(params.telephone_fraction * count)
        calls = []
        for i in range(count):
            rng = _rng(params.seed, kind + 1, i)
            calls.append(Call(
                id=f"syn{params.seed}-call{first + i:04d}", speaker=speakers[(first + i) % len(speakers)],
                topic=topic(rng), channel="telephone" if order[i] < n_phone else "wideband",
                snr_db=float(params.snr_db[int(rng.integers(len(params.snr_db)))]),
                noise=params.noise_colors[int(rng.integers(len(params.noise_colors)))],
            ))
        return calls

    return (plan(0, n_topic, 2, lambda rng: TOPICS[int(rng.integers(len(TOPICS)))])
            + plan(n_topic, n_personal, 5, lambda rng: PERSONAL_TOPIC))


def _sentence(call: Call, first: bool, last: bool, rng: np.random.Generator, personal_index: int,
              naming: PersonalNaming) -> tuple[str, str, str, str]:
    """(label, pinyin spoken, template id, personal-data kind or "") of a clip; ``personal_index`` counts the
    clips of personal calls (kinds and written forms go round in turn)."""
    if call.topic != PERSONAL_TOPIC:
        text, template = make_sentence(rng, call.topic, first=first, last=last)
        return text, to_pinyin(text), template, ""
    kind = PERSONAL_ROTATION[personal_index % len(PERSONAL_ROTATION)]
    form = FORMS[personal_index // len(PERSONAL_ROTATION) % len(FORMS)]
    s = personal_sentence(rng, kind, form, "even", naming) if kind else other_sentence(rng, form, "even")
    return s.text, s.pinyin, f"{PERSONAL_TOPIC}/{kind or 'other'}/{s.frame}", kind


def _synthesize_clip(k: int, call: Call, first: bool, last: bool, clip_id: str, audio_dir: Path,
                     params: SynthParams) -> dict[str, Any]:
    rng = _rng(params.seed, 4, k)
    text, pinyin, template, kind = _sentence(call, first, last, rng, k - params.n_clips, params.personal_naming)
    speech, rate = apply_channel(speak(pinyin, call.speaker), call.channel, params)
    samples = render(speech, rate, call, rng, params)
    path = audio_dir / f"{clip_id}.wav"
    sf.write(path, samples, rate, format="WAV", subtype="PCM_16")
    return {"id": clip_id, "audio": f"audio/{path.name}", "text": text, "template": template,
            "speaker": call.speaker.id, "call_id": call.id, "channel": call.channel, "snr_db": call.snr_db} | (
        {"personal": kind} if kind else {})


def synthesize_batch(
    out_dir: Path, params: SynthParams,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``out_dir/<params.batch>/`` (manifest.jsonl, audio/, synth.json) and return that folder.

    ``progress(done, total)`` is called after each clip; without it a rich
    progress bar is shown. The batch is built in a hidden temporary folder under
    ``out_dir`` and renamed into place when complete: an interrupted run leaves
    no ``<params.batch>`` folder. An existing batch is never overwritten
    (FileExistsError).
    """
    batch_id = params.batch
    check_tools()
    out_dir = Path(out_dir)
    target = out_dir / batch_id
    if target.exists():
        raise FileExistsError(f"{target}: batch already exists; remove it or choose another batch id")
    calls = plan_calls(params)
    n_topic, n_personal = _n_calls(params)
    # Clip k belongs to call k * n_calls // n_clips: contiguous, near-equal runs; personal clips likewise after.
    owner = [k * n_topic // params.n_clips for k in range(params.n_clips)] + [
        n_topic + k * n_personal // params.personal_clips for k in range(params.personal_clips)]
    jobs = [(k, calls[j], k == 0 or owner[k - 1] != j, k == len(owner) - 1 or owner[k + 1] != j,
             f"{batch_id}-{k:05d}") for k, j in enumerate(owner)]
    out_dir.mkdir(parents=True, exist_ok=True)
    # Two levels deep, so a `*/manifest.jsonl` glob over out_dir never sees a half batch.
    staging = Path(tempfile.mkdtemp(prefix=f".{batch_id}.partial-", dir=out_dir))
    try:
        work = staging / batch_id
        audio_dir = work / "audio"
        audio_dir.mkdir(parents=True)
        rows = []
        with _progress(progress, f"synth {batch_id}") as report, ThreadPoolExecutor(max_workers=params.workers) as pool:
            futures = [pool.submit(_synthesize_clip, *job, audio_dir, params) for job in jobs]
            try:
                for done, future in enumerate(futures, start=1):
                    rows.append(future.result())
                    report(done, len(futures))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        atomic_write_json(work / "synth.json", {
            "options": asdict(params),
            "speakers": [asdict(s) for s in plan_speakers(params)],
            "voice": ESPEAK_VOICE,
        })
        atomic_write_jsonl(work / "manifest.jsonl", rows)
        work.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# settings synth.json did not always record, with the value every batch made before had
_BEFORE_RECORDED = {"personal_naming": "frame"}


def check_batch_settings(batch_dir: Path, params: SynthParams) -> None:
    """A batch already written to ``batch_dir`` was synthesized with ``params``: else ValueError naming its
    synth.json and each setting that differs (settings the file predates are not compared, but for
    ``_BEFORE_RECORDED``'s)."""
    made = {**_BEFORE_RECORDED, **json.loads((batch_dir / "synth.json").read_text(encoding="utf-8"))["options"]}
    asked = json.loads(json.dumps(asdict(params)))  # tuples as lists, as the file holds them
    unused = {"personal_naming"} if not asked["personal_clips"] else set()  # it names nothing without those clips
    differ = [f"{key} {made[key]!r} there, {asked[key]!r} asked" for key in sorted(made.keys() & asked.keys() - unused)
              if made[key] != asked[key]]
    if differ:
        raise ValueError(f"{batch_dir / 'synth.json'}: the batch was synthesized with other settings "
                         f"({'; '.join(differ)}); remove {batch_dir} to synthesize it again")


def _progress(progress: Callable[[int, int], None] | None, description: str) -> ContextManager[Callable[[int, int], None]]:
    return nullcontext(progress) if progress is not None else progress_bar(description)


def speak_sentences(rows: list[PiiSentence], out: Path, params: SynthParams) -> list[Path]:
    """A 16-bit WAV per sentence in ``out`` (``pii<i>.wav``), said by ``params``' voices in turn, noise of its
    levels and colours; odd sentences through the 8 kHz telephone channel, even ones wideband."""
    speakers = plan_speakers(params)

    def one(i: int) -> Path:
        rng = np.random.default_rng([params.seed, i])
        speaker = speakers[i % len(speakers)]
        call = Call(f"pii{i}", speaker, "account", "telephone" if i % 2 else "wideband",
                    float(params.snr_db[int(rng.integers(len(params.snr_db)))]),
                    params.noise_colors[int(rng.integers(len(params.noise_colors)))])
        speech, rate = apply_channel(speak(rows[i].pinyin, speaker), call.channel, params)
        path = out / f"pii{i:05d}.wav"
        sf.write(path, render(speech, rate, call, rng, params), rate, subtype="PCM_16")
        return path

    out.mkdir(parents=True, exist_ok=True)
    with progress_bar("synthesize sentences") as report, ThreadPoolExecutor(max_workers=params.workers) as pool:
        paths = []
        for path in pool.map(one, range(len(rows))):
            paths.append(path)
            report(len(paths), len(rows))
    return paths
