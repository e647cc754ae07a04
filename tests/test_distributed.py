"""DDP: the train stage under torchrun with 2 CPU processes on gloo; the accelerate configs load."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, write_tone_batch
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR


def _zhasr(*args: str, env: dict, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *launcher, "-m", "cli", *args], env=env,
                          capture_output=True, text=True, timeout=600)


TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")


def _train_on_two_processes(project: Path, clips: int, *overrides: str) -> dict:
    """``clips`` tones of 1.0, 1.1 ... s ingested and validated, then the train stage under torchrun with 2
    processes; returns rank 0's summary."""
    write_tone_batch(project / "data/incoming", "b1", clips)
    env = {**os.environ, "ZHASR_ROOT": str(project), "OMP_NUM_THREADS": "1"}
    settings = ["--set", "ingest.test_fraction=0.0", "--set", "train.evaluations=1", *overrides]
    for stage in ("ingest", "validate"):
        assert _zhasr(stage, *settings, env=env).returncode == 0
    done = _zhasr("train", *settings, env=env, launcher=TORCHRUN)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)  # printed by rank 0 only


def test_torchrun_two_cpu_processes_share_the_data(project, tiny_model_dir):
    summary = _train_on_two_processes(project, 8, "--set", "train.max_steps=4", "--set", "train.batch_size=2",
                                      "--set", "train.pack_window_s=0")
    assert summary["world_size"] == 2 and summary["steps"] == 4
    assert (Path(summary["adapter_dir"]) / "adapter_model.safetensors").is_file()
    # 8 clips, 2 per process per step, 2 processes: an epoch is 2 steps, so 4 steps are 2 epochs
    # (a single process would have done 1).
    checkpoint = project / "runs/train/checkpoints" / f"{PREFIX_CHECKPOINT_DIR}-4"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["epoch"] == pytest.approx(2.0)


def test_torchrun_trains_packed_windows_fewer_than_a_batch_a_process(project, tiny_model_dir):
    # 6 clips of 1.0-1.5 s in at most 6 packed windows: fewer than 2 processes x 4 windows
    summary = _train_on_two_processes(project, 6, "--set", "train.max_steps=2", "--set", "train.batch_size=4",
                                      "--set", "train.pack_window_s=4")
    assert summary["windows"] < 8 and summary["steps"] == summary["planned_steps"] == 2


@pytest.mark.parametrize("name", ["ddp", "ddp-cpu", "fsdp", "deepspeed-zero3"])
def test_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO / "configs" / "accelerate" / f"{name}.yaml"))
    assert config.num_processes >= 2
    assert config.main_training_function == "main"
