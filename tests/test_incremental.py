"""Retraining round after round on the tiny model: from the champion with replay of earlier batches, and the
interpolation guard that decides how far a round may move on general speech."""

from __future__ import annotations

import json

import pytest
from conftest import write_tone
from mlflow.tracking import MlflowClient
from test_ingest import write_batch

from mlflow_services import registry, tracking
from zhasr.config import load_params
from zhasr.context import StageContext
from zhasr.model.merge import MergeReport
from zhasr.project import apply_default_env


def write_speech_batch(project, batch: str, n: int, split: str | None = None, first: int = 0) -> None:
    rows = []
    for i in range(first, first + n):
        write_tone(project / "data" / "incoming" / batch / f"{i}.wav", 1.0 + 0.05 * (i % 5), freq=150 + 20 * i)
        rows.append({"id": f"{batch}-{i}", "audio": f"{i}.wav", "text": "您好请问订单", "speaker": f"{batch}-s{i}",
                     **({"split": split} if split else {})})
    write_batch(project / "data" / "incoming", batch, rows)


def context(project, *overrides: str) -> StageContext:
    params = load_params(project / "params.yaml", ["ingest.test_fraction=0.0", "ingest.dev_fraction=0.0",
                                                   "train.max_steps=2", "train.evaluations=1", *overrides])
    apply_default_env(project, params.model.base)
    return StageContext(project, params)


def prepare_data(ctx: StageContext) -> None:
    from tasks import ingest, validate

    ingest.run(ctx)
    validate.run(ctx)


def register_champion(ctx: StageContext, folder, learned: list[str]) -> str:
    tracking.configure(ctx)
    name = ctx.params.register.model_name
    with tracking.stage_run(ctx, "test-setup"):
        version = registry.log_and_register(name, folder, "zh", tags={"zhasr.learned_batches": json.dumps(learned)})
    registry.change_alias(name, registry.CHAMPION, str(version.version), action="approve", by="test", note="setup")
    return str(version.version)


def test_from_the_champion_a_round_trains_its_weights_on_the_new_batch_and_replays_the_earlier_one(
        project, tiny_model_dir):
    from tasks import train

    write_speech_batch(project, "b1", 8)
    write_speech_batch(project, "b2", 4, first=8)
    ctx = context(project, "train.init_from=champion", "train.replay_ratio=0.5")
    prepare_data(ctx)
    version = register_champion(ctx, tiny_model_dir, ["b1"])

    summary = train.run(ctx)
    assert summary.start == f"champion v{version}"
    champion_dir = registry.whisper_dir(MlflowClient().get_model_version(ctx.params.register.model_name, version))
    assert summary.base_model_dir == str(champion_dir)  # its registered weights, not the base model's
    assert (summary.train_clips, summary.new_clips, summary.replayed_clips) == (6, 4, 2)
    assert summary.learned_batches == ["b1", "b2"]
    plan = json.loads((project / "runs" / "train" / "plan.json").read_text(encoding="utf-8"))
    assert [i.split("-")[0] for i in plan["rows"]] == ["b2"] * 4 + ["b1"] * 2

    from_base = train.run(context(project, "train.init_from=base"))
    assert (from_base.start, from_base.train_clips, from_base.new_clips) == ("tiny-random", 12, 12)


@pytest.mark.parametrize("limit, tried", [(10.0, [0.7]), (-1.0, None)])
def test_the_guard_merges_at_smaller_weights_while_general_speech_loses_more_than_the_limit(
        project, tiny_model_dir, limit, tried):
    from tasks import merge, train

    write_speech_batch(project, "b1", 6)
    write_speech_batch(project, "real", 3, split="regression", first=20)
    # every loss counts, beyond noise or not: a limit below zero no weight can meet
    ctx = context(project, f"gate.max_regression_loss={limit}", "merge.min_adapter_weight=0.3",
                  "merge.guard_beyond_noise=false", "transcribe.max_new_tokens=8",
                  "ingest.regression_tuning_fraction=0.99")  # all in the tuning half
    prepare_data(ctx)
    train.run(ctx)
    report = merge.run(ctx)
    weights = [t.adapter_weight for t in report.weights_tried]
    if tried is not None:  # within the limit at once: merged at merge.adapter_weight
        assert weights == tried and report.adapter_weight == 0.7
    else:  # no weight can meet a limit below zero: down to the floor, each try smaller than the last
        assert weights[0] == 0.7 and weights[-1] == 0.3 == report.adapter_weight
        assert all(a > b for a, b in zip(weights, weights[1:]))
    guarded = report.weights_tried[0].sets
    assert {"tuning", "tuning-telephone", "tuning-telephone-g723"} <= set(guarded)
    assert not any("regression" in name for name in guarded)
    assert guarded["tuning"].loss.low <= guarded["tuning"].loss.loss <= guarded["tuning"].loss.high
    assert {"loss_tuning", "loss_low_tuning", "loss_high_tuning"} <= set(report.to_dict()["weights_tried"][0])
    assert report.max_logit_diff < 1e-3 and ctx.read_report("merge", MergeReport) == report


def test_pseudo_label_replay_trains_on_real_speech_with_the_start_models_own_transcripts(project, tiny_model_dir):
    from tasks import train
    from tasks.decoding import Model, decode_sets, load_clips, whole_clip_decoding
    from zhasr.config import SynthParams
    from zhasr.data.synth import synthesize_batch
    from zhasr.data.text import normalize

    write_speech_batch(project, "b1", 4)
    # speech the VAD finds (a tone has none): three wideband synthetic clips stand in for real speech
    spoken = synthesize_batch(project / "data" / "incoming", SynthParams(batch="real", n_clips=3, n_speakers=3,
                              telephone_fraction=0.0, snr_db=[60.0]), progress=lambda done, total: None)
    rows = [json.loads(line) for line in (spoken / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    write_batch(project / "data" / "incoming", "real", [{**r, "split": "regression"} for r in rows])
    ctx = context(project, "train.pseudo_label_splits=[tuning]", "train.augment_codecs=[mulaw]",
                  "transcribe.max_new_tokens=8", "ingest.regression_tuning_fraction=0.99")  # all in the tuning half
    prepare_data(ctx)
    real = ctx.split_rows("tuning")
    decoded, _ = decode_sets(ctx, Model.of("start", tiny_model_dir), load_clips(ctx, {"real": real}),
                             whole_clip_decoding(ctx.params.transcribe))
    heard = [t.text for t in decoded["real"].transcripts]
    assert any(heard), "the tiny model heard nothing: no pseudo-label to train on"

    summary = train.run(ctx)
    kept = [r.id for r, text in zip(real, heard) if normalize(text)]  # what normalizes to nothing is left out
    assert summary.pseudo_labelled_clips == 2 * len(kept)  # as it is and through mu-law
    assert summary.train_clips == 4  # the labelled clips are counted apart
    plan = json.loads((project / "runs" / "train" / "plan.json").read_text(encoding="utf-8"))
    assert sorted(i for i in plan["rows"] if i.startswith("real")) == sorted(kept * 2)
