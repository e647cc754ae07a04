"""The number detector's check: redaction recall scored on sentences whose number is known, and the verdict
that lets a new detector replace the one in place."""

from __future__ import annotations

import dataclasses

from zhasr.calltext.pii import KINDS
from zhasr.config import DetectorParams
from zhasr.data.synth.personal import personal_set
from zhasr.evaluation.detector_verdict import judge_detector
from zhasr.evaluation.redaction_recall import Heard, KindScore, RedactionScore, leaks, score
from zhasr.transcribe.records import Segment, Transcription, Word


def _decoded(text: str, words: list[Word]) -> Transcription:
    segment = Segment(0, 0.0, words[-1].end, text, 0, "", -0.2, 0.01, 1.0, words=tuple(words))
    return Transcription(text, (segment,), words[-1].end, "zh", "m", "ct2", "mix")


def test_reference_text_finds_every_number_of_a_held_out_seed():
    rows = personal_set(seed=4242, per_kind=20, others=20, frames="odd")
    scored = score(rows, [r.text for r in rows], decoded=False)
    assert not scored.decoded and scored.clean_sentences == 20
    assert all(s.sentences == 20 and s.recall == 1.0 and s.leak_free is None for s in scored.kinds.values())
    assert scored.on_personal_data == 1.0 and scored.mean_recall == 1.0


def test_a_garbled_decoding_is_missed_alone_and_found_with_what_the_detector_heard():
    row = next(r for r in personal_set(seed=7, per_kind=3, others=0, kinds=("phone",)) if r.form == "digits")
    head, number = row.text[:row.start], row.value
    garbled = head + "还有那个事情呢"  # the number misheard as words by a model that never heard numbers
    words = [Word(0.4 * k, 0.4 * k + 0.35, ch) for k, ch in enumerate(garbled)]
    alone = score([row], [garbled], decoded=True).kinds["phone"]
    assert alone.recall == 0.0 and alone.digits_right == 0.0
    heard_words = [Word(0.0, 0.4 * len(head) - 0.05, head), Word(0.4 * len(head), words[-1].end, number)]
    pair = Heard(_decoded(garbled, words), _decoded(head + number, heard_words))
    together = score([row], [pair], decoded=True).kinds["phone"]
    assert together.recall == 1.0 and together.leak_free == 1.0 and together.precision == 1.0
    assert leaks(row, head + number) and not leaks(row, head + "[PHONE]")


def _scored(recall: dict[str, float], on_personal_data: float = 1.0) -> RedactionScore:
    kinds = {k: KindScore(20, recall.get(k, 1.0), on_personal_data, 20, on_personal_data, 1.0, 1.0, 1.0) for k in KINDS}
    return RedactionScore(kinds, 20, 0, True)


def test_a_detector_is_refused_below_a_floor_or_against_the_one_in_place_and_says_why():
    params = DetectorParams()
    assert judge_detector(_scored({"code": 0.6}), None, params).accepted  # mean 0.92
    at_the_floor = _scored({"phone": 0.6, "id_card": 0.95, "bank_card": 0.9, "code": 0.95, "email": 0.85})
    assert at_the_floor.mean_recall < 0.85 and judge_detector(at_the_floor, None, params).accepted  # 0.8499999…
    low = judge_detector(_scored({"code": 0.55}), None, params)
    assert not low.accepted and low.reasons == ("code recall 55.0 % < 60.0 %",)
    assert judge_detector(_scored({"code": 0.6, "email": 0.6}), None, params).reasons == (
        "mean recall 84.0 % < 85.0 %",)
    noisy = judge_detector(_scored({}, on_personal_data=0.9), None, params)
    assert noisy.reasons == ("spans on personal data 90.0 % < 95.0 %",)
    # mean recall 0.9 against the one in place at 0.97: a 7-point fall, over max_recall_drop
    worse = judge_detector(_scored({"phone": 0.85, "id_card": 0.8, "email": 0.85}), _scored({"phone": 0.85}), params)
    assert not worse.accepted and worse.reasons == ("mean recall 90.0 % < the current detector's 97.0 % - 5.0 points",)
    assert judge_detector(_scored({"phone": 0.85, "id_card": 0.8, "email": 0.85}), _scored({"phone": 0.85}),
                          dataclasses.replace(params, max_recall_drop=0.1)).accepted
