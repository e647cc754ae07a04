"""The export verdict reads the interval of the CER rise: fit, unfit or inconclusive."""

import json

from conftest import clip_score

from zhasr.evaluation.clips import candidate_gain
from zhasr.evaluation.export_verdict import FIT, INCONCLUSIVE, UNFIT, Rise, verdict

LIMIT = 0.005  # export.max_cer_increase: half a point


def rise(merged_errors, export_errors, chars=20):
    """The export's rise over the merged model (the candidate of evaluation), each clip its own speaker."""
    clips = [clip_score(id=f"c{i}", speaker=f"{i:05d}", reference_chars=chars, candidate_errors=errors)
             for i, errors in enumerate(merged_errors)]
    gain = candidate_gain(clips, export_errors, samples=1000, seed=0)
    return Rise(gain.gain, gain.low, gain.high)


def test_an_export_that_decodes_like_the_merged_model_is_fit():
    merged = [2, 0, 1, 3] * 100  # 400 clips of 20 characters
    exact = rise(merged, merged)
    assert exact.low == exact.high == 0.0
    assert verdict([exact], LIMIT) == FIT


def test_an_export_clearly_worse_on_one_set_is_unfit():
    merged = [1] * 200
    worse = rise(merged, [3] * 200)  # two more errors a clip: +10 points on every resample
    assert worse.low > LIMIT
    assert verdict([rise(merged, merged), worse], LIMIT) == UNFIT


def test_a_rise_whose_interval_straddles_the_limit_is_inconclusive():
    # 64 clips: the export is better on 4 and worse on 8; the point estimate is +0.31 points (under the
    # limit), but the interval reaches past it, so the clips cannot tell.
    merged = [2] * 64
    export = [1] * 4 + [3] * 8 + [2] * 52
    straddling = rise(merged, export)
    assert straddling.low <= LIMIT < straddling.high and straddling.rise < LIMIT
    assert verdict([straddling], LIMIT) == INCONCLUSIVE
    # the same per-clip differences on 40 times the clips settle it
    assert verdict([rise(merged * 40, export * 40)], LIMIT) == FIT


def test_an_inconclusive_or_unfit_export_is_never_served_as_fit():
    from types import SimpleNamespace

    from tasks.transcribe import fit_exports

    tail = "CER 30.00% (+0.10 pts [-1.20, +1.40], limit +0.50), 81 MB, RTF 0.190, runs:/abc/exports/"
    version = SimpleNamespace(tags={"zhasr.export.ct2-int8": f"{INCONCLUSIVE}: {tail}ct2-int8",
                                    "zhasr.export.ggml-q8_0": f"{UNFIT}: {tail}ggml-q8_0"})
    assert fit_exports(version) == {}  # nothing downloaded, nothing offered to the engine
    exports = {"ct2-int8": {"verdict": INCONCLUSIVE, "uri": "runs:/abc/exports/ct2-int8"},
               "ggml-q8_0": {"verdict": UNFIT, "uri": None}}
    assert fit_exports(SimpleNamespace(tags={"zhasr.exports": json.dumps(exports)})) == {}
    # both tag layouts read alike, as zhasr status and prune read them
    from mlflow_services.registry import ExportEntry, exports_of

    assert exports_of(version) == exports_of(SimpleNamespace(tags={"zhasr.exports": json.dumps(
        {**exports, "ggml-q8_0": {"verdict": UNFIT, "uri": "runs:/abc/exports/ggml-q8_0"}})})) == {
        "ct2-int8": ExportEntry(INCONCLUSIVE, "runs:/abc/exports/ct2-int8"),
        "ggml-q8_0": ExportEntry(UNFIT, "runs:/abc/exports/ggml-q8_0")}
