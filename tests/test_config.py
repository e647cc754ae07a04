import re
from pathlib import Path

import pytest

from zhasr.config import ConfigError, Params, apply_overrides, load_params

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_file_loads_and_matches_defaults():
    assert load_params(REPO / "params.yaml") == Params()


def test_override_sets_nested_value_with_its_type():
    params = apply_overrides(Params(), ["train.learning_rate=1e-4", "train.rank=8", "synth.snr_db=[10, 5.5]",
                                        "train.targets=all-linear"])
    assert params.train.learning_rate == pytest.approx(1e-4)
    assert params.train.rank == 8
    assert params.synth.snr_db == [10.0, 5.5]
    assert params.train.targets == "all-linear"


@pytest.mark.parametrize("override, key", [
    ("train.lr=1e-4", "train.lr"),
    ("trian.rank=8", "trian"),
    ("train.rank=eight", "train.rank"),
    ("train.rank=8.5", "train.rank"),
    ("synth.snr_db=20", "synth.snr_db"),
    ("train.method=prefix", "train.method: expected one of lora, dora, qlora"),
    ("train.targets=q_proj", "train.targets"),
    ("merge.adapter_weight=1.5", "merge.adapter_weight"),
    ("merge.min_adapter_weight=0.9", "merge.adapter_weight: expected 0 < merge.min_adapter_weight"),
    ("train.cached_encoder_layers=-3", "train.cached_encoder_layers"),
    ("train.pack_window_s=31", "train.pack_window_s: expected 0 (off) or seconds up to Whisper's 30-s window"),
    ("train.pack_gap_s=-0.5", "train.pack_gap_s: must be 0 or more"),
    ("train.loader_workers=-2", "train.loader_workers"),
    ("train.evaluations=0", "train.evaluations: must be above 0"),
    ("train.time_budget_s=-1", "train.time_budget_s: must be 0 or more"),
    ("train.save_steps=15", "train.save_steps: unknown key"),
    ("export.formats=[gptq-8bit]", "export.formats[0]: expected one of ggml-f16"),
    ("transcribe.redact=[phone,passport]", "transcribe.redact[1]: expected one of phone"),
    ("export.gptq_group_size=0", "export.gptq_group_size"),
    ("export.gptq_calibration_clips=0", "export.gptq_calibration_clips"),
    ("export.gptq_damp_percent=1.5", "export.gptq_damp_percent"),
    ("ingest.workers=0", "ingest.workers: must be at least 1"),
    ("synth.clips_per_call=0", "synth.clips_per_call: must be at least 1"),
    ("synth.personal_clips=-1", "synth.personal_clips: must be at least 0"),
    ("synth.personal_naming=random", "synth.personal_naming: expected one of frame, any"),
    ("synth.noise_colors=[blue]", "synth.noise_colors: unknown ['blue']"),
    ("synth.speed_wpm=[260, 180]", "synth.speed_wpm: expected [low, high]"),
    ("validate.allowed_text_regex='['", "validate.allowed_text_regex '[': unterminated character set"),
    ("train.targets=[q_proj", "train.targets: value '[q_proj' is not valid YAML"),
    ("validate.min_duration_s=40", "validate.min_duration_s"),
    ("ingest.telephone_codecs=[mulaw, gsm]", "ingest.telephone_codecs: unknown codec(s) gsm"),
    ("ingest.regression_tuning_fraction=1", "ingest.regression_tuning_fraction"),
    ("train.augment_codecs=[speex]", "train.augment_codecs: unknown codec(s) speex"),
    ("train.telephone_augment=1.5", "train.telephone_augment"),
    ("train.time_mask_share=1.0", "train.time_mask_share"),
    ("train.time_mask_ms=5000", "train.time_mask_ms"),
    ("train.pseudo_label_splits=[tuning, telephone-g723]", "train.pseudo_label_splits: telephone-g723 is trained"),
    ("regression.speaker_pattern='thchs30_A2'", "regression.speaker_pattern 'thchs30_A2': needs a group"),
    ("detector.check_seed=779", "detector.check_seed: must differ from detector.seed (779)"),
    ("detector.min_recall=85", "detector.min_recall: expected a fraction within 0-1"),
    ("detector.check_others=-1", "detector.check_others: must be 0 or more"),
    ("detector.check_per_kind=0", "detector.check_others: 20 with check_per_kind 0 judges no number"),
    ("detector.model_name=zhasr-whisper", "detector.model_name: 'zhasr-whisper' must be a registered model's name"),
    ("detector.model_name=a/b", "detector.model_name: 'a/b' must be"),
    ("detector.cron=0 4 * *", "detector.cron: expected 5 cron fields"),
    ("register.keep_newest=-1", "register.keep_newest: expected 0 (prune nothing) or a version count"),
    ("register.keep_champions=0", "register.keep_champions: expected at least 1"),
])
def test_bad_override_names_the_key(override, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        apply_overrides(Params(), [override])


def test_bad_file_names_file_and_key(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  rank: sixteen\n")
    with pytest.raises(ConfigError, match=r"params\.yaml: train\.rank: expected int"):
        load_params(path)


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(Params(), ["train.rank"])


def test_digest_changes_with_values():
    assert Params().digest() != apply_overrides(Params(), ["train.rank=8"]).digest()
    assert Params().digest() == Params().digest()


def test_a_scheduled_detector_build_needs_its_registered_model():
    with pytest.raises(ConfigError, match=re.escape("detector.cron: a scheduled build needs detector.model_name")):
        apply_overrides(Params(), ["detector.cron=0 4 * * *", "detector.model_name=\"\""])
