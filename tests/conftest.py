"""Shared fixtures: an isolated project root, Prefect's test server, the tiny Whisper."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parents[1]

# Quiet and offline before any library reads its settings.
os.environ.update({
    "HF_HUB_OFFLINE": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1", "GX_ANALYTICS_ENABLED": "false",
    "TOKENIZERS_PARALLELISM": "false",
})

# Prefect's console log handler writes to the stderr of the moment its logging is set up; set up here,
# that is the session's stream, not the capture of whichever test happens to import it first.
import prefect.main  # noqa: E402, F401  (runs setup_logging)

from zhasr.data.manifest import ManifestRow  # noqa: E402
from zhasr.evaluation.clips import ClipScore  # noqa: E402

# Small, fast settings for tests on the tiny random model.
TEST_PARAMS = {
    "model": {"base": "tiny-random"},
    "synth": {"n_clips": 16, "n_speakers": 8},
    "ingest": {"test_fraction": 0.25, "dev_fraction": 0.0},
    "train": {"max_steps": 4, "time_budget_s": 0, "batch_size": 2, "evaluations": 2, "warmup_ratio": 0.0,
              "cached_encoder_layers": 1,
              "learning_rate": 1.0e-3},
    "transcribe": {"max_new_tokens": 24},
    "register": {"model_name": "zhasr-test"},
    "approval": {"timeout_s": 0},
    # Limits no tiny export can break, so every export is fit and logged with the run.
    "export": {"formats": ["ggml-q8_0", "ct2-int8", "gptq-4bit"], "gptq_group_size": 64, "gptq_calibration_clips": 4,
               "max_cer_increase": 10.0, "low_bit_max_cer_increase": 10.0},
    "tracking": {"experiment": "zhasr-test"},
}


@pytest.fixture(scope="session")
def shared_models_dir(tmp_path_factory) -> Path:
    """One models folder per test session, so the tiny model is built once."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model_dir(shared_models_dir) -> Path:
    from zhasr.model.loading import resolve_base_model

    return resolve_base_model("tiny-random", shared_models_dir)


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory) -> Path:
    """The real whisper-base, imported from the PyPI packages (slow tests only)."""
    from zhasr.model.ct2_import import ensure_packaged_base_model

    return ensure_packaged_base_model(tmp_path_factory.mktemp("base") / "whisper-base")


REAL_ZH = REPO.parent / "shared" / "data" / "real-zh"


@pytest.fixture(scope="session")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    # The first start migrates a fresh database (~23 s); the default 20 s is too short.
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def project(tmp_path, tiny_model_dir, monkeypatch) -> Path:
    """A project root in a temp folder: params.yaml with TEST_PARAMS, its own MLflow store and models folder
    (what a test builds there, a candidate or a detector, is no other test's), the session's tiny model linked in."""
    root = tmp_path / "project"
    (root / "models").mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(TEST_PARAMS), encoding="utf-8")
    (root / "models" / tiny_model_dir.name).symlink_to(tiny_model_dir, target_is_directory=True)
    monkeypatch.setenv("ZHASR_ROOT", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    (root / "mlflow").mkdir()
    return root


@pytest.fixture(scope="session")
def generated_call(tmp_path_factory) -> tuple[Path, list]:
    """A two-channel 8 kHz mu-law call of 40 synthetic turns (~3.5 min), agent left and customer right,
    with its turn list (``zhasr.data.synth.call.Turn``)."""
    from zhasr.config import SynthParams
    from zhasr.data.synth import synthesize_batch
    from zhasr.data.synth.call import clips_of_batch, write_call

    root = tmp_path_factory.mktemp("call")
    # Two voices, 20 clips each; clean speech, so a turn's bounds are where its speech is.
    options = SynthParams(batch="call-clips", n_clips=40, n_speakers=2, clips_per_call=20, seed=7, telephone_fraction=1.0,
                           snr_db=[60.0])
    clips = clips_of_batch(synthesize_batch(root, options, progress=lambda done, total: None))
    alternating = [c for pair in zip(clips[:20], clips[20:]) for c in pair]
    return write_call(root, alternating, 8000)


def write_tone_batch(incoming: Path, name: str, clips: int, text=lambda i: "您好请问") -> Path:
    """A batch folder ``incoming/name`` of ``clips`` tones (clip i: 1.0 + 0.1 i s at 200 + 30 i Hz, speaker
    s<i>, ``text(i)``) with its manifest."""
    from test_ingest import write_batch

    rows = []
    for i in range(clips):
        write_tone(incoming / name / f"{i}.wav", 1.0 + 0.1 * i, freq=200 + 30 * i)
        rows.append({"id": str(i), "audio": f"{i}.wav", "text": text(i), "speaker": f"s{i}"})
    return write_batch(incoming, name, rows)


def write_tone(path: Path, seconds: float, rate: int = 16000, channels: int = 1, freq: float = 220.0) -> Path:
    """A harmonic tone with a little noise: decodes like speech-length audio."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(int(seconds * 1000) + rate + channels)
    wave = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.size)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype(np.float32), rate)
    return path



def manifest_row(**fields) -> ManifestRow:
    """A dataset manifest row: the fields a test names, plausible values for the rest."""
    clip = str(fields.get("id", "clip"))
    text = fields.get("text_norm", fields.get("text", "您好"))
    defaults = {"id": clip, "batch": "b1", "split": "train", "audio": f"{clip}.wav",
                "audio_sha256": hashlib.sha256(clip.encode()).hexdigest(), "text": text, "text_norm": text,
                "duration_s": 2.0, "speaker": "s1", "language": "zh", "source_audio": f"clips/{clip}.wav",
                "sample_rate_src": 16000, "channels_src": 1, "band": "wideband", "rms_dbfs": -20.0}
    return ManifestRow(**{**defaults, **fields})


def clip_score(**fields) -> ClipScore:
    """A scored clip: the fields a test names, an empty, error-free reading for the rest."""
    defaults = {f.name: {"str": "", "float": 0.0, "int": 0, "bool": False}[f.type] for f in dataclasses.fields(ClipScore)}
    return ClipScore(**{**defaults, "reference_chars": 1, "duration_s": 1.0, **fields})
